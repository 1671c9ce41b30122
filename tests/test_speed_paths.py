"""The optional speed paths: float16 loss scaling of the gradient penalty and the --amp flow, and
the speed benchmark's recipes."""
import glob
import importlib.util
import os

import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import losses, trainer as trainer_module
from paddle_gan_kit.models import init_weights
from paddle_gan_kit.models.dcgan import Discriminator

from conftest import assert_one_line_error, params_of, run_cli, tiny_config


@pytest.mark.parametrize("norm", ["layer", "none"])
def test_loss_scaled_penalty_equals_the_plain_one(norm):
    """float16 training scales the penalty's inner backward; value and parameter gradients
    must not depend on the scale (checked in float32, where a scale of 2^15 is exact)."""
    paddle.seed(3)
    critic = init_weights(Discriminator(16, 3, 8, 32, norm))
    real, fake = paddle.randn([4, 3, 16, 16]), paddle.randn([4, 3, 16, 16])
    eps = paddle.rand([4, 1, 1, 1])
    results = []
    for scale in (None, paddle.full([], 2.0**15)):
        for p in critic.parameters():
            p.clear_gradient(False)
        gp = losses.gradient_penalty(critic, real, fake, eps, loss_scale=scale)
        gp.backward()
        # a parameter the penalty does not depend on (the last bias) has no gradient, or zeros
        results.append([float(gp)] + [np.zeros(p.shape) if p.grad is None else p.grad.numpy()
                                      for p in critic.parameters()])
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert sum(bool(np.any(g != 0)) for g in results[0][1:]) >= 3
    for a, b in zip(results[0][1:], results[1][1:]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def test_amp_on_the_cpu_is_a_one_line_error(tmp_path, tiny_npy):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "run", "--steps", 1,
                     "--no-progress", "--amp", "float16")
    assert_one_line_error(result, "--amp float16: mixed precision needs a GPU", "drop --amp")
    assert not (tmp_path / "run").exists()
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "run", "--amp", "fp8")
    assert_one_line_error(result, "'amp' is 'fp8'", "off, float16, bfloat16")


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_amp_flow_runs_and_resumes_where_autocast_is_a_no_op(tmp_path, tiny_npy, monkeypatch, model):
    """On the CPU Paddle's autocast and GradScaler do nothing, so the float16 code path
    (autocast contexts, scaled backward, scaler.step/update, scaled penalty, scaler state in
    snapshots) must train exactly like amp off. This checks the plumbing, not float16 numerics,
    which need a GPU."""
    monkeypatch.setattr(trainer_module, "check_device_options", lambda cfg, device, world_size: None)
    common = dict(steps=4, snapshot_every=2, n_critic=2)
    paddle_gan_kit.train(tiny_config(tmp_path / "off", model, tiny_npy, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "amp", model, tiny_npy, amp="float16", steps=2,
                                     snapshot_every=2, n_critic=2), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "amp", model, tiny_npy, amp="float16", **common),
                         resume=True, progress=False)
    a, b = params_of(str(tmp_path / "off"), 4), params_of(str(tmp_path / "amp"), 4)
    assert a["amp_scalers"] is None and set(b["amp_scalers"]) == {"g", "d"}
    for part in ("generator", "discriminator"):
        for key, value in a[part].items():
            np.testing.assert_array_equal(value, b[part][key], err_msg=f"{part}.{key}")


def test_the_speed_benchmark_runs_each_recipe_with_its_whole_step():
    """benchmarks/bench_train.py times every configs/ recipe with all the keys that change what
    a step computes (augmentation, objective and penalties as well as the nets); it once dropped
    ``augment``, so the quick start was timed without its DiffAugment."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(repo, "benchmarks", "bench_train.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # keys that choose data, outputs, schedule or learning rates, not the work of a step
    not_step = {"data", "out", "steps", "snapshot_every", "keep_snapshots", "sample_every", "n_samples",
                "log_every", "eval_every", "eval_n", "lr_g", "lr_d", "beta1", "beta2", "seed", "fit", "gems_count",
                "backbone_weights"}
    shapes = bench.recipes()
    paths = sorted(glob.glob(os.path.join(repo, "configs", "*.yaml")))
    assert len(shapes) == len(paths) >= 10
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        values = bench.load_yaml(path)
        assert set(values) - not_step <= set(shapes[name]), name
    assert shapes["quickstart_cpu"]["augment"] == "translation,color"
