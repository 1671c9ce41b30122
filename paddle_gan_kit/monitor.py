"""What a run shows while it trains: train.log, VisualDL scalars and images, sample grids, the
loss-curve PNG, the progress bar, evaluations and the best snapshot.

The trainer talks to one ``Reporter``. Rank 0 gets a ``RunReporter`` that writes all of that
into the run directory; other ranks get the silent base class, so the training loop never asks
which rank it is on.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

import numpy as np

from safe_files import atomic_path, free_bytes, no_space_error, write_png
from paddle_gan_kit.images import make_grid
from paddle_gan_kit.latent import generate_images

# Record keys that are not losses: they go to their own VisualDL groups and stay off the plot.
_NOT_LOSSES = ("step", "lr_g", "lr_d", "images_per_s", "train_seconds")


def plot_losses(history: list[dict], path: str, title: str, fix: str | None = None) -> None:
    """Loss curves (one panel per quantity family) from logged records, saved as PNG."""
    # a bare Figure with no pyplot: no backend switch, so a notebook's inline plots keep working
    from matplotlib.figure import Figure

    if not history:
        return
    keys = [k for k in history[-1] if k not in _NOT_LOSSES]
    steps = [rec["step"] for rec in history]
    fig = Figure(figsize=(7, 2.2 * len(keys)))
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        ax.plot(steps, [rec.get(key, float("nan")) for rec in history], lw=1.2)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("generator step")
    fig.tight_layout()
    with atomic_path(path, fix=fix) as tmp:
        fig.savefig(str(tmp), dpi=90, format="png")


def make_logger(run_dir: str | None, name: str = "paddle_gan_kit.train") -> logging.Logger:
    """A logger that prints to stderr and, when ``run_dir`` is given, appends to ``train.log``."""
    logger = logging.getLogger(f"{name}.{id(run_dir)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    close_logger(logger)
    stream = TqdmHandler()
    stream.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(stream)
    if run_dir is not None:
        file_handler = _LogFile(os.path.join(run_dir, "train.log"), encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(file_handler)
    return logger


def close_logger(logger: logging.Logger) -> None:
    """Flush and detach the logger's handlers (so train.log is closed)."""
    for handler in list(logger.handlers):
        handler.flush()
        logger.removeHandler(handler)
        handler.close()


def supersede_records_after(logdir: str, step: int, moved_dir: str) -> int:
    """Make a resumed run's VisualDL history single-valued; returns how many records moved.

    A run resumed from its step-``step`` snapshot logs steps after ``step`` again, so the
    records an interrupted session wrote after it would show twice. Every record file holding
    such records is moved, whole and untouched, to ``moved_dir`` (nothing is deleted), and
    its records up to ``step`` are written again to a new file in ``logdir`` with their own
    step and wall time. A run restarted at step 0 writes its step-0 samples again, so then
    every record moves.
    """
    import glob
    import shutil

    import cv2
    from visualdl import LogReader, LogWriter

    kept, moved, affected = [], 0, []
    for path in sorted(glob.glob(os.path.join(logdir, "vdlrecords.*"))):
        reader = LogReader(file_path=path)
        records = [(kind, tag, r) for kind, tags in reader.get_tags().items() if kind in ("scalar", "image")
                   for tag in tags for r in reader.get_data(kind, tag)]
        later = sum(1 for _, _, r in records if step == 0 or r.id > step)
        if later:
            affected.append(path)
            moved += later
            kept += [(kind, tag, r) for kind, tag, r in records if not (step == 0 or r.id > step)]
    if not affected:
        return 0
    os.makedirs(moved_dir, exist_ok=True)
    if kept:
        with LogWriter(logdir=logdir, file_name=f"vdlrecords.kept-{step}-{os.getpid()}.log") as writer:
            for kind, tag, r in sorted(kept, key=lambda item: (item[2].id, item[2].timestamp)):
                if kind == "scalar":
                    writer.add_scalar(tag=tag, value=r.value, step=r.id, walltime=r.timestamp)
                else:
                    encoded = np.frombuffer(r.image.encoded_image_string, np.uint8)
                    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]  # RGB
                    writer.add_image(tag=tag, img=np.ascontiguousarray(image), step=r.id, walltime=r.timestamp)
    for path in affected:
        shutil.move(path, os.path.join(moved_dir, os.path.basename(path)))
    return moved


class VisualDLWriter:
    """Thin wrapper over ``visualdl.LogWriter``: scalars, images and text at the generator step.

    VisualDL writes from a background thread that prints and drops what it cannot write, so
    records would vanish silently on a full disk: each call first checks that there is room
    (``MIN_FREE``) and otherwise stops with the one-line ``NoSpaceError`` (``fix`` says what
    to do), before anything is lost.
    """

    MIN_FREE = 2 * 1024**2  # bytes: far more than a log window's records or one sample grid

    def __init__(self, logdir: str, fix: str | None = None):
        from visualdl import LogWriter

        os.makedirs(logdir, exist_ok=True)
        self.logdir, self.fix = logdir, fix
        self._writer = LogWriter(logdir=logdir)

    def _check_room(self) -> None:
        if free_bytes(self.logdir) < self.MIN_FREE:
            raise no_space_error(os.path.join(self.logdir, "vdlrecords"), self.MIN_FREE, self.fix)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        self._check_room()
        for key, value in values.items():
            if key != "step":
                self._writer.add_scalar(tag=f"{prefix}{key}", value=float(value), step=int(step))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self._check_room()
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        self._writer.add_image(tag=tag, img=image, step=int(step))

    def text(self, tag: str, text: str, step: int) -> None:
        self._check_room()
        self._writer.add_text(tag=tag, text_string=text, step=int(step))

    def close(self) -> None:
        self._writer.close()


class _LogFile(logging.FileHandler):
    """train.log; a line it cannot write (a full disk) is still on stderr, and the error that
    stops the run says why, so no logging traceback is printed."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


class TqdmHandler(logging.Handler):
    """Log lines printed through ``tqdm.write`` so they never tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never kill training
            self.handleError(record)


def format_duration(seconds: float) -> str:
    """``1h02m``, ``12m05s`` or ``42s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def format_values(values: dict) -> str:
    """``key 1.234 key 5.678``: a record's numbers for a log line."""
    return " ".join(f"{k} {v:.4g}" for k, v in values.items())


class Reporter:
    """What ranks other than 0 report: nothing but one-line notes on stderr. The base of
    :class:`RunReporter`, whose methods say what each call means."""

    def __init__(self):
        self.log = make_logger(None)
        self.best: dict | None = None  # {"step": ..., <primary metric>: ...} of the best snapshot

    def info(self, message: str) -> None:
        pass

    def start(self, step: int, steps: int, header: str) -> None:
        pass

    def advance(self, step: int) -> None:
        pass

    def record(self, record: dict, steps: int, seconds_left: float) -> None:
        pass

    def settings_changed(self, step: int, changes: dict) -> None:
        pass

    def samples(self, step: int, generator, fixed_noise: np.ndarray, history: list, labels=None) -> None:
        pass

    def evaluate(self, step: int, generator, save_best) -> dict | None:
        return None

    def finish(self, status: str, step: int, path: str | None, stop_signal: int | None) -> None:
        pass

    def close(self) -> None:
        close_logger(self.log)


class RunReporter(Reporter):
    """Rank 0's reporter: train.log, VisualDL, the progress bar, sample grids, losses.png,
    evaluations with the best snapshot. Built before training starts; ``close()`` at the end."""

    def __init__(self, run, cfg, progress: bool = True, evaluator=None):
        super().__init__()
        self.run, self.cfg, self.evaluator = run, cfg, evaluator
        self.log = make_logger(run.dir)
        self.progress = progress
        self.vdl: VisualDLWriter | None = None
        self.bar = None
        self._pending_texts: list = []
        if evaluator is not None:
            self.info(f"evaluating every {cfg.eval_every} steps: {evaluator.describe()}")

    def info(self, message: str) -> None:
        """One line to stderr and train.log."""
        self.log.info(message)

    def start(self, step: int, steps: int, header: str) -> None:
        """Open VisualDL (moving aside what an interrupted session logged after ``step``), log
        the run's header line and show the progress bar."""
        from tqdm import tqdm

        moved = supersede_records_after(self.run.vdl_dir, step, os.path.join(self.run.dir, "vdl_superseded"))
        if moved:
            self.info(f"VisualDL: {moved} records an interrupted session wrote after step {step} "
                      f"moved to {self.run.dir}/vdl_superseded (this run logs those steps again)")
        self.vdl = VisualDLWriter(self.run.vdl_dir, self.run.disk_fix)
        for text_step, text in self._pending_texts:
            self.vdl.text("settings_changed", text, text_step)
        self.info(header)
        self.bar = tqdm(total=steps, initial=step, disable=not self.progress, unit="step", dynamic_ncols=True,
                        mininterval=1.0)

    def advance(self, step: int) -> None:
        self.bar.update(1)

    def settings_changed(self, step: int, changes: dict) -> None:
        """A resume changed settings: a log line now, a VisualDL text record once it is open."""
        text = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        self.info(f"resumed at step {step} with changed settings: {text}")
        self._pending_texts.append((step, text))

    def record(self, record: dict, steps: int, seconds_left: float) -> None:
        """A logged window of steps: VisualDL scalars, the bar's numbers and a log line with the
        training time spent and left."""
        step = record["step"]
        losses = {k: v for k, v in record.items() if k not in _NOT_LOSSES}
        self.vdl.scalars(losses, step, prefix="train/")
        self.vdl.scalars({"lr_g": record["lr_g"], "lr_d": record["lr_d"]}, step, prefix="lr/")
        self.vdl.scalars({"images_per_s": record["images_per_s"],
                          "train_minutes": record["train_seconds"] / 60}, step, prefix="speed/")
        shown = {k: v for k, v in record.items() if k not in ("step", "lr_g", "lr_d", "train_seconds")}
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
        self.info(f"step {step}/{steps} {format_values(shown)} time {format_duration(record['train_seconds'])} "
                  f"left {format_duration(seconds_left)}")

    def samples(self, step: int, generator, fixed_noise: np.ndarray, history: list, labels=None) -> None:
        """The grid of G(fixed_noise) (of classes ``labels``, one per row, for a conditional run)
        in eval mode as PNG and VisualDL image, and losses.png."""
        grid = make_grid(generate_images(generator, fixed_noise, batch_size=len(fixed_noise), labels=labels))
        write_png(self.run.sample_path(step), grid, fix=self.run.disk_fix)
        if self.vdl is not None:
            self.vdl.image("samples", grid, step)
        plot_losses(history, os.path.join(self.run.dir, "losses.png"), f"{self.cfg.model} {self.cfg.size}px",
                    fix=self.run.disk_fix)

    def evaluate(self, step: int, generator, save_best) -> dict:
        """Score ``generator``, log it, and call ``save_best()`` when it beats the best so far."""
        result = self.evaluator(generator, self.cfg.z_dim, self.cfg.z_dist, self.cfg.conditional)
        primary = self.evaluator.primary
        scores = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and not k.startswith("n_")}
        self.vdl.scalars(scores, step, prefix="eval/")
        improved = self.best is None or result[primary] < self.best[primary]
        if improved:
            self.best = {"step": step, primary: float(result[primary])}
            path = save_best()
            verdict = f" - new best, {os.path.relpath(path, self.run.dir)} written"
        else:
            verdict = f" - best {self.best[primary]:.4g} at step {self.best['step']}"
        self.info(f"eval step {step}: {format_values(scores)} (n_real {result.get('n_real')}, "
                  f"n_fake {result.get('n_fake')}, {result.get('extractor')}){verdict}")
        return result

    def finish(self, status: str, step: int, path: str | None, stop_signal: int | None) -> None:
        if status == "out of time":
            self.info(f"out of time: {self.cfg.minutes:g} minutes of training reached at step {step}; snapshot "
                      f"{path} written; raise --minutes (and --resume) to train longer")
        elif status == "interrupted":
            self.info(f"{signal.Signals(stop_signal).name}: stopped at step {step}; snapshot {path} written; "
                      f"continue with --resume --out {self.run.dir}")
        else:
            self.info(f"done: step {step}; snapshot {path}; samples in {self.run.samples_dir}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.vdl is not None:
            self.vdl.close()
        super().close()
