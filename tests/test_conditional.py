"""Class-conditional training: conditional BatchNorm in G, the projection D, labels from the data
(the built-in gems' cuts among them), g_steps, bit-exact resume, sampling and walks by class,
exports with a class input, per-class evaluation, and the one-line errors."""
import json
import os

import imageio.v3 as iio
import numpy as np
import paddle
import pytest

import paddle_gan_kit
import paddle_gan_kit.sample
from paddle_gan_kit import fastconv, losses
from paddle_gan_kit.config import TrainConfig
from paddle_gan_kit.data import load_images
from paddle_gan_kit.models import build_discriminator, load_weights, state_arrays
from paddle_gan_kit.models.dcgan import ClassConditionalBatchNorm2D, Discriminator, Generator
from paddle_gan_kit.trainer import Trainer
from conftest import assert_one_line_error, params_of, run_cli, tiny_config, vdl_records

CONDITIONAL = dict(conditional=True, data="builtin:mnist", size=16)


@pytest.fixture(scope="module")
def mnist_conditional_run(tmp_path_factory):
    """A 4-step conditional DCGAN on MNIST digits (10 classes), shared and read-only."""
    out = tmp_path_factory.mktemp("cond") / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", **CONDITIONAL, ema_decay=0.9), progress=False)
    return str(out)


def test_conditional_batchnorm_is_batchnorm_scaled_and_shifted_by_the_class():
    paddle.seed(0)
    layer = ClassConditionalBatchNorm2D(3, embedding=5)
    x, e = paddle.randn([4, 3, 2, 3]), paddle.randn([4, 5])
    e.stop_gradient = False
    out = layer(x, e)
    xn = x.numpy()
    normed = (xn - xn.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(xn.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    gain = 1 + e.numpy() @ layer.gain.weight.numpy() + layer.gain.bias.numpy()
    shift = e.numpy() @ layer.shift.weight.numpy() + layer.shift.bias.numpy()
    np.testing.assert_allclose(out.numpy(), normed * gain[:, :, None, None] + shift[:, :, None, None], rtol=1e-4,
                               atol=1e-5)
    out.sum().backward()
    assert float(e.grad.abs().sum()) > 0 and layer.gain.weight.grad is not None


def test_the_projection_d_adds_the_class_embedding_dot_the_pooled_features():
    paddle.seed(1)
    D = Discriminator(16, 1, 4, 16, "layer", n_classes=3)
    x, y = paddle.randn([5, 1, 16, 16]), paddle.to_tensor([0, 1, 2, 1, 0], dtype="int64")
    layers = list(D.net)
    h = x
    for layer in layers[:-1]:
        h = layer(h)
    expected = layers[-1](h).reshape([-1]).numpy() + (D.embed.weight.numpy()[y.numpy()] * h.sum([2, 3]).numpy()).sum(1)
    np.testing.assert_allclose(D(x, y).numpy(), expected, rtol=1e-5, atol=1e-5)
    # the WGAN-GP penalty differentiates the conditional critic twice, its embedding included
    gp = losses.gradient_penalty(lambda images: D(images, y), x, paddle.randn([5, 1, 16, 16]))
    gp.backward()
    assert float(D.embed.weight.grad.abs().sum()) > 0


def test_a_conditional_generator_takes_labels_or_embeddings_and_they_agree():
    paddle.seed(2)
    G = Generator(16, 3, 8, 4, 16, "nearest", n_classes=4)
    G.eval()
    z, y = paddle.randn([4, 8]), paddle.to_tensor([0, 1, 2, 3], dtype="int64")
    with paddle.no_grad():
        by_label, by_embedding = G(z, y), G(z, embedding=G.class_embedding(y))
        other = G(z, paddle.to_tensor([1, 2, 3, 0], dtype="int64"))
    np.testing.assert_array_equal(by_label.numpy(), by_embedding.numpy())
    assert float((other - by_label).abs().max()) > 1e-3  # the class changes the image
    assert by_label.shape == [4, 3, 16, 16]


def test_a_conditional_step_trains_the_class_parts_and_keeps_the_class_names(tmp_path):
    cfg = tiny_config(tmp_path / "run", "dcgan", **CONDITIONAL, steps=2, snapshot_every=2)
    trainer = Trainer(cfg, progress=False)
    assert trainer.cfg.n_classes == 10 and trainer.cfg.class_names == [str(d) for d in range(10)]
    d_embed = trainer.objective.discriminator.embed.weight.numpy().copy()
    g_embed = trainer.objective.generator.embed.weight.numpy().copy()
    trainer.fit()
    assert not np.array_equal(trainer.objective.discriminator.embed.weight.numpy(), d_embed)
    assert not np.array_equal(trainer.objective.generator.embed.weight.numpy(), g_embed)
    payload = params_of(str(tmp_path / "run"), 2)
    assert payload["config"]["class_names"] == [str(d) for d in range(10)] and payload["config"]["n_classes"] == 10
    grid = iio.imread(tmp_path / "run" / "samples" / "step_00000002.png")
    assert grid.shape[0] == 4 * (16 + 2) + 2  # 16 samples, one class per row of 4


def test_the_builtin_gems_are_labelled_by_their_cut():
    from data_prep import gems

    data = load_images(None, 16, gems_count=64)
    assert data.class_names == list(gems.CUTS) and data.labels.shape == (64,)
    assert data.labels.dtype == np.int64 and len(set(data.labels.tolist())) >= 8
    assert all(gems.CUTS[c] == gems._params(0, i)["cut"] for i, c in enumerate(data.labels))


def test_condition_fade_ramps_the_class_in_from_an_unconditional_start(tmp_path):
    cfg = tiny_config(tmp_path / "run", "dcgan", **CONDITIONAL, steps=3, snapshot_every=3, ema_decay=0.9,
                      condition_fade_start=1, condition_fade_end=3)
    trainer = Trainer(cfg, progress=False)
    objective = trainer.objective
    weights = []
    for updates in range(5):
        objective.updates = updates
        weights.append(objective.condition_weight())
    assert weights == [0.0, 0.0, 0.5, 1.0, 1.0]
    objective.updates = 0
    objective._fade_condition()
    G, D = objective.generator, objective.discriminator
    z, x = paddle.randn([4, cfg.z_dim]), paddle.randn([4, 1, 16, 16])
    y, other = paddle.to_tensor([0, 1, 2, 3], dtype="int64"), paddle.to_tensor([5, 6, 7, 8], dtype="int64")
    G.eval(), D.eval()
    with paddle.no_grad():  # at weight 0 both nets are the unconditional ones: the class changes nothing
        np.testing.assert_array_equal(G(z, y).numpy(), G(z, other).numpy())
        np.testing.assert_array_equal(D(x, y).numpy(), D(x, other).numpy())
    G.train(), D.train()
    trainer.fit()  # updates 0, 1, 2: weights 0, 0, 0.5; the snapshot keeps the nets' weight
    payload = params_of(str(tmp_path / "run"), 3)
    for part in ("generator", "generator_ema", "discriminator"):
        assert payload[part]["condition_weight"].tolist() == [0.5], part


def test_a_conditional_snapshot_from_before_the_fade_loads_at_full_class_weight():
    paddle.seed(3)
    trained, fresh = (Generator(16, 1, 8, 4, 16, "nearest", n_classes=4) for _ in range(2))
    fresh.condition_weight.set_value(paddle.zeros([1]))
    old = {k: v for k, v in state_arrays(trained).items() if k != "condition_weight"}  # no buffer then
    load_weights(fresh, old, "old.safetensors")
    assert fresh.condition_weight.numpy().tolist() == [1.0]
    z, y = paddle.randn([2, 8]), paddle.to_tensor([0, 3], dtype="int64")
    trained.eval(), fresh.eval()
    np.testing.assert_array_equal(fresh(z, y).numpy(), trained(z, y).numpy())
    with pytest.raises(paddle_gan_kit.GanKitError, match=r"old.safetensors does not fit .*\(lacks embed.weight\)"):
        load_weights(fresh, {k: v for k, v in old.items() if k != "embed.weight"}, "old.safetensors")


@pytest.mark.parametrize("settings,message", [
    (["condition_fade_end=100"], "condition_fade_start=0 and condition_fade_end=100 need conditional=true"),
    # the start alone would be ignored (the weight would be 1 from step 1)
    (["conditional=true", "condition_fade_start=100"], "condition_fade_start=100 and condition_fade_end=0 need"),
    (["conditional=true", "condition_fade_end=10", "d_arch=projected"], "condition_fade is for d_arch=dcgan")])
def test_condition_fade_needs_a_conditional_dcgan_run(tmp_path, tiny_npy, settings, message):
    sets = [arg for setting in settings for arg in ("--set", setting)]
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--size", "16", "--out", tmp_path / "run", *sets)
    assert_one_line_error(result, message)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [("dcgan", dict(**CONDITIONAL)), ("wgan_gp", dict(**CONDITIONAL, n_critic=2)),
                                         ("dcgan", dict(g_steps=2)), ("dcgan", dict(**CONDITIONAL, g_steps=3)),
                                         ("dcgan", dict(**CONDITIONAL, condition_fade_start=2, condition_fade_end=5))])
def test_resume_is_bit_exact_with_classes_and_g_steps(tmp_path, tiny_npy, model, extra):
    common = dict(snapshot_every=100, sample_every=100, ema_decay=0.9, **extra)
    data = extra.get("data", tiny_npy)
    common.pop("data", None)
    paddle_gan_kit.train(tiny_config(tmp_path / "whole", model, data, steps=6, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, data, steps=3, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, data, steps=6, **common), resume=True, progress=False)
    a, b = params_of(str(tmp_path / "whole"), 6), params_of(str(tmp_path / "half"), 6)
    for part in ("generator", "discriminator", "generator_ema", "opt_g", "opt_d"):
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)
    assert a["data_order"] == b["data_order"]


def test_g_steps_updates_d_on_every_g_steps_th_step_only(tmp_path, tiny_npy):
    paddle_gan_kit.train(tiny_config(tmp_path / "run", "dcgan", tiny_npy, steps=6, g_steps=3, log_every=1,
                                     snapshot_every=6), progress=False)
    payload = params_of(str(tmp_path / "run"), 6)
    assert [row["step"] for row in payload["history"]] == [1, 2, 3, 4, 5, 6]
    assert [("loss_d" in row) for row in payload["history"]] == [True, False, False, True, False, False]
    assert payload["data_order"]["position"] == 2  # a real batch for each of the two D updates
    scalars, _ = vdl_records(str(tmp_path / "run"))
    assert [s for s, _ in scalars["train/loss_d"]] == [1, 4] and len(scalars["train/loss_g"]) == 6


def test_the_projected_d_conditions_every_head(use_lite0):
    cfg = TrainConfig(model="dcgan", size=16, channels=3, d_channels=8, d_arch="projected", loss="hinge",
                      backbone_levels=2, conditional=True, n_classes=4).resolve()
    D = build_discriminator(cfg)
    x = paddle.rand([2, 3, 16, 16]) * 2 - 1
    a, b = D(x, paddle.to_tensor([0, 1], dtype="int64")), D(x, paddle.to_tensor([2, 3], dtype="int64"))
    assert a.shape == [2 * 50] and float((a - b).abs().max()) > 0
    assert all(head.embed is not None for head in D.heads)


def test_conditional_training_without_labels_is_one_line(tmp_path, tiny_npy):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--size", "16", "--out", tmp_path / "run",
                     "--set", "conditional=true")
    assert_one_line_error(result, "conditional=true needs labelled data", "class folders", "builtin:mnist")
    assert not os.path.exists(tmp_path / "run" / "snapshots") or not os.listdir(tmp_path / "run" / "snapshots")


def test_sampling_by_class_name_index_and_per_class_grid(tmp_path, mnist_conditional_run):
    result = run_cli("paddle_gan_kit.sample", mnist_conditional_run, "--per-class", 3, "--grid", tmp_path / "g.png",
                     "--out", tmp_path / "picks")
    assert result.returncode == 0, result.stderr
    grid = iio.imread(tmp_path / "g.png")
    assert grid.shape[0] == 10 * (16 + 12 + 2) + 2  # ten rows of captioned tiles
    names = sorted(os.listdir(tmp_path / "picks"))
    assert len(names) == 30 and names[0] == "class_000_seed_000000.png" and names[-1] == "class_009_seed_000002.png"
    images, _ = paddle_gan_kit.sample.sample_images(mnist_conditional_run, n=3, labels="7")
    row = iio.imread(tmp_path / "picks" / "class_007_seed_000001.png")
    np.testing.assert_array_equal(images[1][..., 0], row if row.ndim == 2 else row[..., 0])
    for klass, fragment in (("seven", "unknown class 'seven'; this run's classes: 0, 1, 2"),
                            ("12", "class index 12 is out of range: this run has classes 0 to 9")):
        result = run_cli("paddle_gan_kit.sample", mnist_conditional_run, "--class", klass, "--grid", tmp_path / "x.png")
        assert_one_line_error(result, fragment)


def test_an_unknown_class_name_lists_the_close_ones(tmp_path):
    paddle_gan_kit.train(tiny_config(tmp_path / "gems", "dcgan", None, conditional=True, gems_count=64, steps=1),
                         progress=False)
    result = run_cli("paddle_gan_kit.sample", tmp_path / "gems", "--class", "marquis", "--grid", tmp_path / "x.png")
    assert_one_line_error(result, "unknown class 'marquis'; did you mean marquise?")
    result = run_cli("paddle_gan_kit.sample", tmp_path / "gems", "--class", "Oval", "--n", 2, "--grid", tmp_path / "o.png")
    assert result.returncode == 0, result.stderr  # names match without case


def test_an_unconditional_run_refuses_a_class_in_one_line(tmp_path, tiny_run):
    result = run_cli("paddle_gan_kit.sample", tiny_run, "--class", "3", "--grid", tmp_path / "x.png")
    assert_one_line_error(result, "this run is unconditional")
    result = run_cli("paddle_gan_kit.interpolate", tiny_run, "--classes", "1,2", "--out", tmp_path / "w.gif")
    assert_one_line_error(result, "this run is unconditional")


def test_a_walk_through_classes_passes_every_key_exactly(tmp_path, mnist_conditional_run):
    from paddle_gan_kit.interpolate import walk_frames
    from paddle_gan_kit.latent import generate_images, latents_for_seeds

    result = run_cli("paddle_gan_kit.interpolate", mnist_conditional_run, "--classes", "1,7,3", "--frames", 4,
                     "--out", tmp_path / "w.gif")
    assert result.returncode == 0, result.stderr
    assert iio.imread(tmp_path / "w.gif", index=None).shape[0] == 12
    run = paddle_gan_kit.load_generator(mnist_conditional_run)
    frames = walk_frames(run, keys=3, frames=4, classes=["1", "7", "3"])
    generator, cfg = run
    z = latents_for_seeds([0, 1, 2], cfg.z_dim, cfg.z_dist)
    images = paddle_gan_kit.sample.sample_images(run, seeds=[0, 1, 2], labels=[1, 7, 3])[0]
    # each key frame is G of that seed's latent and that class, as sample gives it
    direct = generate_images(generator, z, 3, np.array([1, 7, 3], np.int64))
    for k in range(3):
        np.testing.assert_array_equal(frames[4 * k], images[k])
        np.testing.assert_array_equal(frames[4 * k], direct[k])
    assert not np.array_equal(frames[0], frames[4])


def test_exports_take_the_class_as_their_second_input(tmp_path, mnist_conditional_run):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    result = run_cli("paddle_gan_kit.export", mnist_conditional_run, "--out", tmp_path / "exp", "--format", "onnx")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "exp" / "meta.json").read_text())
    assert meta["label"]["classes"] == [str(d) for d in range(10)] and meta["onnx"]["input"] == ["z", "label"]
    generator, cfg = paddle_gan_kit.load_generator(mnist_conditional_run)
    z = np.random.default_rng(0).standard_normal((3, cfg.z_dim)).astype(np.float32)
    y = np.array([2, 5, 9], np.int64)
    with paddle.no_grad():
        expected = generator(paddle.to_tensor(z), paddle.to_tensor(y)).numpy()
    session = ort.InferenceSession(str(tmp_path / "exp" / "generator.onnx"))
    np.testing.assert_allclose(session.run(None, {"z": z, "label": y})[0], expected, rtol=1e-5, atol=1e-5)
    with fastconv.using("paddle"):
        loaded = paddle.jit.load(str(tmp_path / "exp" / "generator"))
        np.testing.assert_allclose(loaded(paddle.to_tensor(z), paddle.to_tensor(y)).numpy(), expected, atol=1e-5)


def test_evaluation_of_a_conditional_run_is_per_class_too(tmp_path, mnist_conditional_run):
    from paddle_gan_kit.evaluate import evaluate_run

    from paddle_gan_kit.metrics import Evaluator, feature_stats, frechet_distance_from_stats
    from paddle_gan_kit.run import load_generator

    result = evaluate_run(mnist_conditional_run, metrics=("fid",), n=200, save=False, log=lambda line: None)
    assert result["extractor"] == "classifier" and result["intra_classes"] == 10 and result["intra_n"] == 20
    # the per-class numbers are what they say: recomputed here from the same images
    generator, cfg = load_generator(mnist_conditional_run)
    data = paddle_gan_kit.data.load_images(cfg.data, cfg.size, progress=False)
    evaluator = Evaluator(data.images, data.labels, "classifier", n=200, metrics=("fid",))
    fake, asked = evaluator.generate(generator, cfg.z_dim, cfg.z_dist, conditional=True), evaluator.fake_labels()
    feats, real_feats, real_labels = evaluator.extractor(fake), evaluator._real_feats, evaluator._real_labels
    per_class = [frechet_distance_from_stats(*feature_stats(real_feats[real_labels == c]),
                                             *feature_stats(feats[asked == c])) for c in range(10)]
    assert result["intra_fid"] == pytest.approx(np.mean(per_class), rel=1e-6)
    assert result["class_agreement"] == pytest.approx(np.mean(evaluator.extractor.predict(fake) == asked))
    paddle_gan_kit.train(tiny_config(tmp_path / "run", "dcgan", **CONDITIONAL, steps=2, eval_every=2, eval_n=100),
                         progress=False)
    scalars, _ = vdl_records(str(tmp_path / "run"))
    assert [s for s, _ in scalars["eval/intra_fid"]] == [2] and "eval/class_agreement" in scalars


def test_the_run_classes_are_one_owner_read_from_the_config(tmp_path):
    from paddle_gan_kit.classes import Classes
    from paddle_gan_kit.run import generator_from_payload

    names = [f"digit{d}" for d in range(10)]
    out = tmp_path / "named"
    paddle_gan_kit.train(tiny_config(out, "dcgan", **CONDITIONAL, steps=1, class_names=names), progress=False)
    generator, cfg = paddle_gan_kit.load_generator(str(out))
    classes = Classes.of(cfg)
    assert classes.names == tuple(names) and classes.index("DIGIT7") == 7 and classes.index("3") == 3
    assert list(classes.labels(None, 12)) == [*range(10), 0, 1]
    assert list(classes.labels("digit2", 3)) == [2, 2, 2] and list(classes.labels([1, "digit9"], 2)) == [1, 9]
    with pytest.raises(paddle_gan_kit.GanKitError, match="class index 10 is out of range: this run has classes 0 to 9"):
        classes.index(10)
    with pytest.raises(paddle_gan_kit.GanKitError, match="this run is unconditional"):
        Classes().labels("digit1", 2)
    assert Classes().labels(None, 2) is None
    # a snapshot of 0.2.0 kept the names beside its config; they still name the classes
    payload = params_of(str(out), 1)
    payload["config"].pop("class_names")
    payload["class_names"] = list("abcdefghij")
    _, old_cfg = generator_from_payload(payload, "old")
    assert Classes.of(old_cfg).names == tuple("abcdefghij")
    # and the CLIs take them
    result = run_cli("paddle_gan_kit.sample", out, "--class", "digit4", "--n", 2, "--grid", tmp_path / "four.png")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("setting,message", [
    ("class_names=[a,b]", "class_names must name each class once (2 names, 2 different, for n_classes=10)"),
    ("class_names=[a,a,b,c,d,e,f,g,h,i]", "(10 names, 9 different"),
])
def test_class_names_that_do_not_name_each_class_once_are_refused(tmp_path, setting, message):
    result = run_cli("paddle_gan_kit.train", "--data", "builtin:mnist", "--size", "16", "--out", tmp_path / "run",
                     "--set", "conditional=true", "--set", "n_classes=10", "--set", setting)
    assert_one_line_error(result, message)
