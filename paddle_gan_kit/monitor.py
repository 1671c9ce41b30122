"""What a run shows while it trains: train.log, VisualDL scalars and images, sample grids,
the loss-curve PNG and the progress bar."""
from __future__ import annotations

import logging
import math
import os
import sys

import numpy as np


def to_uint8_images(images) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] (tensor or array) -> uint8 (N, H, W, C)."""
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return array.transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2,
              pad_value: int = 0) -> np.ndarray:
    """Tile uint8 (N, H, W, C) into one uint8 (rows*(H+p)+p, cols*(W+p)+p, C) image."""
    n, h, w, c = images.shape
    ncols = ncols or int(math.ceil(math.sqrt(n)))
    nrows = int(math.ceil(n / ncols))
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def write_png(path: str, image: np.ndarray) -> None:
    """Write uint8 (H, W, C) RGB or gray as PNG, atomically (temporary name + rename)."""
    import cv2

    if image.shape[-1] == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    tmp = f"{path}.tmp-{os.getpid()}.png"
    if not cv2.imwrite(tmp, np.ascontiguousarray(image)):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)


def plot_losses(history: list[dict], path: str, title: str) -> None:
    """Loss curves (one panel per quantity family) from logged records, saved as PNG."""
    # a bare Figure with no pyplot: no backend switch, so a notebook's inline plots keep working
    from matplotlib.figure import Figure

    if not history:
        return
    keys = [k for k in history[-1] if k not in ("step", "images_per_s", "lr_g", "lr_d")]
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
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def make_logger(run_dir: str | None, name: str = "paddle_gan_kit.train") -> logging.Logger:
    """A logger that prints to stderr and, on the writing rank, appends to ``train.log``."""
    logger = logging.getLogger(f"{name}.{id(run_dir)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    stream = TqdmHandler()
    stream.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(stream)
    if run_dir is not None:
        file_handler = logging.FileHandler(os.path.join(run_dir, "train.log"), encoding="utf-8")
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
    """Thin wrapper over ``visualdl.LogWriter``: scalars and images at the generator step."""

    def __init__(self, logdir: str):
        from visualdl import LogWriter

        os.makedirs(logdir, exist_ok=True)
        self._writer = LogWriter(logdir=logdir)

    def scalars(self, values: dict, step: int, prefix: str = "") -> None:
        for key, value in values.items():
            if key != "step":
                self._writer.add_scalar(tag=f"{prefix}{key}", value=float(value), step=int(step))

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        self._writer.add_image(tag=tag, img=image, step=int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TqdmHandler(logging.Handler):
    """Log lines printed through ``tqdm.write`` so they never tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never kill training
            self.handleError(record)
