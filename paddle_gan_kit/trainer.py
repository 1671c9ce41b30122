"""The training loop: batch -> step -> reporter -> maybe snapshot, with signals and the NaN guard.

What the loop works with is built by its owners, in this order: the run directory and its
config (``run.Run``), the device, the data and its batch order (``data``), the reporter
(``monitor``), the nets with their optimizers and update rule (``steps.build_step``), then
the state the loop itself carries (step, loss history, fixed sample noise, RNGs), restored from
the newest snapshot on resume. A "step" is one generator update; ``n_critic`` D/critic updates,
each on a fresh real batch (with its labels for a conditional run), come first, on every
``g_steps``-th step. Each step's randomness is seeded from (seed, rank, step).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import paddle

import safe_files as files
from paddle_gan_kit import fastconv, monitor
from paddle_gan_kit.classes import Classes
from paddle_gan_kit.config import MODELS, TrainConfig
from paddle_gan_kit.data import BatchOrder, is_builtin_gems, load_images, prepare_root_of, to_tensor_batch
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.images import grid_columns
from paddle_gan_kit.latent import draw_latents
from paddle_gan_kit.metrics import Evaluator
from paddle_gan_kit.models import count_parameters, efficientnet_lite
from paddle_gan_kit.rng import seed_step
from paddle_gan_kit.run import Diverged, Run
from paddle_gan_kit.steps import build_step

# Paddle warns on every BatchNorm forward in train mode that running statistics are tracked,
# which is what DCGAN wants; the warning says nothing to a user.
warnings.filterwarnings("ignore", message="When training, we now always track global mean")

def parallel_env() -> tuple[int, int]:
    """``(rank, world_size)``; initialises Paddle's parallel environment under its launcher."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    if world > 1:
        import paddle.distributed as dist

        if not dist.is_initialized():
            dist.init_parallel_env()
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def select_device(choice: str) -> tuple[str, str | None]:
    """Paddle device string for ``auto|gpu|cpu`` and a notice to print (or None)."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if choice == "gpu" and not has_gpu:
        reason = "this Paddle build has no CUDA" if not paddle.device.is_compiled_with_cuda() else "no GPU is visible"
        raise GanKitError(f"--device gpu: {reason}; install paddlepaddle-gpu on a GPU machine or use --device cpu")
    if choice in ("gpu", "auto") and has_gpu:
        # under paddle.distributed.launch each rank is given its own GPU
        return f"gpu:{int(os.environ.get('FLAGS_selected_gpus', '0').split(',')[0] or 0)}", None
    if choice == "auto":
        threads = os.environ.get("OMP_NUM_THREADS", "?")
        return "cpu", f"no GPU found: training on the CPU with {threads} threads (set OMP_NUM_THREADS to change)"
    return "cpu", None


def check_device_options(cfg: TrainConfig, device: str, world_size: int) -> None:
    """Refuse mixed precision and SyncBatchNorm where they cannot work, in one line naming the fix."""
    on_gpu = device.startswith("gpu")
    if cfg.amp != "off":
        if not on_gpu:
            raise GanKitError(f"--amp {cfg.amp}: mixed precision needs a GPU (Paddle's autocast does nothing on "
                              "the CPU); drop --amp or train on a GPU")
        supported = paddle.amp.is_bfloat16_supported() if cfg.amp == "bfloat16" else paddle.amp.is_float16_supported()
        if not supported:
            raise GanKitError(f"--amp {cfg.amp}: this GPU has no {cfg.amp} support; use --amp float16 or drop --amp")
    if cfg.sync_bn and world_size > 1 and not on_gpu:
        raise GanKitError("--sync-bn: Paddle's SyncBatchNorm has no CPU kernel; use it with GPU ranks or drop it "
                          "(without it, rank 0's BatchNorm statistics are copied to every rank each step)")


def backbone_of(cfg: TrainConfig, download: bool = False) -> dict | None:
    """The frozen network a projected D uses, as a snapshot records it ({"name", "sha256"}), with
    its weights file found (or, with ``download``, fetched) and checked; None for other Ds."""
    if cfg.d_arch != "projected":
        return None
    path = efficientnet_lite.weights_path(cfg.backbone_weights)
    if path is None and download:
        path = efficientnet_lite.download_weights()
    return {"name": "efficientnet_lite0", "sha256": efficientnet_lite.check_weights(path)}


def check_same_backbone(found, backbone: dict | None) -> None:
    """Refuse, in one line, to resume a run on another frozen network than the one it trained with."""
    saved = found.payload.get("backbone")
    if saved and backbone and saved != backbone:
        raise GanKitError(f"{found.path} was trained with {saved['name']} weights of sha256 {saved['sha256'][:16]}..., "
                          f"and these are {backbone['name']} of {backbone['sha256'][:16]}...: a resume must use the "
                          "same backbone (set backbone_weights to that file) or start a new run with another --out")


class LossWindow:
    """The step's scalars summed on the device between two log lines, read back only there."""

    def __init__(self):
        self.sums: dict = {}
        self.counts: dict = {}  # per scalar: D's appear only on the steps that update D (g_steps)
        self.count = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, values: dict, images: int) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1
        self.images += images

    def close(self, step: int, lr_g: float, lr_d: float) -> dict:
        """The window's history record (means, learning rates, images/s); starts a new window."""
        elapsed = time.perf_counter() - self.started
        record = {"step": step, **{k: float(v) / self.counts[k] for k, v in self.sums.items()},
                  "lr_g": float(lr_g), "lr_d": float(lr_d),
                  "images_per_s": self.images / elapsed if elapsed > 0 else float("nan")}
        self.__init__()
        return record


@contextlib.contextmanager
def stop_signals():
    """Catch SIGINT and SIGTERM for the block; ``caught[0]`` is the first signal received."""
    caught = [None]
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum, frame):
        caught[0] = caught[0] or signum

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class Trainer:
    """Trains one run directory from a ``TrainConfig``; ``fit()`` runs up to ``config.steps``.

    ``resume=True`` continues the run already in ``config.out`` from its newest complete
    snapshot; without it an existing run is refused, never overwritten or mixed. ``explicit``:
    the config keys the user gave (the CLI passes them); on resume only those are compared
    with the run's own, the rest come from the run. Default: every key of ``config``.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True, explicit=None,
                 download: bool = False):
        self.rank, self.world_size = parallel_env()
        self.run, cfg = Run.open(config, resume, explicit)
        found = self.run.newest()
        # before the data and any build: a missing or wrong weights file is one line, at once
        self.backbone = backbone_of(cfg, download)
        if found is not None:
            check_same_backbone(found, self.backbone)
        self.device, notice = select_device(cfg.device)
        check_device_options(cfg, self.device, self.world_size)
        paddle.set_device(self.device)
        self.data = load_images(cfg.data, cfg.size, fit=cfg.fit, gems_count=cfg.gems_count,
                                prepare_root=prepare_root_of(self.run.dir), progress=progress and self.rank == 0)
        classes = Classes.for_training(cfg, self.data)
        self.cfg = cfg = dataclasses.replace(cfg, channels=cfg.channels or self.data.channels,
                                             n_classes=len(classes) or cfg.n_classes,
                                             class_names=list(classes.names) or None)
        self.order = BatchOrder(len(self.data), cfg.batch_size, cfg.seed, self.rank, self.world_size)
        # after the data: a run refused for its data never waits for a build
        convolutions = fastconv.configure(cfg.conv_backend, self.device,
                                          progress=(lambda line: print(line, file=sys.stderr)) if self.rank == 0 else None)
        if self.rank == 0:
            self.run.prepare_dirs()
            self.reporter = monitor.RunReporter(self.run, cfg, progress, self._evaluator())
        else:
            self.reporter = monitor.Reporter()
        skipped = [f"snapshot {path} is corrupt or incomplete; resuming from the previous complete one ({why})"
                   for path, why in (found.skipped if found else [])]
        for line in filter(None, [notice, convolutions, *skipped]):
            self.reporter.info(line)
        labels = paddle.to_tensor(np.asarray(self.data.labels, np.int64)) if cfg.conditional else None
        self.objective = build_step(cfg, self.world_size, labels)
        self.fixed_noise = draw_latents(np.random.default_rng([cfg.seed, 1]), cfg.n_samples, cfg.z_dim, cfg.z_dist)
        self.step, self.history, self.setting_changes = 0, [], []
        self.train_seconds = 0.0  # training time of all sessions of the run (evaluation excluded)
        self.window = LossWindow()
        self.stop_signal: int | None = None
        if found is not None:
            self._restore(found)
        if self.run.changes:
            self._note_changes()
        if found is None and self.rank == 0:
            self.run.write_config(cfg)
        if self.rank == 0:
            self.reporter.info(self._snapshot_note())

    def _evaluator(self) -> Evaluator | None:
        cfg = self.cfg
        if cfg.eval_every <= 0:
            return None
        return Evaluator(self.data.images, self.data.labels, cfg.eval_extractor, cfg.eval_n, cfg.eval_weights,
                         seed=cfg.seed, gems=is_builtin_gems(cfg.data))

    def real_batch(self):
        """Next real batch, float32 (B, C, H, W) in [-1, 1], and its int64 (B,) labels for a
        conditional run (else None), on the device."""
        indices = self.order.next_indices()
        labels = paddle.to_tensor(np.asarray(self.data.labels[indices], np.int64)) if self.cfg.conditional else None
        return to_tensor_batch(self.data.images[indices], self.cfg.channels), labels

    def trains_d(self) -> bool:
        """Whether this step updates D: every ``g_steps``-th step does (all of them by default)."""
        return self.step % self.cfg.g_steps == 0

    def train_step(self) -> dict:
        """One generator update, after D's updates on fresh real batches when this step has them;
        the step's scalars as device tensors. Its random draws come from (seed, rank, step) alone
        (``rng.seed_step``)."""
        seed_step(self.cfg.seed, self.rank, self.step)
        batches = [self.real_batch() for _ in range(self.objective.batches_per_step if self.trains_d() else 0)]
        reals = [images for images, _ in batches]
        return self.objective.step(reals, [y for _, y in batches] if self.cfg.conditional else None)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> str:
        """Train up to ``cfg.steps`` (and at most ``cfg.minutes`` of training in all); returns
        "completed", "out of time" (the minutes are spent) or "interrupted" (snapshot written)."""
        cfg, reporter, objective = self.cfg, self.reporter, self.objective
        status = "completed"
        try:
            done = self._done()
            if done:
                # rerunning the same command after a run finished (the AI Studio habit) changes nothing
                reporter.info(f"{self.run.dir} is already at {done[0]}; nothing to do (raise {done[1]} to train longer)")
                return status
            reporter.start(self.step, cfg.steps, self._header())
            if self.step == 0:
                self.write_samples()
            clock = time.perf_counter()
            with stop_signals() as caught:
                while self.step < cfg.steps:
                    images = cfg.batch_size * cfg.n_critic * self.world_size if self.trains_d() else 0
                    self.window.add(self.train_step(), images)
                    self.step += 1
                    reporter.advance(self.step)
                    now = time.perf_counter()
                    self.train_seconds, clock = self.train_seconds + now - clock, now
                    out_of_time = cfg.minutes and self.train_seconds >= cfg.minutes * 60
                    if self.step % cfg.log_every == 0 or self.step == cfg.steps or out_of_time:
                        self._close_window()
                    if self.step % cfg.sample_every == 0:
                        self.write_samples()
                    if cfg.eval_every and self.step % cfg.eval_every == 0:
                        reporter.evaluate(self.step, objective.measure_ema_batchnorm(), self._save_best)
                        clock = time.perf_counter()  # evaluation is a measurement, not training time
                    if caught[0] is not None:
                        status, self.stop_signal = "interrupted", caught[0]
                        break
                    if out_of_time:
                        status = "out of time"
                        break
                    if self.step % cfg.snapshot_every == 0 and self.step < cfg.steps:
                        self.save_snapshot()
            if self.window.count:  # interrupted between log steps: record what was accumulated
                self._close_window()
            if self.step % cfg.sample_every != 0:
                self.write_samples()
            reporter.finish(status, self.step, self.save_snapshot(), self.stop_signal)
        finally:
            reporter.close()
        return status

    def _done(self) -> tuple[str, str] | None:
        """What the run has already reached of its steps or minutes, and the flag that goes further
        (None while it has reached neither)."""
        if self.step >= self.cfg.steps:
            return f"step {self.step} of {self.cfg.steps}", "--steps"
        if self.cfg.minutes and self.train_seconds >= self.cfg.minutes * 60:
            return f"{self.train_seconds / 60:.1f} of {self.cfg.minutes:g} minutes of training", "--minutes"
        return None

    def _header(self) -> str:
        cfg, nets = self.cfg, self.objective
        return (f"{cfg.model} {cfg.size}px x{cfg.channels} on {self.device}: {self.data.description}; "
                f"G {count_parameters(nets.generator):,} params, D {count_parameters(nets.discriminator):,}; "
                f"steps {self.step} -> {cfg.steps}"
                + (f" or {cfg.minutes:g} minutes of training ({self.train_seconds / 60:.1f} done)" if cfg.minutes else "")
                + f", batch {cfg.batch_size}" + (f" x {self.world_size} ranks" if self.world_size > 1 else ""))

    def _close_window(self) -> None:
        """Read the window's losses back (the only host sync), check them, log them."""
        record = self.window.close(self.step, self.objective.opt_g.get_lr(), self.objective.opt_d.get_lr())
        record["train_seconds"] = self.train_seconds
        bad = [k for k, v in record.items() if not np.isfinite(v)]
        if bad:
            raise self._diverged(f"{', '.join(bad)} not finite")
        self.history.append(record)
        self.reporter.record(record, self.cfg.steps, self._seconds_left())

    def _seconds_left(self) -> float:
        """Training time left: to the minutes' end, or to the last step at the run's mean pace."""
        by_steps = (self.cfg.steps - self.step) * self.train_seconds / max(self.step, 1)
        return min(by_steps, self.cfg.minutes * 60 - self.train_seconds) if self.cfg.minutes else by_steps

    def _diverged(self, reason: str) -> Diverged:
        """The one-line error of a diverged run: where to resume from, and how."""
        cfg, newest = self.cfg, self.run.newest_on_disk()
        preset = MODELS[cfg.model]
        lr_g, lr_d = min(cfg.lr_g / 2, preset["lr_g"]), min(cfg.lr_d / 2, preset["lr_d"])
        command = f"python -m paddle_gan_kit.train --out {self.run.dir} --resume --set lr_g={lr_g:g} --set lr_d={lr_d:g}"
        if newest is None:
            return Diverged(f"training diverged at step {self.step} ({reason}) before any snapshot was written; "
                            f"start again with lower learning rates: {command}")
        return Diverged(f"training diverged at step {self.step} ({reason}), so no snapshot was written for it; "
                        f"resume from {newest}, the newest snapshot (snapshots on disk are always finite), with "
                        f"lower learning rates: {command}")

    def _note_changes(self) -> None:
        """Log the settings a resume changed and keep them in the run's history."""
        changes = {k: list(v) for k, v in self.run.changes.items()}
        self.setting_changes.append({"step": self.step, **changes})
        self.reporter.settings_changed(self.step, changes)

    def _snapshot_note(self) -> str:
        size = self.snapshot_bytes()
        keep, free = self.cfg.keep_snapshots, files.free_bytes(self.run.dir)
        note = (f"snapshots: {files.mib(size)} each, the newest {keep} kept (keep_snapshots) in "
                f"{self.run.snapshot_dir}; {files.mib(free)} free there")
        if free < size * (keep + 1):
            note += (f"; warning: that is less than {keep + 1} snapshots, so the disk may fill up: free space "
                     "or lower keep_snapshots")
        return note

    def snapshot_bytes(self) -> int:
        """About how large a snapshot of this run is: every float32 of the nets' state (G, D, the EMA
        G) and Adam's two moments per trained weight, plus the history and metadata's few KiB."""
        nets = self.objective
        own = [nets.generator, nets.discriminator] + ([nets.generator_ema] if nets.generator_ema is not None else [])
        arrays = sum(int(np.prod(v.shape)) for net in own for v in net.state_dict().values())
        moments = 2 * (count_parameters(nets.generator) + count_parameters(nets.discriminator))
        return 4 * (arrays + moments) + 64 * 1024

    def fixed_labels(self) -> np.ndarray | None:
        """A conditional run's sample-grid classes: one class per row of the grid, in turn."""
        if not self.cfg.conditional:
            return None
        columns = grid_columns(len(self.fixed_noise))
        return (np.arange(len(self.fixed_noise)) // columns % self.cfg.n_classes).astype(np.int64)

    def write_samples(self) -> None:
        """The sample grid of the current step (and losses.png), from the sampling generator."""
        self.reporter.samples(self.step, self.objective.measure_ema_batchnorm(), self.fixed_noise, self.history,
                              self.fixed_labels())

    # ---- snapshots -------------------------------------------------------------------------------
    def payload(self) -> dict:
        """Everything a snapshot holds, as numpy arrays and plain values."""
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "data_order": self.order.state_dict(),
            **self.objective.state_dict(),
            "fixed_noise": self.fixed_noise,
            "history": list(self.history),
            "setting_changes": list(self.setting_changes),
            "best": self.reporter.best,
            "config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "conv_backend": fastconv.backend(),
            "paddle_version": paddle.__version__,
            "backbone": self.backbone,
        }

    def save_snapshot(self) -> str | None:
        """Write the snapshot for the current step (rank 0 only) and prune old ones; a payload
        that is not finite is never written (the run stops with where to resume from)."""
        if self.rank != 0:
            return None
        try:
            return self.run.save_snapshot(self.payload(), self.cfg.keep_snapshots)
        except Diverged as exc:
            raise self._diverged(str(exc)) from None

    def _save_best(self) -> str:
        try:
            return self.run.save_best(self.payload())
        except Diverged as exc:
            raise self._diverged(str(exc)) from None

    def _restore(self, found) -> None:
        payload = found.payload
        self.objective.set_state_dict(payload, found.path)
        self.step = int(payload["step"])
        self.train_seconds = float(payload.get("train_seconds", 0.0))  # 0 for snapshots before 0.3
        self.fixed_noise = np.asarray(payload["fixed_noise"], np.float32)
        self.history = list(payload["history"])
        self.setting_changes = list(payload.get("setting_changes") or [])
        self.reporter.best = payload.get("best")
        saved_backend = payload.get("conv_backend", "paddle")
        if saved_backend != fastconv.backend():
            self.reporter.info(f"the snapshot was written with {saved_backend} convolutions and training goes on with "
                               f"{fastconv.backend()}'s: it continues within float tolerance, not bit for bit")
        saved_world = int(payload.get("world_size", 1))
        if saved_world == self.world_size:
            self.order.set_state_dict(payload["data_order"])
        else:
            # another number of ranks: the batch order restarts at the saved epoch boundary
            epoch = int(payload["data_order"]["epoch"]) + 1
            self.order.set_state_dict({"epoch": epoch, "position": 0})
            self.reporter.info(
                f"the snapshot was written by {saved_world} ranks, now {self.world_size}: global batch "
                f"{self.cfg.batch_size * saved_world} -> {self.cfg.batch_size * self.world_size}, data order "
                f"restarts at epoch {epoch}")
        self.reporter.info(f"resumed {self.run.dir} from {os.path.basename(found.path)} (step {self.step})")
