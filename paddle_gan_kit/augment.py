"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of what the discriminator sees.

The same random colour, translation and cutout transforms are applied to real and generated
images before D, in D's loss, G's loss and inside the penalties on D, so D cannot memorise a
small training set and G still gets gradients through the transform. Every transform is built
from operations Paddle differentiates twice (elementwise ops, means and batched matrix
products), so the WGAN-GP and R1 penalties work through it. The random draws come from Paddle's
global RNG, which snapshots capture: a resumed run draws the same augmentations.

    --set augment=translation,cutout,color     (any subset, in any order; also flip, scale, hue)
    --set augment_p=0.5                         (each image is augmented with this probability)
    --set color_strength=0.5                    (colour ranges scaled towards no change)
"""
from __future__ import annotations

import math

import paddle

# Zhao et al.'s settings: brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5];
# translation up to 1/8 of the side; cutout of half the side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def color(x, strength: float = 1.0):
    """Random brightness, saturation (colour images only) and contrast per image; x (N, C, H, W).
    ``strength`` scales each range about "no change": brightness +-0.5 s, saturation x[1 - s,
    1 + s], contrast x[1 - s/2, 1 + s/2] (1: Zhao et al.'s ranges, drawn exactly as before;
    above 1 a negative saturation turns some images towards their complementary colours).

    Zhao et al. apply them in turn: x + b, then (x - mean over channels) * s + that mean, then
    (x - mean over everything) * k + that mean. Saturation keeps the overall mean, so the three
    fold into one map, k s x + k (1 - s) mean_c(x) + (1 - k) mean(x) + b, computed here as one
    batched (C, C) matrix product per image plus an outer product for the constant: Paddle's CPU
    kernels for (N, 1, 1, 1) broadcasts and their gradients, which the step-by-step form needs,
    made it 8-10x slower (forward and backward, 32 px, batch 32). Same draws, same order."""
    n, c, h, w = x.shape
    brightness = paddle.rand([n, 1, 1]) - 0.5
    saturation = paddle.rand([n, 1, 1]) * 2.0 if c > 1 else None
    contrast = paddle.rand([n, 1, 1]) + 0.5
    if strength != 1.0:  # same draws, ranges shrunk (or widened) about the identity
        brightness = brightness * strength
        saturation = None if saturation is None else 1.0 + (saturation - 1.0) * strength
        contrast = 1.0 + (contrast - 1.0) * strength
    flat = x.reshape([n, c, h * w])
    channel_means = paddle.matmul(flat, paddle.full([h * w, 1], 1.0 / (h * w)))  # (N, C, 1)
    mean = paddle.matmul(paddle.full([1, c], 1.0 / c), channel_means)  # (N, 1, 1)
    if c > 1:
        mix = contrast * saturation * paddle.eye(c) + contrast * (1.0 - saturation) / c  # (N, C, C)
    else:
        mix = contrast
    constant = ((1.0 - contrast) * mean + brightness).expand([n, c, 1])
    out = paddle.matmul(mix, flat) + paddle.matmul(constant, paddle.ones([1, h * w]))
    return out.reshape([n, c, h, w])


def _shift_matrices(n: int, size: int, max_shift: int):
    """(n, 1, size, size) 0/1 matrices S with (S @ v)[i] = v[i - shift], zero where that is outside.
    Row i is one-hot at column i - shift, built padded by max_shift on both sides and cropped."""
    shifts = paddle.randint(-max_shift, max_shift + 1, [n, 1])
    columns = paddle.arange(size).reshape([1, size]) - shifts + max_shift  # in [0, size + 2 max_shift)
    padded = paddle.nn.functional.one_hot(columns, size + 2 * max_shift)  # (n, size, size + 2 max_shift)
    return padded[:, :, max_shift:max_shift + size].unsqueeze(1)


def translation(x):
    """Shift each image by up to 1/8 of its side in x and y, filling with zeros (mid-gray in
    [-1, 1]); x (N, C, H, W). Done as two batched matrix products, differentiable to any order."""
    n, _, h, w = x.shape
    rows = _shift_matrices(n, h, max(1, int(h * TRANSLATION_RATIO + 0.5)))  # (N, 1, H, H)
    cols = _shift_matrices(n, w, max(1, int(w * TRANSLATION_RATIO + 0.5)))  # (N, 1, W, W)
    return paddle.matmul(paddle.matmul(rows, x), cols, transpose_y=True)


def cutout(x):
    """Zero a random square of half the side in each image (it may be partly outside); x (N, C, H, W).
    The square is the outer product of a row and a column indicator, and the mask is expanded to
    x's shape before the product: Paddle's CPU broadcasting made the direct form 3x slower."""
    n, c, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = paddle.randint(0, h + (1 - ch % 2), [n, 1, 1, 1]).astype("float32") - ch // 2
    left = paddle.randint(0, w + (1 - cw % 2), [n, 1, 1, 1]).astype("float32") - cw // 2
    ys = paddle.arange(h, dtype="float32").reshape([1, 1, h, 1])
    xs = paddle.arange(w, dtype="float32").reshape([1, 1, 1, w])
    in_rows = ((ys >= top) & (ys < top + ch)).astype("float32")  # (N, 1, H, 1)
    in_cols = ((xs >= left) & (xs < left + cw)).astype("float32")  # (N, 1, 1, W)
    keep = 1.0 - paddle.matmul(in_rows, in_cols)  # (N, 1, H, W)
    return x * keep.expand([n, c, h, w])


def flip(x):
    """Mirror each image left-right with probability 1/2; x (N, C, H, W). A batched product with
    either the identity or the exchange matrix, differentiable to any order like ``translation``."""
    n, _, _, w = x.shape
    mirrored = (paddle.rand([n, 1, 1, 1]) < 0.5).astype(x.dtype)
    identity = paddle.eye(w, dtype=x.dtype).reshape([1, 1, w, w])
    exchange = paddle.flip(identity, axis=[3])
    return paddle.matmul(x, mirrored * exchange + (1.0 - mirrored) * identity)


# Karras et al. 2020 (ADA): isotropic scale factors 2^N(0, 0.2^2), hue rotations of up to a full turn.
SCALE_STD = 0.2
HUE_MAX = 1.0


def _reflect(index, size: int):
    """Integer indices folded into [0, size) by mirroring at the borders (..., 1, 0, 0, 1, ...)."""
    period = 2 * size
    index = paddle.remainder(index, paddle.full_like(index, period))
    return paddle.where(index >= size, period - 1 - index, index)


def _zoom_matrices(scales, size: int):
    """(n, 1, size, size) bilinear resampling matrices Z with (Z @ v)[i] = v at the source point
    (i + 1/2 - size/2) / scale + size/2 - 1/2, reflected at the borders (as ADA pads)."""
    centre = (size - 1) / 2.0
    source = (paddle.arange(size, dtype="float32").reshape([1, size]) - centre) / scales + centre  # (n, size)
    left = paddle.floor(source)
    right_weight = (source - left).unsqueeze(-1)
    left = left.astype("int64")
    taps = [paddle.nn.functional.one_hot(_reflect(i, size), size) for i in (left, left + 1)]  # (n, size, size)
    return ((1.0 - right_weight) * taps[0] + right_weight * taps[1]).unsqueeze(1)


def scale(x):
    """Zoom each image about its centre by 2^N(0, 0.2^2) (ADA's isotropic scaling), bilinear
    and reflected at the borders; x (N, C, H, W). Two batched matrix products like ``translation``."""
    n, _, h, w = x.shape
    scales = paddle.pow(paddle.full([n, 1], 2.0), paddle.randn([n, 1]) * SCALE_STD)
    rows = _zoom_matrices(scales, h)
    cols = rows if w == h else _zoom_matrices(scales, w)  # square images: one set of matrices
    return paddle.matmul(paddle.matmul(rows, x), cols, transpose_y=True)


def hue(x):
    """Rotate each colour image's colours about the grey axis (1, 1, 1) by an angle drawn from
    [-pi, pi] (ADA's hue rotation; greys, including mid-grey 0, stay); x (N, C, H, W). One
    batched (3, 3) matrix product per image; grayscale images pass unchanged."""
    n, c, h, w = x.shape
    if c != 3:
        return x
    angles = (paddle.rand([n, 1, 1]) * 2.0 - 1.0) * (HUE_MAX * math.pi)
    return paddle.matmul(_hue_rotations(angles), x.reshape([n, c, h * w])).reshape([n, c, h, w])


def _hue_rotations(angles):
    """(n, 3, 3) rotations about the unit grey axis a by ``angles`` (n, 1, 1), Rodrigues' formula:
    cos t I + sin t [a]x + (1 - cos t) a a^T."""
    axis = paddle.full([3, 1], 3.0 ** -0.5)
    cross = paddle.to_tensor([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) * 3.0 ** -0.5
    cos, sin = paddle.cos(angles), paddle.sin(angles)
    return cos * paddle.eye(3) + sin * cross + (1.0 - cos) * paddle.matmul(axis, axis, transpose_y=True)


# The one registry: name -> transform of (N, C, H, W) float32 images. Applied in this order.
AUGMENTS = {"color": color, "hue": hue, "translation": translation, "scale": scale, "cutout": cutout, "flip": flip}


def parse(names: str) -> list[str]:
    """"translation,cutout" -> the registered names, in the registry's order; "" -> none."""
    wanted = [n.strip() for n in str(names or "").split(",") if n.strip()]
    return [name for name in AUGMENTS if name in wanted]


def unknown(names: str) -> list[str]:
    """The names in ``names`` that are not augmentations."""
    return [n.strip() for n in str(names or "").split(",") if n.strip() and n.strip() not in AUGMENTS]


class DiffAugment:
    """The configured transforms as one callable; ``p`` < 1 augments each image with
    probability ``p`` (the others pass unchanged); ``color_strength`` scales colour's ranges."""

    def __init__(self, names: str, p: float = 1.0, color_strength: float = 1.0):
        self.names, self.p, self.color_strength = parse(names), float(p), float(color_strength)

    def __bool__(self) -> bool:
        return bool(self.names) and self.p > 0

    def __call__(self, x):
        if not self:
            return x
        out = x
        for name in self.names:
            out = color(out, self.color_strength) if name == "color" else AUGMENTS[name](out)
        if self.p < 1.0:
            keep = (paddle.rand([x.shape[0], 1, 1, 1]) < self.p).astype(x.dtype).expand(x.shape)
            out = keep * out + (1.0 - keep) * x
        return out
