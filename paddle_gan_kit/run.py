"""The run directory's one owner, and the one way back into a trained run.

``Run`` decides which config a new or resumed run gets (the only place that does), reads the
newest complete snapshot once, writes and prunes snapshots, and writes ``config.yaml``.
``load_generator`` turns a run directory or a snapshot file into a generator for sampling,
latent walks, evaluation and export.

```
runs/<name>/
  config.yaml                    the resolved config, written when the run starts
  snapshots/step_00001000.safetensors   the last keep_snapshots complete snapshots (+ best)
  samples/step_00001000.png      grid of G(fixed noise)
  vdl/  vdl_superseded/          VisualDL logs
  losses.png  train.log
```
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import paddle

from paddle_gan_kit import changes, snapshot
from paddle_gan_kit.config import FROM_DATA, RESUMABLE_KEYS, TrainConfig, load_yaml, save_yaml, saved_config
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_generator, load_weights


class Run:
    """A run directory: its config, its snapshots and where its outputs go."""

    def __init__(self, directory: str):
        self.dir = directory
        self.snapshot_dir = os.path.join(directory, "snapshots")
        self.samples_dir = os.path.join(directory, "samples")
        self.vdl_dir = os.path.join(directory, "vdl")
        self.config_path = os.path.join(directory, "config.yaml")
        self._newest: snapshot.Found | None = None
        self._newest_read = False
        self.changes: dict = {}  # key -> (the run's value, the new one) of a resume that changed settings

    def exists(self) -> bool:
        """True when the directory holds a run (its config.yaml or any snapshot)."""
        return os.path.isfile(self.config_path) or bool(snapshot.list_snapshots(self.snapshot_dir))

    def newest(self) -> snapshot.Found | None:
        """The newest complete snapshot (read once, then kept), or None."""
        if not self._newest_read:
            self._newest = snapshot.load_newest(self.snapshot_dir)
            self._newest_read = True
        return self._newest

    def saved_config(self) -> TrainConfig | None:
        """The run's config: from its newest complete snapshot, else its config.yaml."""
        found = self.newest()
        if found is not None:
            return saved_config(found.payload["config"])
        if os.path.isfile(self.config_path):
            return saved_config(load_yaml(self.config_path))
        return None

    @classmethod
    def open(cls, requested: TrainConfig, resume: bool = False, explicit=None) -> tuple["Run", TrainConfig]:
        """The run ``requested`` names and the config it trains with.

        A new run gets ``requested`` resolved. An existing run is refused without ``resume``;
        with it, the run's saved config is the base and the keys in ``explicit`` (default:
        every key of ``requested``) are taken from ``requested``: keys in ``RESUMABLE_KEYS``
        may change, any other change is refused in one line.
        """
        resolved = requested.resolve()
        run = cls(resolved.out)
        if not run.exists():
            return run, resolved
        if not resume:
            raise GanKitError(f"{run.dir} already holds a run; pass --resume to continue it or choose another --out")
        previous = run.saved_config()
        if previous is None:
            return run, resolved
        keys = set(requested.to_dict()) if explicit is None else set(explicit)
        merged, changed = previous.to_dict(), []
        for key in keys:
            new_value, old_value = getattr(resolved, key), merged[key]
            if key in FROM_DATA and new_value is None:
                continue  # inferred from the data, as the run did
            if new_value != old_value and key not in RESUMABLE_KEYS:
                changed.append(f"{key}: run has {old_value!r}, now {new_value!r}")
            merged[key] = new_value
        if changed:
            raise GanKitError(f"cannot resume {run.dir} with changed settings ({'; '.join(sorted(changed))}); "
                              "drop those flags or start a new run with another --out")
        cfg = TrainConfig(**merged).resolve()
        run.changes = {k: (v, getattr(cfg, k)) for k, v in previous.to_dict().items()
                       if getattr(cfg, k) != v and not (k in FROM_DATA and getattr(cfg, k) is None)}
        return run, cfg

    def prepare_dirs(self) -> None:
        os.makedirs(self.samples_dir, exist_ok=True)
        os.makedirs(self.snapshot_dir, exist_ok=True)

    def write_config(self, cfg: TrainConfig) -> None:
        save_yaml(cfg, self.config_path)

    def sample_path(self, step: int) -> str:
        return os.path.join(self.samples_dir, f"step_{step:08d}.png")

    def save_snapshot(self, payload: dict, keep: int) -> str:
        """Write the snapshot of ``payload["step"]`` and keep the newest ``keep``; returns its path.
        A payload whose weights or optimizer state are not finite is never written
        (:class:`Diverged`)."""
        check_finite(payload)
        path = os.path.join(self.snapshot_dir, snapshot.snapshot_name(int(payload["step"])))
        snapshot.write_snapshot(payload, path, fix=self.disk_fix)
        snapshot.prune(self.snapshot_dir, keep)
        return path

    def save_best(self, payload: dict) -> str:
        check_finite(payload)
        path = os.path.join(self.snapshot_dir, snapshot.BEST_STEM + snapshot.SUFFIX)
        snapshot.write_snapshot(payload, path, fix=self.disk_fix)
        legacy = os.path.join(self.snapshot_dir, snapshot.BEST_STEM + snapshot.LEGACY_SUFFIX)
        if os.path.exists(legacy):
            os.remove(legacy)  # superseded by a better one in the current format
        return path

    @property
    def disk_fix(self) -> str:
        """What to do when the disk is full (for the one-line error)."""
        return (f"delete old runs or snapshots (or lower keep_snapshots), then continue with "
                f"--resume --out {self.dir}")

    def newest_on_disk(self) -> str | None:
        """The newest step snapshot file now on disk (all of them are finite: see ``save_snapshot``)."""
        snaps = snapshot.list_snapshots(self.snapshot_dir)
        return snaps[-1][1] if snaps else None


class Diverged(GanKitError):
    """The weights or optimizer state stopped being finite; no snapshot was written."""


# the parts of a snapshot payload that must be finite for it to be worth resuming from
_MUST_BE_FINITE = ("generator", "discriminator", "generator_ema", "opt_g", "opt_d")


def check_finite(payload: dict) -> None:
    """Raise :class:`Diverged` naming the first non-finite array of the nets or optimizers."""
    for part in _MUST_BE_FINITE:
        for name, value in (payload.get(part) or {}).items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise Diverged(f"{part} {name} is not finite")


# ---- back into a trained run ----------------------------------------------------------------------

def resolve_snapshot(path: str, which=None) -> str:
    """A snapshot file from a run directory (the newest, a step number, "best" or a file name
    in it; ``which``) or a snapshot file path."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise GanKitError(f"{path} is neither a run directory nor a snapshot file; check the path")
    run = Run(path)
    if which is None or which == "latest":
        found = run.newest()
        if found is None:
            raise GanKitError(f"run {path} has no snapshot yet; train it first "
                              f"(python -m paddle_gan_kit.train --out {path} --resume)")
        return found.path
    if str(which) == "best":
        best = snapshot.best_path(run.snapshot_dir)
        if best is None:
            raise GanKitError(f"run {path} has no best snapshot; train with --eval-every to track one")
        return best
    if str(which).isdigit():
        steps = dict(snapshot.list_snapshots(run.snapshot_dir))
        candidate = steps.get(int(which), os.path.join(run.snapshot_dir, snapshot.snapshot_name(int(which))))
    else:
        candidate = os.path.join(run.snapshot_dir, str(which))
    if not os.path.isfile(candidate):
        steps = ", ".join(str(s) for s, _ in snapshot.list_snapshots(run.snapshot_dir)) or "none"
        raise GanKitError(f"run {path} has no snapshot {which}; available steps: {steps}")
    return candidate


def run_dir_of(path: str) -> str:
    """The run directory of a run path or of one of its snapshot files."""
    if os.path.isdir(path):
        return path
    parent = os.path.dirname(os.path.abspath(path))
    return os.path.dirname(parent) if os.path.basename(parent) == "snapshots" else parent


def generator_from_payload(payload: dict, origin: str, ema: bool = True):
    """``(generator in eval mode, TrainConfig)`` from a loaded snapshot (the EMA one when kept)."""
    cfg = saved_config(payload["config"])
    for change in changes.of_kind("into_config"):  # what earlier snapshots kept beside the config
        if getattr(cfg, change.key) is None and payload.get(change.key) is not None:
            cfg = dataclasses.replace(cfg, **{change.key: payload[change.key]})
    generator = build_generator(cfg)
    weights = payload.get("generator_ema") if ema and payload.get("generator_ema") else payload["generator"]
    load_weights(generator, weights, f"snapshot {origin}")
    generator.eval()
    return generator, cfg


def load_generator(path: str, snapshot_name=None, ema: bool = True):
    """``(generator in eval mode, TrainConfig)`` from a run directory or a snapshot file.

    ``snapshot_name``: a step number, ``"best"`` or a file name in the run (default: the
    newest complete snapshot). The EMA generator is returned when the run keeps one and
    ``ema`` is true. The generator maps z (N, z_dim) float32 to images (N, C, H, W) in [-1, 1].
    """
    file = resolve_snapshot(path, snapshot_name)
    return generator_from_payload(snapshot.read_snapshot(file), file, ema)


def generator_of(run, snapshot_name=None):
    """``(generator, cfg)`` from a run directory, a snapshot file, or such a pair already loaded
    (what the notebook-facing functions of sample, interpolate and evaluate accept)."""
    if isinstance(run, (tuple, list)) and len(run) == 2 and isinstance(run[0], paddle.nn.Layer):
        return run
    return load_generator(str(run), snapshot_name)
