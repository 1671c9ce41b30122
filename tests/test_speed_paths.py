"""The optional speed paths: float16 loss scaling of the gradient penalty, the --amp flow, and
--compile (paddle.jit.to_static), which must give the dynamic graph's training or fall back."""
import os

import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import losses, trainer as trainer_module
from paddle_gan_kit.models import init_weights
from paddle_gan_kit.models.dcgan import Discriminator

from conftest import run_cli, tiny_config
from test_train import assert_one_line_error, params_of


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
    monkeypatch.setattr(trainer_module, "check_amp", lambda amp, device: None)
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


def _log(run_dir):
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as f:
        return f.read()


def first_step_gradients(cfg) -> tuple[dict, str]:
    """Every parameter gradient the optimizers see in the first train_step, and the log."""
    from paddle_gan_kit.trainer import Trainer

    trainer = Trainer(cfg, progress=False)
    grads = {}
    for name, opt, model in (("d", trainer.opt_d, trainer.discriminator), ("g", trainer.opt_g, trainer.generator)):
        def step(original=opt.step, name=name, model=model):
            grads.setdefault(name, [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()])
            original()
        opt.step = step
    trainer.sample_grid()  # fit() samples (eval mode, no gradients) before the first step
    trainer.train_step()
    return grads, _log(trainer.run_dir)


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_compile_gives_the_dynamic_graphs_gradients_or_falls_back(tmp_path, tiny_npy, model):
    """The optimizers must see the same gradients with --compile as without. For WGAN-GP,
    Paddle 3.3's to_static drops the penalty's gradients w.r.t. the critic's parameters: the
    start-up check must catch that, say why in the log, and keep the critic dynamic. Nor does
    it give parameter gradients for a layer first called under no_grad (WGAN-GP's fakes).
    (Weights after several Adam steps are not compared: Adam turns float noise in near-zero
    gradients into lr-sized differences.)"""
    dynamic, _ = first_step_gradients(tiny_config(tmp_path / "dyn", model, tiny_npy, n_critic=2))
    static, log = first_step_gradients(tiny_config(tmp_path / "static", model, tiny_npy, n_critic=2,
                                                   compile=True))
    assert "compile: generator" in log and "compile: discriminator" in log
    if model == "wgan_gp":
        assert "compile: discriminator stays in dynamic graph: critic loss with gradient penalty" in log
    for name in ("d", "g"):
        assert len(dynamic[name]) == len(static[name])
        for i, (a, b) in enumerate(zip(dynamic[name], static[name])):
            assert (a is None) == (b is None), (name, i)
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.abs(a).max()),
                                           err_msg=f"{name} parameter {i}")


def test_the_compile_check_rejects_wrong_gradients():
    from paddle_gan_kit.static_graph import _compare

    good = [np.ones(3, np.float32), None]
    assert _compare(good, [np.ones(3, np.float32), None], "x") is None
    assert "missing" in _compare(good, [None, None], "x")
    assert "all zero" in _compare(good, [np.zeros(3, np.float32), None], "x")
    assert "differs" in _compare(good, [np.full(3, 1.1, np.float32), None], "x")


def test_compile_flag_from_the_command_line_logs_its_outcome(tmp_path, tiny_npy):
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", out, "--steps", 1, "--size", 16,
                     "--set", "g_channels=8", "--set", "d_channels=8", "--batch-size", 8, "--no-progress",
                     "--compile")
    assert result.returncode == 0, result.stderr[-2000:]
    log = _log(str(out))
    assert "compile: generator" in log and "compile: discriminator" in log
    assert "compile: true" in (out / "config.yaml").read_text()
