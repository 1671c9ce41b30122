"""The parts of the better-samples recipes: DiffAugment, spectral norm, the hinge loss, R1, the
EMA generator with its ramp-up and measured BatchNorm statistics, upsample-then-convolve,
residual nets, and bit-exact resume with all of them on."""
import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import augment, losses
from paddle_gan_kit.config import TrainConfig, parse_size
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_discriminator, build_generator, count_parameters, resnet
from paddle_gan_kit.models.dcgan import Discriminator, Generator
from paddle_gan_kit.models.layers import BatchNorm2D, NearestUpsample2x, SpectralConv2D, UpsampleConv2D
from paddle_gan_kit.models.resnet import DownBlock, ResNetDiscriminator, ResNetGenerator, UpBlock, avg_pool2x
from paddle_gan_kit.steps import AdversarialStep, recalibrate_batchnorm
from paddle_gan_kit.trainer import Trainer
from conftest import assert_one_line_error, conv_backend, params_of, run_cli, tiny_config


# --- DiffAugment -------------------------------------------------------------------------------

def test_translation_shifts_by_whole_pixels_with_zero_fill():
    paddle.seed(0)
    x = paddle.to_tensor(np.arange(2 * 1 * 8 * 8, dtype=np.float32).reshape(2, 1, 8, 8) + 1)
    out = augment.translation(x).numpy()
    for i in range(2):
        src = x.numpy()[i, 0]
        found = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                 if np.array_equal(out[i, 0], np.roll(np.roll(np.pad(src, 1), dy, 0), dx, 1)[1:-1, 1:-1])]
        assert found, out[i, 0]


def test_cutout_zeroes_one_square_and_color_keeps_shapes():
    paddle.seed(1)
    x = paddle.ones([4, 3, 16, 16])
    out = augment.cutout(x).numpy()
    zeros = (out == 0).all(axis=1)  # (4, 16, 16)
    for mask in zeros:
        ys, xs = np.nonzero(mask)
        assert 0 < len(ys) <= 64 and len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    for channels in (1, 3):
        assert augment.color(paddle.rand([2, channels, 8, 8])).shape == [2, channels, 8, 8]


@pytest.mark.parametrize("channels", [1, 3])
def test_color_equals_brightness_then_saturation_then_contrast(channels):
    """The folded one-map colour transform equals Zhao et al.'s three steps in turn (brightness
    +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]), for the same draws (same seed), and so do
    its input gradients."""
    def stepwise(x):
        n = x.shape[0]
        x = x + (paddle.rand([n, 1, 1, 1]) - 0.5)
        if channels > 1:
            mean = x.mean(axis=1, keepdim=True)
            x = (x - mean) * (paddle.rand([n, 1, 1, 1]) * 2.0) + mean
        mean = x.mean(axis=[1, 2, 3], keepdim=True)
        return (x - mean) * (paddle.rand([n, 1, 1, 1]) + 0.5) + mean

    x0 = paddle.to_tensor(np.random.default_rng(4).normal(size=(5, channels, 8, 12)).astype(np.float32))
    results = []
    for transform in (augment.DiffAugment("color"), stepwise):
        x = x0.clone()
        x.stop_gradient = False
        paddle.seed(5)
        out = transform(x)
        (out * out * paddle.arange(out.size, dtype="float32").reshape(out.shape) / out.size).sum().backward()
        results.append((out.numpy(), x.grad.numpy()))
    (out, grad), (want, want_grad) = results
    assert float(np.abs(want).max()) > 0.5
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-5)


def test_translation_matrices_shift_within_the_drawn_range():
    paddle.seed(6)
    matrices = augment._shift_matrices(40, 10, 2).numpy()[:, 0]  # (40, 10, 10)
    shifts = set()
    for m in matrices:
        rows, cols = np.nonzero(m)
        assert set(np.unique(m)) <= {0.0, 1.0} and len(set(rows - cols)) == 1
        shift = int((rows - cols)[0])
        assert len(rows) == 10 - abs(shift)
        shifts.add(shift)
    assert shifts == {-2, -1, 0, 1, 2}


@pytest.mark.parametrize("backend", ["paddle", "onednn"])
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_is_differentiable_twice(channels, backend):
    """Gradients reach G through it, and the penalties' double backward goes through it, on
    either convolution backend."""
    with conv_backend(backend):
        _check_diffaugment_twice(channels)


def _check_diffaugment_twice(channels):
    paddle.seed(2)
    aug = augment.DiffAugment("translation,cutout,color")
    G = Generator(16, channels, 8, 4, 16)
    z = paddle.randn([3, 8])
    out = aug(G(z)).sum()
    out.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.parameters() if not p.stop_gradient)
    D = Discriminator(16, channels, 4, 16, "layer")
    critic = lambda x: D(aug(x))  # noqa: E731
    real, fake = paddle.rand([3, channels, 16, 16]) * 2 - 1, paddle.rand([3, channels, 16, 16]) * 2 - 1
    for penalty in (losses.gradient_penalty(critic, real, fake), losses.r1_penalty(critic, real)):
        for p in D.parameters():
            p.clear_gradient(False)
        penalty.backward()
        assert sum(float(p.grad.abs().sum()) > 0 for p in D.parameters() if p.grad is not None) >= 3


def test_unknown_augmentations_are_one_line(tmp_path, tiny_npy):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "r", "--set", "augment=rotate,color")
    assert_one_line_error(result, "unknown augmentation 'rotate' in augment", "translation", "cutout", "color")
    assert not (tmp_path / "r").exists()


# --- spectral norm, hinge, R1 ---------------------------------------------------------------------

def test_spectral_norm_power_iteration_converges_to_the_largest_singular_value():
    paddle.seed(4)
    conv = SpectralConv2D(5, 7, 3, 1, 1)
    conv.train()
    x = paddle.randn([1, 5, 6, 6])
    for _ in range(60):
        conv(x)
    w = conv.weight.numpy().reshape(7, -1)
    sigma = np.linalg.svd(w, compute_uv=False)[0]
    normalized = conv.normalized_weight().numpy().reshape(7, -1)
    assert np.linalg.svd(normalized, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(normalized, w / sigma, rtol=1e-3, atol=1e-6)
    u = conv.sn_u.numpy().copy()
    conv.eval()
    conv(x)
    np.testing.assert_array_equal(conv.sn_u.numpy(), u)  # eval mode does not iterate
    assert "sn_u" in conv.state_dict()


def test_spectral_critic_takes_the_gradient_penalty():
    cfg = TrainConfig(model="wgan_gp", size=16, channels=3, d_channels=4, max_channels=16, d_norm="spectral").resolve()
    D = build_discriminator(cfg)
    assert not any(isinstance(m, (paddle.nn.BatchNorm2D,)) for m in D.sublayers())
    gp = losses.gradient_penalty(D, paddle.randn([2, 3, 16, 16]), paddle.randn([2, 3, 16, 16]))
    gp.backward()
    assert all(p.grad is not None for p in D.parameters() if not p.stop_gradient and p.name.endswith("w_0"))


def test_hinge_losses_and_r1_values():
    real, fake = paddle.to_tensor([2.0, 0.5, -1.0]), paddle.to_tensor([-3.0, 0.0, 2.0])
    assert float(losses.d_loss_hinge(real, fake)) == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1 + 3) / 3)
    assert float(losses.g_loss_hinge(fake)) == pytest.approx(1 / 3)

    class Quadratic(paddle.nn.Layer):  # D(x) = 0.5 |x|^2: grad x, so R1 = 0.5 E|x|^2
        def forward(self, x):
            return 0.5 * (x * x).reshape([x.shape[0], -1]).sum(axis=1)

    x = paddle.randn([4, 1, 3, 3])
    expected = 0.5 * np.mean((x.numpy().reshape(4, -1) ** 2).sum(1))
    assert float(losses.r1_penalty(Quadratic(), x)) == pytest.approx(expected, rel=1e-5)


# --- EMA ------------------------------------------------------------------------------------------

def test_ema_rampup_starts_fast_and_reaches_the_decay():
    cfg = TrainConfig(model="dcgan", size=16, channels=3, z_dim=8, g_channels=4, d_channels=4, ema_decay=0.999,
                      ema_rampup=0.05).resolve()
    nets = AdversarialStep(cfg)
    decays = {}
    for updates in (0, 100, 1000, 100000):
        nets.updates = updates
        decays[updates] = nets.ema_decay()
    assert decays[0] < 0.01 < decays[100] < decays[1000] < 0.999
    assert decays[100000] == pytest.approx(0.999)
    nets.cfg = TrainConfig(**{**cfg.to_dict(), "ema_rampup": 0.0})
    assert nets.ema_decay() == 0.999


def test_recalibrated_batchnorm_statistics_are_the_generators_own():
    cfg = TrainConfig(model="dcgan", size=16, channels=3, z_dim=8, g_channels=4).resolve()
    paddle.seed(5)
    G = build_generator(cfg)
    norms = [m for m in G.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    recalibrate_batchnorm(G, cfg, batch_size=32, batches=4)
    assert not G.training
    # the first BatchNorm's input, measured directly on the same latents
    from paddle_gan_kit.latent import draw_latents

    rng = np.random.default_rng([cfg.seed, 2])
    z = np.concatenate([draw_latents(rng, 32, cfg.z_dim, cfg.z_dist) for _ in range(4)])
    with paddle.no_grad():
        first = G.net[0](paddle.to_tensor(z).reshape([128, cfg.z_dim, 1, 1])).numpy()
    state = norms[0].state_dict()
    mean = next(v for k, v in state.items() if k.endswith("mean")).numpy()
    var = next(v for k, v in state.items() if k.endswith("variance")).numpy()
    np.testing.assert_allclose(mean, first.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, first.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)
    before = paddle.get_rng_state()[0].__getstate__()
    recalibrate_batchnorm(G, cfg, batch_size=32, batches=4)
    assert paddle.get_rng_state()[0].__getstate__() == before  # no global RNG moved


def test_samples_use_the_ema_generator_with_its_own_statistics(tmp_path, tiny_npy):
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=4, ema_decay=0.9, ema_rampup=0.05), progress=False)
    payload = params_of(str(out), 4)
    ema, raw = payload["generator_ema"], payload["generator"]
    means = [k for k in ema if k.endswith("_mean")]
    assert means and all(not np.array_equal(ema[k], raw[k]) for k in means)  # measured, not copied
    generator, _ = paddle_gan_kit.load_generator(str(out))
    assert all(np.array_equal(generator.state_dict()[k].numpy(), ema[k]) for k in ema)


# --- architecture and the whole step ---------------------------------------------------------------

@pytest.mark.parametrize("size", [28, 32, 64, 96])
def test_upsample_then_convolve_generator_shapes(size):
    cfg = TrainConfig(size=size, channels=3, z_dim=8, g_channels=4, max_channels=16, g_upsample="nearest").resolve()
    G = build_generator(cfg)
    assert G(paddle.randn([2, 8])).shape == [2, 3, size, size]
    _, doublings = parse_size(size)
    assert sum(type(m) is paddle_gan_kit.models.layers.Conv2DTranspose for m in G.sublayers()) == 1  # 1x1 -> s0
    assert sum(isinstance(m, UpsampleConv2D) for m in G.sublayers()) == doublings
    assert all(m.weight.shape[2:] == [3, 3] for m in G.sublayers() if isinstance(m, UpsampleConv2D))
    x = paddle.randn([2, 3, 5, 7])
    np.testing.assert_array_equal(NearestUpsample2x()(x).numpy(),
                                  paddle.nn.functional.interpolate(x, scale_factor=2, mode="nearest").numpy())


def upsample_then_conv(x, layer):
    """The literal reference for ``UpsampleConv2D``: nearest upsampling then the 3x3 conv with
    zero padding."""
    return paddle.nn.functional.conv2d(NearestUpsample2x()(x), layer.weight, layer.bias, padding=1)


@pytest.mark.parametrize("backend", ["paddle", "onednn"])
@pytest.mark.parametrize("shape,bias", [((3, 5, 4, 4), True), ((2, 8, 7, 7), False), ((2, 3, 16, 16), True)])
def test_upsample_conv_is_upsampling_then_a_3x3_conv(backend, shape, bias):
    """The folded transposed conv equals upsample-then-convolve: output, input gradient and
    weight gradient, on both convolution backends."""
    with conv_backend(backend):
        paddle.seed(7)
        layer = UpsampleConv2D(shape[1], 6, bias_attr=None if bias else False)
        x = paddle.randn(shape)
        x.stop_gradient = False
        ours = layer(x)
        reference = upsample_then_conv(x, layer)
        assert ours.shape == reference.shape == [shape[0], 6, 2 * shape[2], 2 * shape[3]]
        probe = paddle.randn(ours.shape)
        for a, b in zip([ours, *paddle.grad((ours * probe).sum(), [x, layer.weight])],
                        [reference, *paddle.grad((reference * probe).sum(), [x, layer.weight])]):
            scale = float(b.abs().max())
            assert float((a - b).abs().max()) <= 1e-5 * scale + 1e-6
    assert list(layer.state_dict()) == (["weight", "bias"] if bias else ["weight"])


# --- residual nets -----------------------------------------------------------------------------

def _mean_pool(x):  # 2x2 average pooling from reshape and mean, whose double backward is plain autograd
    n, c, h, w = x.shape
    return x.reshape([n, c, h // 2, 2, w // 2, 2]).mean(axis=[3, 5])


def test_avg_pool2x_equals_numpy():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 4)).astype(np.float32)
    expected = x.reshape(2, 3, 3, 2, 2, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(avg_pool2x(paddle.to_tensor(x)).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_resnet_nets_have_a_block_per_doubling_and_the_dcgan_shapes(size, channels):
    cfg = TrainConfig(size=size, channels=channels, z_dim=8, g_channels=4, d_channels=4, max_channels=16,
                      g_arch="resnet", d_arch="resnet").resolve()
    paddle.seed(7)
    G, D = build_generator(cfg), build_discriminator(cfg)
    _, doublings = parse_size(size)
    assert isinstance(G, ResNetGenerator) and isinstance(D, ResNetDiscriminator)
    assert len(G.blocks) == doublings and len(D.blocks) == doublings
    images = G(paddle.randn([4, 8]))
    assert images.shape == [4, channels, size, size] and float(images.abs().max()) <= 1.0
    assert D(images).shape == [4]
    assert D.score.weight.shape == [1, min(4 * 2 ** (doublings - 1), 16), 1, 1]  # a linear layer on the widest stage


def test_resnet_blocks_add_their_shortcut():
    """With the residual branch's last layer zeroed, a block is its shortcut alone: G's a 1x1 conv
    then nearest upsampling, D's a 1x1 conv then 2x2 average pooling (pooling first in the first block)."""
    paddle.seed(8)
    x = paddle.randn([2, 4, 8, 8])
    up = UpBlock(4, 6, "nearest")
    last = up.main[-1]
    last.weight.set_value(np.zeros(last.weight.shape, np.float32))
    last.bias.set_value(np.zeros(last.bias.shape, np.float32))
    np.testing.assert_allclose(up(x).numpy(), NearestUpsample2x()(up.shortcut(x)).numpy(), rtol=1e-6)
    for first in (True, False):
        down = DownBlock(4, 6, "none", first)
        last = down.main[-2]  # the second 3x3 conv (an identity "norm" follows)
        last.weight.set_value(np.zeros(last.weight.shape, np.float32))
        last.bias.set_value(np.zeros(last.bias.shape, np.float32))
        np.testing.assert_allclose(down(x).numpy(), _mean_pool(down.shortcut(x)).numpy(), rtol=1e-5, atol=1e-6)
        assert down(x).shape == [2, 6, 4, 4]


@pytest.mark.parametrize("model,d_norm", [("wgan_gp", "layer"), ("wgan_gp", "spectral"), ("dcgan", "batch")])
def test_resnet_critic_takes_the_gradient_penalty_and_r1(model, d_norm, monkeypatch):
    cfg = TrainConfig(model=model, size=16, channels=3, d_channels=4, max_channels=16, d_arch="resnet",
                      d_norm=d_norm).resolve()
    paddle.seed(9)
    D = build_discriminator(cfg)
    real, fake, other = (paddle.randn([4, 3, 16, 16]) for _ in range(3))
    convs = [layer.weight for layer in D.sublayers() if isinstance(layer, paddle.nn.Conv2D)]
    assert len(convs) == 2 * 3 + 1  # two 3x3 convs and a 1x1 shortcut in each of 2 blocks, and the score
    state = {k: v.numpy() for k, v in D.state_dict().items()}  # spectral norm's power iteration moves sn_u
    grads = []
    for pool in (resnet.avg_pool2x, _mean_pool):
        monkeypatch.setattr(resnet, "avg_pool2x", pool)
        D.set_state_dict(state)
        D.clear_gradients()
        paddle.seed(10)  # the same interpolation weights
        penalty = losses.gradient_penalty(D, real, fake) + losses.r1_penalty(D, other)
        penalty.backward()
        grads.append([w.grad.numpy() for w in convs])
    for ours, reference in zip(*grads):  # Paddle's pooling double-backward equals plain autograd's
        assert np.abs(ours).sum() > 0
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


# (label smoothing acts on the non-saturating loss only: it is on in the residual case below)
ALL_ON = dict(augment="translation,cutout,color", d_norm="spectral", loss="hinge", r1_gamma=0.5, ema_decay=0.9,
              ema_rampup=0.05, g_upsample="nearest", lr_d=4e-4, lr_g=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [("dcgan", ALL_ON), ("wgan_gp", dict(augment="translation,cutout,color",
                                                                             ema_decay=0.9, ema_rampup=0.05,
                                                                             g_upsample="nearest", r1_gamma=0.1)),
                                         ("dcgan", dict(g_arch="resnet", d_arch="resnet", g_upsample="nearest",
                                                        augment="translation,color", ema_decay=0.9, ema_rampup=0.05,
                                                        r1_gamma=0.1, label_smoothing=0.1))])
def test_resume_is_bit_exact_with_every_option_on(tmp_path, tiny_npy, tiny_npy32, model, extra):
    common = dict(snapshot_every=100, sample_every=100, n_critic=2, **extra)
    tiny_npy = tiny_npy32 if extra.get("size") == 32 else tiny_npy
    paddle_gan_kit.train(tiny_config(tmp_path / "whole", model, tiny_npy, steps=6, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, tiny_npy, steps=3, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, tiny_npy, steps=6, **common), resume=True,
                         progress=False)
    a, b = params_of(str(tmp_path / "whole"), 6), params_of(str(tmp_path / "half"), 6)
    for part in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d"):
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)
    if extra.get("d_norm") == "spectral":
        assert any(k.endswith("sn_u") for k in a["discriminator"])


def test_bad_option_values_are_one_line():
    for key, value, fragment in (("loss", "lsgan", "nonsaturating, wasserstein, hinge"),
                                 ("d_norm", "group", "spectral"),
                                 ("g_upsample", "bicubic", "allowed: transposed, nearest$")):
        with pytest.raises(GanKitError, match=fragment):
            TrainConfig(**{key: value}).resolve()
    with pytest.raises(GanKitError, match="config key 'd_arch' is 'vgg'; allowed: dcgan, resnet"):
        TrainConfig(d_arch="vgg").resolve()
    for key, value in (("label_smoothing", 0.5), ("ema_decay", 1.0), ("beta1", -0.1)):
        with pytest.raises(GanKitError, match=rf"^{key} must be in \[0, "):
            TrainConfig(**{key: value}).resolve()
    for key in ("r1_gamma", "gp_weight", "ema_rampup"):
        with pytest.raises(GanKitError, match=rf"^{key} must be >= 0, got -1.0$"):
            TrainConfig(**{key: -1.0}).resolve()
