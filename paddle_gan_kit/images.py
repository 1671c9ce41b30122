"""Image arrays between the nets and files: generator output to uint8, channel matching,
tiling into grids and integer upscaling. Numpy only; uint8 images are (N, H, W, C)."""
from __future__ import annotations

import math

import numpy as np

from paddle_gan_kit.errors import GanKitError

# ITU-R BT.601 luma weights: how colour images become gray ones everywhere in the toolkit
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def to_uint8_images(images) -> np.ndarray:
    """(N, C, H, W) float in [-1, 1] (tensor or array) -> uint8 (N, H, W, C)."""
    array = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    array = np.clip((array + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return array.transpose(0, 2, 3, 1)


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, H, W, channels): gray repeated to RGB, RGB to BT.601 luma."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = np.asarray(images, np.float32) @ LUMA
    return np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None]


def check_image_array(images: np.ndarray, origin: str) -> np.ndarray:
    """``images`` as uint8 (N, H, W, C) with C = 1 or 3 ((N, H, W) gains C = 1); else a
    one-line error naming ``origin``."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise GanKitError(
            f"{origin} holds a {images.dtype} array of shape {images.shape}; expected uint8 "
            "(N, H, W, C) with C = 1 or 3 (prepare images with `python -m data_prep`)"
        )
    return images


def grid_columns(n: int) -> int:
    """The columns ``make_grid`` uses by default for n tiles: as square as it gets."""
    return int(math.ceil(math.sqrt(n)))


def make_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2,
              pad_value: int = 0) -> np.ndarray:
    """Tile uint8 (N, H, W, C) into one uint8 (rows*(H+p)+p, cols*(W+p)+p, C) image."""
    n, h, w, c = images.shape
    ncols = ncols or grid_columns(n)
    nrows = int(math.ceil(n / ncols))
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c),
                   pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling, uint8 (..., H, W, C) -> (..., H*s, W*s, C).

    Nearest keeps the generator's pixels crisp: smoothing a 32 px image up to 128 px would
    show blur the model never made.
    """
    scale = int(scale)
    if scale < 1:
        raise GanKitError(f"scale must be an integer >= 1, got {scale}")
    if scale == 1:
        return images
    return images.repeat(scale, axis=-3).repeat(scale, axis=-2)
