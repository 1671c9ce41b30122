"""The one image resizer the feature extractors use, and how to name it next to a number.

clean-fid (Parmar et al., 2022) showed that the resizer in front of Inception moves FID by whole
points, so every reported value states it. We use clean-fid's "clean" choice: PIL bicubic on
float32, one channel at a time (antialiased when shrinking, no uint8 rounding in between).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import MetricsError

RESIZER = "PIL BICUBIC float32 per channel (clean-fid)"


def check_images(images, name="images"):
    """Validate a batch of images: uint8 (N, H, W, C) with C in {1, 3} and N >= 1; returns it."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise MetricsError(f"{name} must be uint8 in [0, 255], got dtype {images.dtype}; "
                           "convert generator output with ((x + 1) * 127.5).round().clip(0, 255).astype('uint8')")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise MetricsError(f"{name} must be (N, H, W, C) with C = 1 or 3, got shape {images.shape}")
    if images.shape[0] == 0:
        raise MetricsError(f"{name} is empty")
    return images


def describe_resize(image_shape, size):
    """One line naming the resize applied to images of ``image_shape`` (N, H, W, C) -> size x size."""
    h, w = image_shape[1], image_shape[2]
    if (h, w) == (size, size):
        return f"none ({h}x{w} native)"
    return f"{RESIZER} {h}x{w}->{size}x{size}"


def resize_images(images, size):
    """Resize uint8 (N, H, W, C) images to (N, size, size, C) float32 in [0, 255]."""
    images = check_images(images)
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images.astype(np.float32)
    out = np.empty((n, size, size, c), np.float32)
    for i in range(n):
        for ch in range(c):
            # Mode "F" keeps the bicubic result unrounded; overshoot is clipped as clean-fid does.
            plane = Image.fromarray(images[i, :, :, ch].astype(np.float32))
            out[i, :, :, ch] = np.asarray(plane.resize((size, size), resample=Image.BICUBIC))
    return np.clip(out, 0.0, 255.0, out=out)
