"""Decoding image bytes with OpenCV into plain 8-bit RGB or grayscale arrays.

Handles what real image folders contain: grayscale, alpha (composited on a background colour),
16-bit, palette PNGs, CMYK JPEGs and EXIF orientation. Truncated files are rejected rather than
decoded into half-grey pictures.
"""
from __future__ import annotations

import cv2
import numpy as np

# Formats the issue promises, by their magic bytes.
SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP", "WebP")


class UndecodableImage(Exception):
    """A file that is not a usable image; ``str()`` is the reason shown in the manifest."""


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's first bytes ("JPEG", "PNG", ...), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def _check_complete(data: bytes, fmt: str) -> None:
    # libjpeg and libpng decode a cut-off file into an image padded with grey and only warn,
    # so completeness is checked on the bytes.
    if fmt == "JPEG":
        # Entropy-coded data never contains a bare 0xFFD9, so the last scan (0xFFDA) must be
        # followed by the end-of-image marker; an embedded EXIF thumbnail comes before it.
        sos = data.rfind(b"\xff\xda")
        if sos < 0 or data.find(b"\xff\xd9", sos) < 0:
            raise UndecodableImage("truncated JPEG (no end-of-image marker)")
    elif fmt == "PNG":
        if data.rfind(b"IEND") < 0:
            raise UndecodableImage("truncated PNG (no IEND chunk)")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # 65535 / 257 = 255 exactly; +128 rounds to nearest.
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype.kind == "f":
        return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise UndecodableImage(f"unsupported pixel type {img.dtype}")


def _composite(color: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    bg = np.asarray(background, np.float32)
    out = color.astype(np.float32) * a + bg * (1.0 - a)
    return (out + 0.5).astype(np.uint8)


def decode_image(data: bytes, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Decode JPEG/PNG/BMP/WebP bytes to uint8 (H, W) grayscale or (H, W, 3) RGB in [0, 255].

    Transparent pixels are composited onto ``background`` (RGB); EXIF orientation is applied to
    JPEGs. Raises :class:`UndecodableImage` with the reason for anything unusable.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise UndecodableImage("not an image (no JPEG/PNG/BMP/WebP signature)")
    if fmt not in SUPPORTED_FORMATS:
        raise UndecodableImage(f"{fmt} is not supported (convert to PNG or JPEG)")
    _check_complete(data, fmt)
    buf = np.frombuffer(data, np.uint8)
    # JPEGs have no alpha and no 16 bits, so the colour flag loses nothing and makes OpenCV apply
    # the EXIF orientation and convert CMYK; other formats are read unchanged to keep alpha/depth.
    flags = cv2.IMREAD_COLOR_RGB if fmt == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise UndecodableImage(f"corrupt {fmt}: {str(exc).strip().splitlines()[-1]}") from None
    if img is None or img.size == 0:
        raise UndecodableImage(f"corrupt {fmt} (OpenCV cannot decode it)")
    img = _to_uint8(img)
    if fmt == "JPEG":
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img
    channels = img.shape[2]
    if channels == 2:  # gray + alpha
        gray = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
        return _composite(gray, img[:, :, 1], background)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
        alpha = img[:, :, 3]
        if alpha.min() == 255:  # opaque RGBA, common from screenshots: skip the float maths
            return rgb
        return _composite(rgb, alpha, background)
    raise UndecodableImage(f"unsupported channel count {channels}")
