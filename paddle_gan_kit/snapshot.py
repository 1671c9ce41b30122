"""The snapshot file format: complete, atomic, and unable to carry code.

A snapshot ``snapshots/step_XXXXXXXX.safetensors`` holds everything a run needs to continue
bit-exactly: the generator (and its EMA copy), the discriminator/critic, both optimizer states,
the step (from which every later step's random draws are seeded, see ``rng.py``), the epoch and
the position in it, the fixed sample noise, the loss history and the resolved config. It is a safetensors file (the format made for exchanging
weights safely): every array is a tensor, and everything else is JSON in the header's metadata,
with a sha256 over the JSON and every tensor's bytes, so a truncated or bit-flipped file is
refused rather than half-read. Loading one never runs code.

Snapshots of earlier versions (``step_XXXXXXXX.pdckpt``, pickles) still load, through an
unpickler that admits numpy arrays, plain Python values and Paddle's RNG state, and refuses every
other global. Files are written with ``safe_files.atomic_path``: a crash or ``kill -9`` at
any instant leaves the previous snapshot whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

from safe_files import atomic_path
from paddle_gan_kit import safe_pickle
from paddle_gan_kit.errors import GanKitError

FORMAT = "paddle_gan_kit.snapshot/2"
SUFFIX = ".safetensors"
LEGACY_SUFFIX = ".pdckpt"
LEGACY_FORMAT = 1
BEST_STEM = "best"
_STEP_RE = re.compile(r"^step_(\d{8,})(\.safetensors|\.pdckpt)$")
_ARRAY = "$array"  # the JSON stand-in for a tensor of the file: {"$array": "<tensor name>"}
_META_PAYLOAD, _META_HASH = "paddle_gan_kit", "sha256"


def snapshot_name(step: int) -> str:
    """File name of the snapshot after ``step`` generator updates."""
    return f"step_{step:08d}{SUFFIX}"


def best_path(snapshot_dir: str) -> str | None:
    """The run's best snapshot (new or legacy format), or None."""
    for suffix in (SUFFIX, LEGACY_SUFFIX):
        path = os.path.join(snapshot_dir, BEST_STEM + suffix)
        if os.path.isfile(path):
            return path
    return None


def list_snapshots(snapshot_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every step snapshot in a directory, oldest first (for a step written
    in both formats, the current one)."""
    if not os.path.isdir(snapshot_dir):
        return []
    found = {}
    for name in os.listdir(snapshot_dir):
        match = _STEP_RE.match(name)
        if match and (int(match.group(1)) not in found or match.group(2) == SUFFIX):
            found[int(match.group(1))] = os.path.join(snapshot_dir, name)
    return sorted(found.items())


# --- encoding ---------------------------------------------------------------------------------

def _split(value, arrays: dict, prefix: str):
    """``value`` as JSON-able data, its numpy arrays moved into ``arrays`` under path names."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = np.ascontiguousarray(value)
        return {_ARRAY: prefix}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"snapshot dict keys must be strings at {prefix!r}")
        return {k: _split(v, arrays, f"{prefix}/{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, arrays, f"{prefix}/{i}") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a snapshot holds arrays and plain values, not {type(value).__name__} (at {prefix!r})")


def _join(value, arrays: dict):
    if isinstance(value, dict):
        if set(value) == {_ARRAY}:
            return arrays[value[_ARRAY]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def _digest(text: str, arrays: dict) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    for name in sorted(arrays):
        digest.update(name.encode("utf-8"))
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def encode(payload: dict) -> bytes:
    """The bytes of a snapshot file for ``payload`` (a dict of arrays and plain values)."""
    from safetensors.numpy import save

    arrays: dict = {}
    text = json.dumps(_split(dict(payload, format=FORMAT), arrays, ""), allow_nan=True)
    return save(arrays, metadata={_META_PAYLOAD: text, _META_HASH: _digest(text, arrays)})


def _header(data: bytes) -> dict:
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ValueError(f"header of {length} bytes in a file of {len(data)}")
    header = json.loads(data[8:8 + length])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header


def decode(data: bytes) -> dict:
    """The payload of snapshot file bytes; ``ValueError`` when they are not a complete snapshot."""
    from safetensors.numpy import load

    metadata = _header(data).get("__metadata__") or {}
    text, expected = metadata.get(_META_PAYLOAD), metadata.get(_META_HASH)
    if not isinstance(text, str) or not isinstance(expected, str):
        raise ValueError("a safetensors file, but not a paddle_gan_kit snapshot")
    arrays = load(data)
    if _digest(text, arrays) != expected:
        raise ValueError("its checksum does not match (the file was damaged after it was written)")
    payload = _join(json.loads(text), arrays)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} snapshot")
    return payload


# --- earlier versions: pickles, read without running code --------------------------------------

class _PaddleGeneratorState:
    """Stands in for ``paddle.base.libpaddle.GeneratorState`` in an old pickle (whose RNG states
    are no longer used: steps are seeded from the step)."""

    def __setstate__(self, state):
        self.values = None


_LEGACY_GLOBALS = {("paddle.base.libpaddle", "GeneratorState"): _PaddleGeneratorState,
                   ("paddle.fluid.libpaddle", "GeneratorState"): _PaddleGeneratorState}


def _plain(value):
    """An old payload in today's shape: RNG states as data, tuples as lists."""
    if isinstance(value, _PaddleGeneratorState):
        return value.values
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_pickle(data: bytes, path: str) -> bool:
    """A version-1 snapshot: named .pdckpt, or a pickle's protocol mark where a safetensors
    file has a header length (which for a pickle reads as more than the file holds)."""
    if path.endswith(LEGACY_SUFFIX):
        return True
    if len(data) < 8 or data[:1] != b"\x80" or not 2 <= data[1] <= 5:
        return False
    return struct.unpack("<Q", data[:8])[0] > len(data)


def decode_legacy(data: bytes, path: str) -> dict:
    """The payload of a version-1 pickle snapshot, unpickled without running code."""
    try:
        payload = _plain(safe_pickle.loads(data, _LEGACY_GLOBALS))
    except safe_pickle.Refused as refused:
        raise GanKitError(f"snapshot {path} holds a pickled {refused}, which no snapshot contains; refusing to "
                          "load it (a pickle can run code): use snapshots from runs you trust") from None
    if not isinstance(payload, dict) or payload.get("format") != LEGACY_FORMAT:
        raise ValueError("not a paddle_gan_kit snapshot")
    payload.pop("rng", None)  # training draws are seeded per step now (rng.py)
    payload["format"] = FORMAT
    return payload


# --- files --------------------------------------------------------------------------------------

REQUIRED = ("step", "generator", "discriminator", "opt_g", "opt_d", "fixed_noise", "data_order", "history",
            "config")


def write_snapshot(payload: dict, path: str, fix: str | None = None) -> int:
    """Write ``payload`` to ``path`` atomically; returns the file's size in bytes. A full disk
    is a ``NoSpaceError`` naming ``fix`` (the partial file is removed, the old one kept)."""
    data = encode(payload)
    with atomic_path(path, needed=len(data), fix=fix) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return len(data)


def read_snapshot(path: str) -> dict:
    """Load one snapshot file (either format); a ``GanKitError`` naming the file and what is
    wrong when it is not a complete snapshot."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise GanKitError(f"snapshot {path} does not exist; list the run's snapshots/ folder") from None
    except OSError as exc:
        raise GanKitError(f"snapshot {path} cannot be read ({exc.strerror or exc}); check the file") from None
    try:
        payload = decode_legacy(data, path) if _is_pickle(data, path) else decode(data)
        missing = [key for key in REQUIRED if key not in payload]
        if missing:
            raise ValueError(f"it lacks {', '.join(missing)}")
        if not isinstance(payload["config"], dict) or not isinstance(payload["generator"], dict):
            raise ValueError("its config or generator is not a mapping")
    except GanKitError:
        raise
    except Exception as exc:  # truncated or foreign files make the decoders raise many types
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise GanKitError(f"snapshot {path} is corrupt, incomplete or not a paddle_gan_kit snapshot ({reason}); "
                          "use another snapshot of the run") from None
    return payload


@dataclass
class Found:
    """A loaded snapshot, its path, and the newer ones that were unreadable (with why)."""

    payload: dict
    path: str
    skipped: list[tuple[str, str]]


def load_newest(snapshot_dir: str) -> Found | None:
    """The newest readable step snapshot, or None if there is none at all.

    A corrupt newest snapshot is skipped in favour of the previous complete one (the caller
    reports ``skipped``); if snapshots exist but none is readable, that is an error.
    """
    skipped = []
    for _, path in reversed(list_snapshots(snapshot_dir)):
        try:
            return Found(read_snapshot(path), path, skipped)
        except GanKitError as exc:
            skipped.append((path, str(exc)))
    if skipped:
        raise GanKitError(f"no snapshot in {snapshot_dir} can be loaded ({len(skipped)} tried; the newest: "
                          f"{skipped[0][1]}); start a new run with another --out")
    return None


def prune(snapshot_dir: str, keep: int) -> None:
    """Delete all but the newest ``keep`` step snapshots (``best`` is never pruned)."""
    for _, path in list_snapshots(snapshot_dir)[:-keep]:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
