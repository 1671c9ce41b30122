"""Making a square training image of one size out of a picture of any shape."""
from __future__ import annotations

import cv2
import numpy as np

from data_prep.errors import DataPrepError

FITS = ("crop", "pad", "stretch")
INTERPOLATIONS = ("area", "lanczos", "cubic", "linear")
PAD_MODES = ("color", "edge")
MIN_SIZE, MAX_SIZE = 8, 2048


def check_options(fit: str, interp: str, pad_mode: str) -> None:
    """Raise DataPrepError naming the allowed values if any option is unknown."""
    for name, value, allowed in (("fit", fit, FITS), ("interp", interp, INTERPOLATIONS),
                                 ("pad mode", pad_mode, PAD_MODES)):
        if value not in allowed:
            raise DataPrepError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}")


def check_sizes(sizes) -> list[int]:
    """Validate output sizes (pixels per side) and return them sorted and de-duplicated."""
    if isinstance(sizes, int):
        sizes = [sizes]
    out = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or \
                not MIN_SIZE <= size <= MAX_SIZE:
            raise DataPrepError(f"unsupported size {size!r}; sizes are whole numbers of pixels "
                                f"from {MIN_SIZE} to {MAX_SIZE}, e.g. --sizes 64 96 256")
        out.append(int(size))
    if not out:
        raise DataPrepError("no size given; pass at least one, e.g. --sizes 64")
    return sorted(set(out))


def _interpolation(interp: str, shrinking: bool) -> int:
    if interp == "lanczos":
        return cv2.INTER_LANCZOS4
    if interp == "linear":
        return cv2.INTER_LINEAR
    if interp == "cubic" or not shrinking:
        # INTER_AREA averages pixels, right for shrinking; enlarging wants a smooth kernel.
        return cv2.INTER_CUBIC
    return cv2.INTER_AREA


def _resize(img: np.ndarray, width: int, height: int, interp: str) -> np.ndarray:
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    shrinking = width <= w and height <= h
    out = cv2.resize(img, (width, height), interpolation=_interpolation(interp, shrinking))
    if out.ndim == 2 and img.ndim == 3:  # cv2 drops a trailing channel axis of 1
        out = out[:, :, None]
    return out


def fit_square(img: np.ndarray, size: int, fit: str = "crop", interp: str = "area",
               pad_mode: str = "color", background: tuple[int, int, int] = (255, 255, 255)
               ) -> np.ndarray:
    """Fit a uint8 (H, W) or (H, W, C) image into a (size, size[, C]) square.

    ``crop`` keeps the centred square of side min(H, W); ``pad`` keeps the whole picture and
    fills the borders with ``background`` (``pad_mode="color"``) or the replicated edge
    (``"edge"``); ``stretch`` ignores the aspect ratio.
    """
    h, w = img.shape[:2]
    if fit == "stretch":
        return _resize(img, size, size, interp)
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return _resize(img[top:top + side, left:left + side], size, size, interp)
    if fit != "pad":
        raise DataPrepError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")
    # Resize first and pad after, so the border is exact and the resize touches fewer pixels.
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    small = _resize(img, new_w, new_h, interp)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    bottom, right = size - new_h - top, size - new_w - left
    if pad_mode == "edge":
        return cv2.copyMakeBorder(small, top, bottom, left, right, cv2.BORDER_REPLICATE)
    channels = 1 if small.ndim == 2 else small.shape[2]
    if channels == 1:
        # A gray picture padded with a colour would no longer be gray; use the colour's luma.
        r, g, b = background
        value = [int(round(0.299 * r + 0.587 * g + 0.114 * b))] * 4
    else:
        value = [int(v) for v in background] + [255]
    out = cv2.copyMakeBorder(small, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    if out.ndim == 2 and small.ndim == 3:
        out = out[:, :, None]
    return out
