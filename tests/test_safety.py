"""A shared run never runs code; damaged snapshots, a full disk and a diverged step never cost
the last good snapshot, and each ends in one line with exit code 2."""
import errno
import glob
import os
import pickle
import random
import shutil
import subprocess

import numpy as np
import pytest

import paddle_gan_kit
import safe_files as files
from data_prep.errors import NoSpaceError
from paddle_gan_kit import snapshot
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.trainer import Trainer
from conftest import TINY_FLAGS, assert_error_ends_the_run, assert_one_line_error, params_of, run_cli, tiny_config, vdl_records


class Payload:
    """Unpickling this runs ``open(marker, "w")``: what a crafted snapshot could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('pwned')",))


def hostile_run(tmp_path):
    run = tmp_path / "shared_run"
    (run / "snapshots").mkdir(parents=True)
    marker = tmp_path / "code_ran"
    with open(run / "snapshots" / "step_00000001.pdckpt", "wb") as f:
        pickle.dump({"format": 1, "step": 1, "config": Payload(marker)}, f)
    return run, marker


@pytest.mark.parametrize("command", [
    ["paddle_gan_kit.sample", "{run}", "--n", "2", "--grid", "{tmp}/g.png"],
    ["paddle_gan_kit.interpolate", "{run}", "--keys", "2", "--frames", "2", "--out", "{tmp}/w.gif"],
    ["paddle_gan_kit.evaluate", "{run}", "--n", "4", "--real", "builtin:gems"],
    ["paddle_gan_kit.export", "{run}", "--out", "{tmp}/exported"],
    ["paddle_gan_kit.train", "--out", "{run}", "--resume", "--no-progress"],
])
def test_a_crafted_pickle_snapshot_runs_no_code(tmp_path, command):
    run, marker = hostile_run(tmp_path)
    args = [part.format(run=run, tmp=tmp_path) for part in command]
    result = run_cli(args[0], *args[1:])
    assert not marker.exists(), "unpickling ran the payload"
    assert_one_line_error(result, "builtins.eval", "refusing to load it")


def test_load_generator_refuses_a_crafted_pickle(tmp_path):
    run, marker = hostile_run(tmp_path)
    with pytest.raises(GanKitError, match=r"holds a pickled builtins\.eval, which no snapshot contains"):
        paddle_gan_kit.load_generator(str(run))
    assert not marker.exists()


def test_fuzzed_snapshots_are_one_line_never_a_traceback(tiny_run, tmp_path, capsys):
    """Truncated, bit-flipped and foreign files, through the sample CLI in this process."""
    from paddle_gan_kit.sample import main

    good = open(os.path.join(tiny_run, "snapshots", snapshot.snapshot_name(4)), "rb").read()
    legacy = open(os.path.join(os.path.dirname(__file__), "data", "legacy_v1", "dcgan", "snapshots",
                               "step_00000002.pdckpt"), "rb").read()
    rng = random.Random(0)
    cases = [b"", b"\x00" * 8, b"not a snapshot at all", pickle.dumps([1, 2, 3]), pickle.dumps({"format": 1}),
             open(os.path.join(os.path.dirname(__file__), "data", "legacy_v1", "data", "blobs.npy"), "rb").read()]
    for source in (good, legacy):
        cases += [source[:rng.randrange(len(source))] for _ in range(25)]
        for _ in range(40):
            flipped = bytearray(source)
            position = rng.randrange(len(flipped))
            flipped[position] ^= 1 << rng.randrange(8)
            cases.append(bytes(flipped))
    loaded = []
    for i, data in enumerate(cases):
        is_legacy = data[:1] == b"\x80"
        path = tmp_path / f"case_{i}{snapshot.LEGACY_SUFFIX if is_legacy else snapshot.SUFFIX}"
        path.write_bytes(data)
        with pytest.raises(SystemExit) as exit_info:
            main([str(path), "--n", "2", "--grid", str(tmp_path / "g.png")])
            raise SystemExit(0)  # loaded
        err = capsys.readouterr().err.strip().splitlines()
        if exit_info.value.code == 2:
            assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0], err
        else:
            assert exit_info.value.code == 0
            loaded.append(is_legacy)
    # every damaged file of today's format is refused (its sha256 covers every byte); a legacy
    # pickle has no checksum, so a flip inside its raw weights still loads (as it always did)
    assert loaded.count(False) == 0 and loaded.count(True) < 40


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_damaged_snapshots_from_the_command_line(tiny_run, tmp_path, damage):
    path = tmp_path / "step_00000004.safetensors"
    data = bytearray(open(os.path.join(tiny_run, "snapshots", snapshot.snapshot_name(4)), "rb").read())
    if damage == "truncate":
        data = data[:len(data) - 7]
    elif damage == "flip":
        data[len(data) // 2] ^= 0x10
    else:
        data = bytearray(b"\x89PNG\r\n\x1a\n" + bytes(200))
    path.write_bytes(bytes(data))
    result = run_cli("paddle_gan_kit.export", path, "--out", tmp_path / "exported")
    assert_one_line_error(result, f"snapshot {path} is corrupt, incomplete or not a paddle_gan_kit snapshot")


# --- a full disk --------------------------------------------------------------------------------

def test_a_write_that_hits_a_full_disk_keeps_the_old_file(tmp_path):
    path = tmp_path / "snap.bin"
    path.write_bytes(b"the previous complete file")
    with pytest.raises(NoSpaceError, match=r"no space left on the disk of .* to write snap.bin \(1\.0 MB needed"):
        with files.atomic_path(path, needed=10**6, fix="free space") as tmp:
            tmp.write_bytes(b"half a fi")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert path.read_bytes() == b"the previous complete file"
    assert os.listdir(tmp_path) == ["snap.bin"]


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (needs root and mount; skipped where the machine allows neither)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_training_on_a_full_disk_stops_in_one_line_and_resumes_bit_exactly(small_disk, tmp_path, tiny_npy):
    # snapshots of about 2 MB: the 6 MB disk holds two of them, and the third does not fit
    wide = ["--set", "g_channels=48", "--set", "d_channels=48", "--set", "n_samples=4", "--snapshot-every", "5",
            "--sample-every", "1000", "--log-every", "5"]
    args = ["--data", tiny_npy, "--steps", "20", *TINY_FLAGS, *wide]
    out = small_disk / "run"
    result = run_cli("paddle_gan_kit.train", "--out", out, *args)
    assert_error_ends_the_run(result, "no space left on the disk of", "MB needed", "MB free", "nothing complete was lost",
                          f"--resume --out {out}")
    assert "snapshots: " in (out / "train.log").read_text()
    left = sorted(os.listdir(out / "snapshots"))
    assert left and not glob.glob(str(small_disk / "**" / "*.tmp-*"), recursive=True)
    for name in left:  # what is on disk is complete
        snapshot.read_snapshot(str(out / "snapshots" / name))

    os.remove(out / "snapshots" / left[0])  # the user frees space
    result = run_cli("paddle_gan_kit.train", "--out", out, "--resume", "--set", "keep_snapshots=1", "--no-progress")
    assert result.returncode == 0, result.stderr
    result = run_cli("paddle_gan_kit.train", "--out", tmp_path / "whole", *args)
    assert result.returncode == 0, result.stderr
    a, b = params_of(str(out), 20), params_of(str(tmp_path / "whole"), 20)
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)


@pytest.mark.slow
def test_preparing_data_on_a_full_disk_is_one_line(small_disk, tmp_path):
    import cv2

    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        cv2.imwrite(str(src / f"{i:03d}.png"), rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    result = run_cli("data_prep", src, "--out", small_disk / "prepared", "--sizes", "256", "--workers", "1", "--quiet")
    assert_one_line_error(result, "no space left on the disk of", "run the same command again")
    assert not (small_disk / "prepared").exists()  # a refused first run leaves nothing behind


# --- divergence --------------------------------------------------------------------------------

@pytest.mark.slow
def test_divergence_never_writes_a_non_finite_snapshot_and_lower_rates_train_on(tmp_path, tiny_npy):
    out = tmp_path / "run"
    result = run_cli("paddle_gan_kit.train", "--model", "wgan_gp", "--data", tiny_npy, "--out", out, "--steps", 6,
                     "--set", "lr_d=1e6", "--set", "lr_g=1e6", "--snapshot-every", 1, "--log-every", 5,
                     "--set", "n_critic=2", *TINY_FLAGS)
    assert_error_ends_the_run(result, "training diverged at step", "not finite", "--resume --set lr_g=0.0001 --set lr_d=0.0001")
    for _, path in snapshot.list_snapshots(str(out / "snapshots")):
        payload = snapshot.read_snapshot(path)
        for part in ("generator", "discriminator", "opt_g", "opt_d"):
            assert all(np.isfinite(v).all() for v in payload[part].values() if isinstance(v, np.ndarray))
    command = result.stderr.split("lower learning rates: ")[1].split()
    result = run_cli(*command[2:], "--no-progress")  # the advice, as given
    assert result.returncode == 0, result.stderr
    assert "changed settings: lr_g 1000000.0 -> 0.0001; lr_d 1000000.0 -> 0.0001" in result.stderr
    assert params_of(str(out), 6)["step"] == 6


def test_divergence_after_a_snapshot_names_it_and_resume_with_lower_rates_continues(tmp_path, tiny_npy):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(out, "dcgan", tiny_npy, steps=8, snapshot_every=2, log_every=100), progress=False)
    step = trainer.objective.step

    def poisoned(reals, labels=None):
        values = step(reals, labels)
        if trainer.step == 2:  # the update that makes step 3 blows up
            weight = trainer.objective.discriminator.parameters()[0]
            weight.set_value(np.full(weight.shape, np.nan, np.float32))
        return values

    trainer.objective.step = poisoned
    newest = os.path.join(str(out), "snapshots", snapshot.snapshot_name(2))
    with pytest.raises(GanKitError, match=rf"diverged at step 4 \((generator|discriminator) .* is not finite\), so no snapshot was "
                                          rf"written for it; resume from {newest}, the newest snapshot"):
        trainer.fit()
    assert [s for s, _ in snapshot.list_snapshots(str(out / "snapshots"))] == [2]

    resumed = Trainer(tiny_config(out, "dcgan", tiny_npy, steps=8, snapshot_every=2, log_every=100,
                                  lr_g=1e-4, lr_d=1e-4), resume=True, progress=False)
    assert resumed.step == 2 and resumed.objective.opt_d.get_lr() == pytest.approx(1e-4)
    resumed.fit()
    payload = params_of(str(out), 8)
    assert payload["setting_changes"] == [{"step": 2, "lr_g": [2e-4, 1e-4], "lr_d": [2e-4, 1e-4]}]
    assert payload["config"]["lr_d"] == pytest.approx(1e-4)
    log = (out / "train.log").read_text()
    assert "resumed at step 2 with changed settings: lr_g 0.0002 -> 0.0001; lr_d 0.0002 -> 0.0001" in log
    from visualdl import LogReader

    texts = []
    for path in glob.glob(str(out / "vdl" / "vdlrecords.*")):
        reader = LogReader(file_path=path)
        if "settings_changed" in reader.get_tags().get("text", []):
            texts += reader.get_data("text", "settings_changed")
    assert [r.id for r in texts] == [2]
    scalars, _ = vdl_records(str(out))
    assert scalars["lr/lr_d"][-1][1] == pytest.approx(1e-4)
