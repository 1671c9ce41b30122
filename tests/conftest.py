"""Shared fixtures: an isolated cache, a tiny dataset, and tiny trained runs."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny nets: every test run stays at a few hundred milliseconds a step on 2 cores.
TINY = dict(size=16, batch_size=8, g_channels=8, d_channels=8, z_dim=16, n_samples=16)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Generated/prepared data goes to a per-session folder, never the user's cache."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["PADDLE_GAN_KIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_npy(tmp_path_factory):
    """A 16 px RGB dataset (128 smooth random blobs) as an .npy file, uint8 (N, 16, 16, 3)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    images = np.empty((128, 16, 16, 3), np.uint8)
    for i in range(128):
        cy, cx, r = rng.uniform(4, 12), rng.uniform(4, 12), rng.uniform(2, 6)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        colour = rng.integers(0, 256, 3)
        images[i] = np.where(mask[..., None], colour, 30)
    path = tmp_path_factory.mktemp("data") / "blobs16.npy"
    np.save(path, images)
    return str(path)


def tiny_config(out, model="dcgan", data=None, **overrides):
    """A TrainConfig for a seconds-long run of the tiny nets."""
    from paddle_gan_kit.config import TrainConfig

    values = dict(TINY, model=model, data=data, out=str(out), steps=4, log_every=2,
                  sample_every=2, snapshot_every=2)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_npy):
    """A trained 4-step tiny DCGAN run directory (shared, read-only for tests)."""
    import paddle_gan_kit

    out = tmp_path_factory.mktemp("runs") / "dcgan_tiny"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy), progress=False)
    return str(out)


@pytest.fixture(scope="session")
def tiny_wgan_run(tmp_path_factory, tiny_npy):
    """A trained 3-step tiny WGAN-GP run directory (shared, read-only for tests)."""
    import paddle_gan_kit

    out = tmp_path_factory.mktemp("runs") / "wgan_tiny"
    paddle_gan_kit.train(tiny_config(out, "wgan_gp", tiny_npy, steps=3, n_critic=2), progress=False)
    return str(out)


def run_cli(module, *args, timeout=300, env=None):
    """Run ``python -m module args`` from the repo root; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


# Flags that make a CLI training run tiny (the TINY config on the command line).
TINY_FLAGS = ["--size", "16", "--batch-size", "8", "--set", "g_channels=8", "--set", "d_channels=8",
              "--set", "z_dim=16", "--set", "n_samples=16", "--no-progress"]


def assert_one_line_error(result, *fragments):
    """A CLI run that failed as a user error: exit 2, one line ``error: ...`` holding every
    fragment, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_error_ends_the_run(result, *fragments):
    """A CLI run that stopped on a user error after working for a while: exit 2, its last line
    the one ``error: ...`` line holding every fragment, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and lines[-1].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def params_of(run_dir, step):
    """The payload of a run's snapshot at ``step``."""
    from paddle_gan_kit import snapshot

    return snapshot.read_snapshot(os.path.join(run_dir, "snapshots", snapshot.snapshot_name(step)))


def vdl_records(run_dir):
    """{tag: [(step, value)]} for scalars and {tag: count} for images, read with VisualDL's reader."""
    import glob

    from visualdl import LogReader

    scalars, images = {}, {}
    for path in sorted(glob.glob(os.path.join(run_dir, "vdl", "vdlrecords.*"))):
        reader = LogReader(file_path=path)
        tags = reader.get_tags()
        for tag in tags.get("scalar", []):
            scalars.setdefault(tag, []).extend((r.id, r.value) for r in reader.get_data("scalar", tag))
        for tag in tags.get("image", []):
            images[tag] = images.get(tag, 0) + len(reader.get_data("image", tag))
    return scalars, images
