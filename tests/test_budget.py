"""Training for a number of minutes: the stop, its snapshot, the resume, the progress line."""
import numpy as np

import paddle_gan_kit
from paddle_gan_kit import snapshot
from paddle_gan_kit.trainer import Trainer
from conftest import TINY_FLAGS, assert_one_line_error, params_of, run_cli, tiny_config, vdl_records

# far below one step's time: the run stops after its first step
AN_INSTANT = 1e-7


def newest(run_dir):
    return snapshot.load_newest(str(run_dir / "snapshots")).payload


def test_minutes_stop_with_a_snapshot_and_resume_exactly(tmp_path, tiny_npy):
    whole = tmp_path / "whole"
    paddle_gan_kit.train(tiny_config(whole, data=tiny_npy, steps=6, snapshot_every=100), progress=False)

    part = tmp_path / "part"
    trainer = Trainer(tiny_config(part, data=tiny_npy, steps=6, snapshot_every=100, minutes=AN_INSTANT),
                      progress=False)
    assert trainer.fit() == "out of time"
    stopped = newest(part)
    assert stopped["step"] == 1 and stopped["train_seconds"] > 0
    assert "out of time" in (part / "train.log").read_text()

    # the same command again: the minutes are spent, nothing changes
    again = Trainer(tiny_config(part, data=tiny_npy, steps=6, snapshot_every=100, minutes=AN_INSTANT),
                    resume=True, progress=False)
    assert again.fit() == "completed" and newest(part)["step"] == 1

    # more minutes: the run goes on to its steps, the time adding up, and lands where one go does
    paddle_gan_kit.train(tiny_config(part, data=tiny_npy, steps=6, snapshot_every=100, minutes=60), resume=True,
                         progress=False)
    resumed = newest(part)
    assert resumed["step"] == 6 and resumed["train_seconds"] > stopped["train_seconds"]
    a, b = params_of(str(whole), 6), params_of(str(part), 6)
    for net in ("generator", "discriminator", "opt_g", "opt_d"):
        for key, value in a[net].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[net][key]), (net, key)


def test_progress_line_shows_time_spent_and_left(tmp_path, tiny_npy):
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", out, "--steps", 4, "--log-every", 2,
                     "--minutes", 30, *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    lines = [line for line in (out / "train.log").read_text().splitlines() if " step 4/4 " in line]
    assert len(lines) == 1 and " time " in lines[0] and " left 0s" in lines[0], lines
    assert "or 30 minutes of training (0.0 done)" in (out / "train.log").read_text()
    tags, _ = vdl_records(str(out))
    minutes = [v for _, v in tags["speed/train_minutes"]]
    assert len(minutes) == 2 and 0 < minutes[0] < minutes[1] < 30


def test_bad_minutes_are_one_line(tmp_path, tiny_npy):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "run", "--minutes", -5,
                     *TINY_FLAGS)
    assert_one_line_error(result, "minutes must be a number of minutes >= 0", "-5")
    assert not (tmp_path / "run").exists()
