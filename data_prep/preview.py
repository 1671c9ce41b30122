"""A contact sheet of prepared images, to check the crop before spending hours training."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from data_prep.errors import DataPrepError
from safe_files import write_png


def image_grid(images: np.ndarray, columns: int = 8, gap: int = 2) -> np.ndarray:
    """Tile uint8 (N, H, W, C) images into one uint8 (rows*(H+gap)-gap, ..., C) picture."""
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, col * (w + gap):col * (w + gap) + w] = img
    return grid


def save_preview(images: np.ndarray, path: str | os.PathLike, count: int = 64,
                 tile: int = 128) -> Path:
    """Write a PNG grid of up to ``count`` images of uint8 (N, H, W, C), spread evenly over
    the dataset and shrunk to at most ``tile`` pixels a side; returns the path written."""
    path = Path(path).expanduser()
    if len(images) == 0:
        raise DataPrepError("nothing to preview: the dataset has no images")
    picks = np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).astype(int))
    chosen = np.stack([images[i] for i in picks])
    if chosen.shape[1] > tile:
        chosen = np.stack([cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
                           .reshape(tile, tile, -1) for img in chosen])
    grid = image_grid(chosen, columns=int(np.ceil(np.sqrt(len(chosen)))))
    if path.suffix.lower() != ".png":
        raise DataPrepError(f"cannot write preview {path}; give a writable path ending in .png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, grid, fix="free some space or give --preview another path")
    except (OSError, ValueError) as exc:
        raise DataPrepError(f"cannot write preview {path} ({exc}); give a writable path ending in .png") from None
    return path
