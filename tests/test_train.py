"""End-to-end training: run files, VisualDL logs, exact resume, kill -9, signals, bad input."""
import glob
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml

import paddle_gan_kit
from paddle_gan_kit import snapshot
from paddle_gan_kit.images import make_grid, to_uint8_images
from conftest import REPO, TINY, TINY_FLAGS, assert_one_line_error, params_of, run_cli, tiny_config, vdl_records

@pytest.mark.slow
@pytest.mark.parametrize("model,scalars", [
    ("dcgan", ["train/loss_g", "train/loss_d", "train/d_real", "train/d_fake"]),
    ("wgan_gp", ["train/loss_g", "train/loss_critic", "train/wasserstein", "train/gp"]),
])
def test_cli_run_writes_every_output(tmp_path, tiny_npy, model, scalars):
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--model", model, "--data", tiny_npy, "--out", out,
                     "--steps", 4, "--log-every", 1, "--sample-every", 2, "--snapshot-every", 2,
                     "--set", "n_critic=2", *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "no GPU found: training on the CPU" in result.stderr

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"] == model and cfg["channels"] == 3 and cfg["lr_g"] > 0  # resolved
    assert sorted(os.listdir(out / "samples")) == [f"step_{s:08d}.png" for s in (0, 2, 4)]
    grid = cv2.imread(str(out / "samples" / "step_00000004.png"))
    assert grid.shape == (4 * 18 + 2, 4 * 18 + 2, 3) and grid.std() > 1  # 4x4 tiles of 16 px, padding 2
    curves = cv2.imread(str(out / "losses.png"))
    assert curves is not None and curves.shape[0] > 100
    assert [s for s, _ in snapshot.list_snapshots(str(out / "snapshots"))] == [2, 4]
    log = (out / "train.log").read_text()
    assert "step 4/4" in log and "done: step 4" in log

    tags, images = vdl_records(str(out))
    for tag in scalars + ["lr/lr_g", "lr/lr_d", "speed/images_per_s"]:
        steps = [s for s, _ in tags[tag]]
        assert steps == [1, 2, 3, 4], (tag, steps)  # a rising step, not stuck at 0
        assert all(np.isfinite(v) for _, v in tags[tag])
    assert images["samples"] == 3
    lr = dict(tags["lr/lr_g"])[4]
    assert lr == pytest.approx(2e-4 if model == "dcgan" else 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_resume_is_bit_exact(tmp_path, tiny_npy, model):
    # 2N steps in one go == N steps, stop, resume to 2N (in-process: models built again in
    # a process that already built others, so Paddle's parameter names differ)
    whole = tiny_config(tmp_path / "whole", model, tiny_npy, steps=6, snapshot_every=100,
                        sample_every=4, n_critic=2)
    paddle_gan_kit.train(whole, progress=False)
    half = tiny_config(tmp_path / "half", model, tiny_npy, steps=3, snapshot_every=100,
                       sample_every=4, n_critic=2)
    paddle_gan_kit.train(half, progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, tiny_npy, steps=6, snapshot_every=100,
                                     sample_every=4, n_critic=2), resume=True, progress=False)
    a, b = params_of(str(tmp_path / "whole"), 6), params_of(str(tmp_path / "half"), 6)
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)
    assert a["data_order"] == b["data_order"]
    # log windows that both runs closed at the same steps hold the same losses
    losses_a = {r["step"]: r["loss_g"] for r in a["history"]}
    losses_b = {r["step"]: r["loss_g"] for r in b["history"]}
    assert losses_a[2] == losses_b[2] and losses_a[6] == losses_b[6]


def test_snapshot_holds_everything(tiny_run):
    payload = params_of(tiny_run, 4)
    for key in ("generator", "discriminator", "opt_g", "opt_d", "step", "data_order",
                "fixed_noise", "config", "history"):
        assert key in payload
    assert "rng" not in payload  # every step's draws are seeded from (seed, rank, step)
    assert payload["fixed_noise"].shape == (TINY["n_samples"], TINY["z_dim"])
    assert payload["opt_g"] and all(k.startswith("@") for k in payload["opt_g"] if k != "LR_Scheduler")


def test_load_generator_from_run_and_file(tiny_run):
    generator, cfg = paddle_gan_kit.load_generator(tiny_run)
    assert not generator.training and cfg.size == 16 and cfg.channels == 3
    path = os.path.join(tiny_run, "snapshots", snapshot.snapshot_name(4))
    generator2, _ = paddle_gan_kit.load_generator(path)
    import paddle

    z = paddle.randn([2, cfg.z_dim])
    assert np.array_equal(generator(z).numpy(), generator2(z).numpy())
    # the last sample grid is G(fixed_noise) in eval mode
    noise = params_of(tiny_run, 4)["fixed_noise"]
    grid = make_grid(to_uint8_images(generator(paddle.to_tensor(noise))))
    saved = cv2.imread(os.path.join(tiny_run, "samples", "step_00000004.png"))[..., ::-1]
    assert np.array_equal(grid, saved)
    with pytest.raises(paddle_gan_kit.GanKitError, match="no snapshot 7"):
        paddle_gan_kit.load_generator(tiny_run, snapshot=7)


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "paddle_gan_kit.train", *map(str, args)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_snapshot(out, proc, minimum=1, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(snapshot.list_snapshots(os.path.join(out, "snapshots"))) >= minimum:
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    raise AssertionError("no snapshot appeared")


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path, tiny_npy):
    out = str(tmp_path / "run")
    args = ["--data", tiny_npy, "--out", out, "--steps", 400, "--snapshot-every", 1,
            "--sample-every", 1000, *TINY_FLAGS]
    proc = _start(args, tmp_path)
    _wait_for_snapshot(out, proc, minimum=2)
    time.sleep(0.3)
    proc.kill()  # SIGKILL: no handler runs, a write may be cut anywhere
    proc.wait()
    snaps = snapshot.list_snapshots(os.path.join(out, "snapshots"))
    newest = snapshot.load_newest(os.path.join(out, "snapshots"))
    # keep_snapshots is 3; a kill between writing a snapshot and pruning the oldest leaves one more
    assert newest is not None and newest.payload["step"] >= 1 and len(snaps) <= 3 + 1
    step = newest.payload["step"]
    result = run_cli("paddle_gan_kit.train", "--out", out, "--resume", "--steps", step + 2,
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    assert f"(step {step})" in result.stderr
    assert snapshot.load_newest(os.path.join(out, "snapshots")).payload["step"] == step + 2
    assert len(snapshot.list_snapshots(os.path.join(out, "snapshots"))) == 3  # the next save pruned the extra


@pytest.mark.slow
def test_sigterm_writes_a_snapshot_and_resume_continues(tmp_path, tiny_npy):
    out = str(tmp_path / "run")
    proc = _start(["--data", tiny_npy, "--out", out, "--steps", 10000, "--snapshot-every", 1000,
                   "--sample-every", 1000, "--log-every", 1, *TINY_FLAGS], tmp_path)
    deadline = time.time() + 300  # as run_cli's timeout: a loaded 2-core machine starts slowly
    while not os.path.exists(os.path.join(out, "train.log")) or "step 2/" not in open(os.path.join(out, "train.log")).read():
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopped at step" in err and "--resume" in err
    found = snapshot.load_newest(os.path.join(out, "snapshots"))
    assert found.payload["step"] >= 2
    result = run_cli("paddle_gan_kit.train", "--out", out, "--resume", "--steps",
                     found.payload["step"] + 1, "--no-progress")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_corrupt_newest_snapshot_falls_back(tmp_path, tiny_npy):
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=4), progress=False)
    newest = out / "snapshots" / snapshot.snapshot_name(4)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as a full disk would leave it
    result = run_cli("paddle_gan_kit.train", "--out", out, "--resume", "--steps", 5, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "step_00000004.safetensors is corrupt or incomplete; resuming from the previous" in result.stderr
    assert "(step 2)" in result.stderr


@pytest.mark.parametrize("keep_snapshot", [True, False])
def test_resumed_visualdl_history_has_each_step_once(tmp_path, tiny_npy, keep_snapshot):
    """A session killed after its step-2 snapshot had logged steps 3-4 (or before any snapshot):
    the resumed run logs them again, so the old records move to vdl_superseded (kept, not
    deleted) and VisualDL shows every step once."""
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=4, log_every=1, sample_every=2,
                                     snapshot_every=2), progress=False)
    for path in sorted((out / "snapshots").glob("step_*"))[0 if not keep_snapshot else 1:]:
        path.unlink()  # as if killed right after the step-2 snapshot (or before the first one)
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=6, log_every=1, sample_every=2,
                                     snapshot_every=2), resume=True, progress=False)
    scalars, images = vdl_records(str(out))
    assert sorted(step for step, _ in scalars["train/loss_g"]) == [1, 2, 3, 4, 5, 6]
    assert images["samples"] == 4  # steps 0, 2, 4, 6
    moved = list((out / "vdl_superseded").glob("vdlrecords.*"))
    assert len(moved) == 1
    log = (out / "train.log").read_text()
    assert f"after step {2 if keep_snapshot else 0} moved to" in log
    if keep_snapshot:  # the kept steps carry their first session's values
        first = dict(scalars["train/loss_g"])
        history = {r["step"]: r["loss_g"] for r in snapshot.load_newest(str(out / "snapshots")).payload["history"]}
        assert first[1] == pytest.approx(history[1], rel=1e-6) and first[2] == pytest.approx(history[2], rel=1e-6)


def test_existing_run_is_refused_without_resume(tiny_run):
    before = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(tiny_run, "**"), recursive=True)}
    result = run_cli("paddle_gan_kit.train", "--out", tiny_run, "--steps", 8, *TINY_FLAGS)
    assert_one_line_error(result, "already holds a run", "--resume")
    after = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(tiny_run, "**"), recursive=True)}
    assert before == after


def test_resume_refuses_changed_hyperparameters(tiny_run):
    result = run_cli("paddle_gan_kit.train", "--out", tiny_run, "--resume", "--batch-size", 4,
                     "--steps", 8, "--no-progress")
    assert_one_line_error(result, "batch_size: run has 8, now 4")


@pytest.mark.parametrize("args,fragments", [
    (["--data", "/no/such/folder"], ["--data /no/such/folder does not exist"]),
    (["--size", "100"], ["unsupported size 100", "28, 32, 64"]),
    (["--set", "visiual_interval=5"], ["unknown config key 'visiual_interval'", "valid keys:", "sample_every"]),
    (["--set", "lr_g=fast"], ["config key 'lr_g' must be float", "'fast'"]),
    (["--set", "batch_size=1.5"], ["config key 'batch_size' must be int"]),
    (["--model", "stylegan"], ["unknown model 'stylegan'", "dcgan, wgan_gp"]),
    (["--device", "gpu"], ["--device gpu", "--device cpu"]),
    (["--device", "tpu"], ["'device' is 'tpu'", "auto, gpu, cpu"]),
    (["--set", "d_norm=group"], ["'d_norm' is 'group'", "batch, layer, instance, none"]),
    (["--set", "critic_norm=none"], ["'critic_norm' is now called 'd_norm'", "--set d_norm="]),
    (["--config", "/no/such.yaml"], ["config file /no/such.yaml does not exist"]),
])
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_npy, args, fragments):
    base = ["--data", tiny_npy, "--out", tmp_path / "run", "--steps", 1, "--no-progress"]
    result = run_cli("paddle_gan_kit.train", *base, *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_bad_yaml_config_keys(tmp_path, tiny_npy):
    config = tmp_path / "bad.yaml"
    config.write_text("model: wgan_gp\nvisiual_interval: 3\n")
    result = run_cli("paddle_gan_kit.train", "--config", config, "--data", tiny_npy, "--out", tmp_path / "r")
    assert_one_line_error(result, "unknown config key 'visiual_interval'")


def test_dataset_smaller_than_a_batch(tmp_path):
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((3, 16, 16, 3), np.uint8))
    result = run_cli("paddle_gan_kit.train", "--data", small, "--out", tmp_path / "r", *TINY_FLAGS)
    assert_one_line_error(result, "3 images, fewer than one batch of 8", "--batch-size")


HIDE_PADDLE = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'paddle' or name.startswith('paddle.'):\n"
    "            raise ImportError(MESSAGE)\n"
    "sys.meta_path.insert(0, Block())\n"
)
HIDE_METADATA = (
    "from importlib import metadata\n"
    "_version = metadata.version\n"
    "def version(name):\n"
    "    if name.startswith('paddlepaddle'):\n"
    "        raise metadata.PackageNotFoundError(name)\n"
    "    return _version(name)\n"
    "metadata.version = version\n"
)


@pytest.mark.parametrize("installed", [False, True], ids=["missing", "broken"])
def test_missing_or_broken_paddle_gives_one_line(tmp_path, installed):
    message = "libdnnl.so.3: cannot open shared object file" if installed else "No module named paddle"
    code = f"MESSAGE = {message!r}\n" + HIDE_PADDLE + ("" if installed else HIDE_METADATA)
    (tmp_path / "sitecustomize.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    result = subprocess.run([sys.executable, "-c", "import paddle_gan_kit"], env=env, cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    if installed:  # the real cause, not "install Paddle"
        assert "installed but does not import" in last and message in last and "--force-reinstall" in last
    else:
        assert "pip install paddlepaddle" in last and "paddlepaddle-gpu" in last


def test_resume_on_an_empty_out_starts_the_run(tmp_path, tiny_npy):
    # AI Studio users put --resume in the one command they rerun after every restart
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", out, "--steps", 2, "--resume",
                     *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "resumed" not in result.stderr
    assert [s for s, _ in snapshot.list_snapshots(str(out / "snapshots"))] == [2]


def test_rerunning_a_finished_run_changes_nothing(tiny_run):
    files = {p: os.path.getmtime(p) for p in glob.glob(os.path.join(tiny_run, "**"), recursive=True)
             if os.path.isfile(p) and not p.endswith("train.log")}
    result = run_cli("paddle_gan_kit.train", "--out", tiny_run, "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "already at step 4 of 4; nothing to do" in result.stderr
    assert files == {p: os.path.getmtime(p) for p in files}


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))),
                         ids=lambda path: os.path.basename(path))
def test_every_recipe_is_a_valid_config(recipe):
    """Every file in configs/ reads, resolves and validates, so the README's commands start."""
    from paddle_gan_kit.config import build_config, load_yaml

    cfg = build_config(load_yaml(recipe)).resolve()
    assert cfg.out and cfg.steps > 0
    # its first line says what it is for
    with open(recipe, encoding="utf-8") as f:
        assert f.readline().startswith("# ")


@pytest.mark.parametrize("setting,message", [
    ("ema_rampup=0.05", "ema_rampup=0.05 does nothing without an EMA generator: set ema_decay=0.999"),
    ("n_classes=10", "n_classes=10 does nothing without conditional=true"),
    ("label_smoothing=0.1", "label_smoothing=0.1 does nothing without the non-saturating loss"),
    ("backbone_levels=2", "backbone_levels=2 does nothing without d_arch=projected"),
])
def test_a_setting_that_would_be_ignored_is_refused(tmp_path, tiny_npy, setting, message):
    extra = ["--set", "loss=hinge"] if setting.startswith("label_smoothing") else []
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--size", "16", "--out", tmp_path / "run",
                     "--set", setting, *extra)
    assert_one_line_error(result, message)
    assert not os.path.exists(tmp_path / "run")
