"""InceptionV3 pool3 features for FID, in Paddle, with weights loaded from a checked local file.

The architecture is the FID variant of InceptionV3: the 2015-12-05 TensorFlow graph that the
original FID code (TTUR) used, as ported by pytorch-fid (``FIDInceptionA/C/E``) and by
PaddleGAN (ppgan/metrics/inception.py). It differs from torchvision's InceptionV3 in that the
average-pool branches exclude padding and the last block's pool branch is a max pool; without
those, pretrained FID weights give different numbers. Layer attribute names follow PaddleGAN so
its published ``InceptionV3.pdparams`` loads as is; the BatchNorm statistics may be spelled
either ``_mean/_variance`` (Paddle) or ``running_mean/running_var`` (PyTorch conversions).
"""
from __future__ import annotations

import os

import numpy as np
import paddle
from paddle import nn

from paddle_gan_kit import safe_pickle
from paddle_gan_kit.torch_weights import checked_weights, is_torch_file, read_state_dict

from .errors import MetricsError
from .pretrained import PretrainedFeatures, download_checked, weights_path

# The weights pytorch-fid uses, and through it most papers' FIDs: the 2015-12-05 TensorFlow
# Inception graph ported to PyTorch, published as a release asset of mseitzer/pytorch-fid. Its
# name carries the first hex digits of its sha256, which is what torch.hub checks; no full hash
# is published, so that prefix is what --download checks too.
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
# PaddleGAN's conversion of the same weights (its ppgan/metrics/fid.py), accepted with --weights.
PADDLEGAN_WEIGHTS_URL = "https://paddlegan.bj.bcebos.com/InceptionV3.pdparams"
WEIGHTS_ENV = "PADDLE_GAN_KIT_INCEPTION_WEIGHTS"

_MISSING_WEIGHTS_FIX = (f"pass --download (fetches pytorch-fid's {os.path.basename(FID_WEIGHTS_URL)} once), or "
                        f"--weights PATH to that file or to PaddleGAN's InceptionV3.pdparams (or set {WEIGHTS_ENV})")


class ConvBN(nn.Layer):
    """Conv (no bias) -> BatchNorm(eps=1e-3, as in the TF graph) -> ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, epsilon=1e-3)

    def forward(self, x):
        return nn.functional.relu(self.bn(self.conv(x)))


def _avg_pool_3x3():
    # exclusive=True is PyTorch's count_include_pad=False: the TF graph's average pools ignore
    # padding, torchvision's do not.
    return nn.AvgPool2D(kernel_size=3, stride=1, padding=1, exclusive=True)


class FIDInceptionA(nn.Layer):
    """Mixed_5b/c/d: (N, C, 35, 35) -> (N, 224 + pool_features, 35, 35)."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool0 = _avg_pool_3x3()
        self.branch_pool = ConvBN(in_channels, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(self.branch_pool0(x))
        return paddle.concat([b1, b5, b3, bp], axis=1)


class InceptionB(nn.Layer):
    """Mixed_6a, the grid reduction: (N, 288, 35, 35) -> (N, 768, 17, 17)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)
        self.branch_pool = nn.MaxPool2D(kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return paddle.concat([b3, b3d, self.branch_pool(x)], axis=1)


class FIDInceptionC(nn.Layer):
    """Mixed_6b..e, factorised 7x7 convolutions: (N, 768, 17, 17) -> (N, 768, 17, 17)."""

    def __init__(self, in_channels, c7):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool0 = _avg_pool_3x3()
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        b7d = self.branch7x7dbl_3(self.branch7x7dbl_2(b7d))
        b7d = self.branch7x7dbl_5(self.branch7x7dbl_4(b7d))
        bp = self.branch_pool(self.branch_pool0(x))
        return paddle.concat([b1, b7, b7d, bp], axis=1)


class InceptionD(nn.Layer):
    """Mixed_7a, the grid reduction: (N, 768, 17, 17) -> (N, 1280, 8, 8)."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)
        self.branch_pool = nn.MaxPool2D(kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(b7)))
        return paddle.concat([b3, b7, self.branch_pool(x)], axis=1)


class FIDInceptionE(nn.Layer):
    """Mixed_7b/c, expanded filter banks: (N, C, 8, 8) -> (N, 2048, 8, 8).

    ``max_pool``: the TF graph's last block (Mixed_7c) pools its fourth branch with a max pool;
    Mixed_7b uses an average pool that excludes padding.
    """

    def __init__(self, in_channels, max_pool):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool0 = (nn.MaxPool2D(kernel_size=3, stride=1, padding=1) if max_pool
                             else _avg_pool_3x3())
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)                                          # (N, 320, 8, 8)
        b3 = self.branch3x3_1(x)
        b3 = paddle.concat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=1)  # (N, 768, 8, 8)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = paddle.concat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], axis=1)  # (N, 768, 8, 8)
        bp = self.branch_pool(self.branch_pool0(x))                     # (N, 192, 8, 8)
        return paddle.concat([b1, b3, b3d, bp], axis=1)


class FIDInceptionV3(nn.Layer):
    """InceptionV3 up to pool3: (N, 3, 299, 299) float32 in [-1, 1] -> (N, 2048) float32."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2D(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.maxpool2 = nn.MaxPool2D(kernel_size=3, stride=2)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, c7=128)
        self.Mixed_6c = FIDInceptionC(768, c7=160)
        self.Mixed_6d = FIDInceptionC(768, c7=160)
        self.Mixed_6e = FIDInceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.avgpool = nn.AdaptiveAvgPool2D(1)

    def forward(self, x):
        x = self.Conv2d_1a_3x3(x)                      # (N, 32, 149, 149)
        x = self.Conv2d_2a_3x3(x)                      # (N, 32, 147, 147)
        x = self.maxpool1(self.Conv2d_2b_3x3(x))       # (N, 64, 73, 73)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # (N, 192, 71, 71)
        x = self.maxpool2(x)                           # (N, 192, 35, 35)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # (N, 288, 35, 35)
        x = self.Mixed_6a(x)                           # (N, 768, 17, 17)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (N, 768, 17, 17)
        x = self.Mixed_7a(x)                           # (N, 1280, 8, 8)
        x = self.Mixed_7c(self.Mixed_7b(x))            # (N, 2048, 8, 8)
        return paddle.flatten(self.avgpool(x), 1)      # (N, 2048) pool3


def download_weights(url: str | None = None) -> str:
    """Fetch pytorch-fid's weights into the cache once; a file whose sha256 does not start with
    the published prefix is removed and refused. Returns the local path."""
    url = url or FID_WEIGHTS_URL
    return download_checked(url, os.path.basename(url),
                            lambda sha: None if sha.startswith(FID_WEIGHTS_SHA256_PREFIX) else
                            f"has sha256 {sha[:16]}..., not {FID_WEIGHTS_SHA256_PREFIX}...",
                            "download it elsewhere and pass --weights PATH")


def read_weights(path: str) -> dict:
    """``{name: array}`` from a PyTorch ``.pth`` (pytorch-fid) or a Paddle ``.pdparams``
    (PaddleGAN) file, read without running code."""
    if is_torch_file(path):
        return read_state_dict(path)
    try:
        with open(path, "rb") as f:
            state = safe_pickle.loads(f.read())
    except safe_pickle.Refused as refused:
        raise MetricsError(f"{path} holds a pickled {refused}, which a weights file never needs; refusing to load "
                           "it (a pickle can run code)") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a state dict"
        raise MetricsError(f"cannot read {path} as a state dict ({type(exc).__name__}); {_MISSING_WEIGHTS_FIX}") from None
    if not isinstance(state, dict):
        raise MetricsError(f"{path} holds a {type(state).__name__}, not a state dict; {_MISSING_WEIGHTS_FIX}")
    return {k: v for k, v in state.items() if isinstance(v, np.ndarray)}


def _canonical_key(key):
    # PyTorch spells the BatchNorm statistics running_mean/running_var, Paddle _mean/_variance.
    return key.replace(".running_mean", "._mean").replace(".running_var", "._variance")


def load_inception(weights=None, expected_sha256=None, download=False):
    """Build the FID InceptionV3 and load checked weights; returns ``(net, info)``.

    ``weights``: pytorch-fid's ``.pth`` or PaddleGAN's ``.pdparams`` (default: env
    PADDLE_GAN_KIT_INCEPTION_WEIGHTS, then pytorch-fid's file in the cache, downloaded there
    once when ``download=True``). With ``expected_sha256`` the file's sha256 must equal it.
    Files are read without running code. Every parameter of the net must be present with its
    shape; extra entries (the 1008-way classifier) are ignored. ``info`` records path and hash.
    """
    expected = (expected_sha256 or "").lower() or None
    path = weights_path(weights, WEIGHTS_ENV, os.path.basename(FID_WEIGHTS_URL))
    if not path and download:
        path = download_weights()
    sha = checked_weights(path, "Inception", "weights file", expected, _MISSING_WEIGHTS_FIX, MetricsError)
    state = read_weights(path)

    net = FIDInceptionV3()
    own = net.state_dict()
    given = {_canonical_key(k): v for k, v in state.items()}
    missing = sorted(k for k in own if k not in given)
    wrong = sorted(k for k in own if k in given and tuple(np.shape(given[k])) != tuple(own[k].shape))
    if missing or wrong:
        detail = f"{len(missing)} missing (e.g. {missing[0]})" if missing else ""
        if wrong:
            k = wrong[0]
            detail += ("; " if detail else "") + (f"{len(wrong)} with wrong shape (e.g. {k}: "
                                                  f"{list(np.shape(given[k]))} vs {list(own[k].shape)})")
        raise MetricsError(f"{path} is not FID InceptionV3 weights: {detail}; {_MISSING_WEIGHTS_FIX}")
    net.set_state_dict({k: given[k] for k in own})
    net.eval()
    verified = expected is not None or (os.path.basename(path) == os.path.basename(FID_WEIGHTS_URL)
                                        and sha.startswith(FID_WEIGHTS_SHA256_PREFIX))
    info = {"weights": os.path.abspath(path), "weights_sha256": sha, "weights_verified": verified,
            "ignored_entries": len(given) - len(own)}
    return net, info


class InceptionFeatures(PretrainedFeatures):
    """FID feature extractor: uint8 (N, H, W, C) images -> (N, 2048) float64 pool3 activations.

    Images are resized to 299x299 with :data:`RESIZER`, gray ones repeated to RGB, scaled to
    [-1, 1] and run in eval mode in batches of ``batch_size``. See :func:`load_inception` for
    ``weights``, ``expected_sha256`` and ``download``.
    """

    name = "inception"
    dim = 2048
    input_size = 299

    def __init__(self, weights=None, expected_sha256=None, download=False, batch_size=32):
        self.net, self.info = load_inception(weights, expected_sha256, download)
        self.batch_size = int(batch_size)

    def normalize(self, batch):
        return batch / 127.5 - 1.0  # [0, 255] -> [-1, 1], the range the TF graph's weights were trained on
