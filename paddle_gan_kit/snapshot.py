"""Complete, atomic snapshots of a training run, their discovery, and the way back in.

A snapshot is one file ``snapshots/step_XXXXXXXX.pdckpt`` holding the generator, the
discriminator/critic, both optimizer states, the step, the epoch and the position in it, every
RNG state in play, the fixed sample noise, the loss history and the resolved config. It is
written under a temporary name and moved into place with ``os.replace``, so a crash or
``kill -9`` at any instant leaves the previous snapshot whole.
"""
from __future__ import annotations

import os
import pickle
import random
import re
from dataclasses import dataclass

import numpy as np
import paddle

from paddle_gan_kit.config import TrainConfig, build_config
from paddle_gan_kit.errors import GanKitError

FORMAT_VERSION = 1
SUFFIX = ".pdckpt"
_STEP_RE = re.compile(r"^step_(\d{8,})\.pdckpt$")
BEST_NAME = "best" + SUFFIX


def snapshot_name(step: int) -> str:
    """File name of the snapshot after ``step`` generator updates."""
    return f"step_{step:08d}{SUFFIX}"


def list_snapshots(snapshot_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every step snapshot in a directory, oldest first."""
    if not os.path.isdir(snapshot_dir):
        return []
    found = []
    for name in os.listdir(snapshot_dir):
        match = _STEP_RE.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(snapshot_dir, name)))
    return sorted(found)


# --- optimizer state, made independent of Paddle's global parameter names --------------
# Paddle keys optimizer state by parameter names such as "conv2d_3.w_0", which depend on how
# many layers the process built before; a snapshot keyed that way would silently fail to
# restore in a process that builds the models in another order. Keys are stored by the
# parameter's structural name in its model instead.

def portable_optimizer_state(state: dict, model: paddle.nn.Layer) -> dict:
    """Optimizer ``state_dict`` with parameter names replaced by structural names."""
    names = sorted(((p.name, key) for key, p in model.named_parameters()), key=lambda t: -len(t[0]))
    out = {}
    for key, value in state.items():
        new_key = key
        for pname, skey in names:
            if key.startswith(pname + "_"):
                new_key = "@" + skey + "@" + key[len(pname):]
                break
        out[new_key] = _to_numpy(value)
    return out


def restore_optimizer_state(state: dict, model: paddle.nn.Layer) -> dict:
    """Inverse of ``portable_optimizer_state`` for this process's parameter names."""
    by_struct = {key: p.name for key, p in model.named_parameters()}
    out = {}
    for key, value in state.items():
        if key.startswith("@"):
            skey, rest = key[1:].split("@", 1)
            if skey not in by_struct:
                raise GanKitError(f"snapshot optimizer state names parameter '{skey}' the model lacks")
            key = by_struct[skey] + rest
        out[key] = paddle.to_tensor(value) if isinstance(value, np.ndarray) else value
    return out


def _to_numpy(value):
    if isinstance(value, paddle.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


def model_state(model: paddle.nn.Layer) -> dict:
    """``state_dict`` as numpy arrays (pickles without Paddle-specific types)."""
    return {k: v.numpy() for k, v in model.state_dict().items()}


def rng_states() -> dict:
    """Every RNG in play: Paddle CPU (and GPU when compiled with CUDA), numpy, python."""
    states = {"paddle": paddle.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        states["paddle_cuda"] = paddle.get_cuda_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what ``rng_states`` captured (a CUDA state only where CUDA is present)."""
    paddle.set_rng_state(states["paddle"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "paddle_cuda" in states and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_cuda_rng_state(states["paddle_cuda"])


def write_atomic(payload: dict, path: str) -> None:
    """Pickle ``payload`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_snapshot(path: str) -> dict:
    """Load one snapshot file; raises ``GanKitError`` if it is not a complete snapshot."""
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)
    except FileNotFoundError:
        raise GanKitError(f"snapshot {path} does not exist; list the run's snapshots/ folder") from None
    except Exception as exc:  # truncated or foreign file: pickle raises many types
        raise GanKitError(f"snapshot {path} is corrupt or incomplete ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise GanKitError(f"{path} is not a paddle_gan_kit snapshot (format {FORMAT_VERSION})")
    return payload


def prune(snapshot_dir: str, keep: int) -> None:
    """Delete all but the newest ``keep`` step snapshots (``best`` is never pruned)."""
    for _, path in list_snapshots(snapshot_dir)[:-keep]:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


@dataclass
class Found:
    """A loaded snapshot, its path, and the newer ones that were unreadable."""

    payload: dict
    path: str
    skipped: list[str]


def load_newest(snapshot_dir: str) -> Found | None:
    """The newest readable step snapshot, or None if there is none at all.

    A corrupt newest snapshot is skipped in favour of the previous complete one (the caller
    reports ``skipped``); if snapshots exist but none is readable, that is an error.
    """
    snaps = list_snapshots(snapshot_dir)
    skipped = []
    for _, path in reversed(snaps):
        try:
            return Found(read_snapshot(path), path, skipped)
        except GanKitError:
            skipped.append(path)
    if skipped:
        raise GanKitError(
            f"every snapshot in {snapshot_dir} is corrupt ({len(skipped)} tried); "
            "start a new run with another --out"
        )
    return None


def resolve_snapshot_path(path: str, snapshot=None) -> str:
    """A snapshot file from a run directory (newest, a step number, "best") or a file path."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise GanKitError(f"{path} is neither a run directory nor a snapshot file; check the path")
    snap_dir = os.path.join(path, "snapshots")
    if snapshot is None or snapshot == "latest":
        found = load_newest(snap_dir)
        if found is None:
            raise GanKitError(
                f"run {path} has no snapshot yet; train it first "
                f"(python -m paddle_gan_kit.train --out {path} --resume)"
            )
        return found.path
    if str(snapshot) == "best":
        best = os.path.join(snap_dir, BEST_NAME)
        if not os.path.isfile(best):
            raise GanKitError(f"run {path} has no best snapshot; train with --eval-every to track one")
        return best
    if str(snapshot).isdigit():
        candidate = os.path.join(snap_dir, snapshot_name(int(snapshot)))
    else:
        candidate = os.path.join(snap_dir, str(snapshot))
    if not os.path.isfile(candidate):
        steps = ", ".join(str(s) for s, _ in list_snapshots(snap_dir)) or "none"
        raise GanKitError(f"run {path} has no snapshot {snapshot}; available steps: {steps}")
    return candidate


def load_generator(path: str, snapshot=None, ema: bool = True):
    """``(generator in eval mode, TrainConfig)`` from a run directory or a snapshot file.

    The EMA generator is returned when the run keeps one and ``ema`` is true.
    """
    from paddle_gan_kit.models import MODELS

    payload = read_snapshot(resolve_snapshot_path(path, snapshot))
    cfg = build_config(payload["config"])
    generator = MODELS[cfg.model].build_generator(cfg)
    weights = payload.get("generator_ema") if ema and payload.get("generator_ema") else payload["generator"]
    generator.set_state_dict(weights)
    generator.eval()
    return generator, cfg


def config_of(payload: dict) -> TrainConfig:
    """The resolved config stored in a snapshot."""
    return build_config(payload["config"])
