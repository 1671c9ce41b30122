"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) of what the discriminator sees.

The same random colour, translation and cutout transforms are applied to real and generated
images before D, in D's loss, G's loss and inside the penalties on D, so D cannot memorise a
small training set and G still gets gradients through the transform. Every transform is built
from operations Paddle differentiates twice (elementwise ops, means and batched matrix
products), so the WGAN-GP and R1 penalties work through it. The random draws come from Paddle's
global RNG, which snapshots capture: a resumed run draws the same augmentations.

    --set augment=translation,cutout,color     (any subset, in any order)
"""
from __future__ import annotations

import paddle

# Zhao et al.'s settings: brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5];
# translation up to 1/8 of the side; cutout of half the side.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def color(x):
    """Random brightness (+-0.5), saturation (x[0, 2], colour images only) and contrast
    (x[0.5, 1.5]) per image; x (N, C, H, W).

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


# The one registry: name -> transform of (N, C, H, W) float32 images. Applied in this order.
AUGMENTS = {"color": color, "translation": translation, "cutout": cutout}


def parse(names: str) -> list[str]:
    """"translation,cutout" -> the registered names, in the registry's order; "" -> none."""
    wanted = [n.strip() for n in str(names or "").split(",") if n.strip()]
    return [name for name in AUGMENTS if name in wanted]


def unknown(names: str) -> list[str]:
    """The names in ``names`` that are not augmentations."""
    return [n.strip() for n in str(names or "").split(",") if n.strip() and n.strip() not in AUGMENTS]


class DiffAugment:
    """The configured transforms as one callable, applied to every image."""

    def __init__(self, names: str):
        self.names = parse(names)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x):
        for name in self.names:
            x = AUGMENTS[name](x)
        return x
