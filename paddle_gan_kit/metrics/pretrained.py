"""What the two pretrained feature extractors (Inception, MobileNetV2) share: fetching their
published weights once against a hash, and running a net over resized images in batches."""
from __future__ import annotations

import os
import urllib.request

import numpy as np
import paddle

from safe_files import atomic_path, cache_dir, sha256_of
from .errors import MetricsError
from .resize import RESIZER, check_images, describe_resize, resize_images


def download_checked(url: str, name: str, accept, fix: str) -> str:
    """Fetch ``url`` into the cache folder as ``name`` once. ``accept(sha256)`` returns None for
    the published file, else why not: then the download is removed and refused, so only a
    complete, checked file ever appears under the final name. Returns the local path."""
    path = cache_dir() / name
    if path.is_file():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        try:
            urllib.request.urlretrieve(url, partial)
        except OSError as exc:
            raise MetricsError(f"could not download {url} ({exc}); {fix}") from None
        problem = accept(sha256_of(partial))
        if problem:
            raise MetricsError(f"the file downloaded from {url} {problem}; refused and removed (retry, or check the URL)")
    return str(path)


class PretrainedFeatures:
    """uint8 (N, H, W, C) images -> (N, ``dim``) float64 features of ``self.net`` (eval mode).

    Images are resized to ``input_size`` with :data:`RESIZER` (float32 in [0, 255]), gray ones
    repeated to RGB, mapped by :meth:`normalize` to the net's input range, and run in batches
    of ``batch_size`` without gradients. Subclasses set ``net``, ``info`` and the class fields.
    """

    name = "pretrained"
    dim = 0
    input_size = 224
    resizer = RESIZER
    batch_size = 32

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) float32 in [0, 255] -> the net's input, still channels last."""
        raise NotImplementedError

    def describe_resize(self, image_shape):
        """One line naming the resize applied to images of ``image_shape`` (N, H, W, C)."""
        return describe_resize(image_shape, self.input_size)

    def __call__(self, images):
        images = check_images(images)
        feats = np.empty((images.shape[0], self.dim), np.float64)
        with paddle.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                batch = resize_images(images[start:start + self.batch_size], self.input_size)
                if batch.shape[-1] == 1:
                    batch = np.repeat(batch, 3, axis=-1)
                x = np.ascontiguousarray(self.normalize(batch).transpose(0, 3, 1, 2), dtype=np.float32)
                feats[start:start + len(batch)] = self.net(paddle.to_tensor(x)).reshape([len(batch), -1]).numpy()
        return feats


def weights_path(given, env: str, default_name: str):
    """The weights file to use: ``given``, else $``env``, else ``default_name`` in the cache when there."""
    if given:
        return given
    if os.environ.get(env):
        return os.environ[env]
    cached = cache_dir() / default_name
    return str(cached) if cached.is_file() else None
