"""Training images: where they come from, and a resumable, seeded batch order.

Every source ends as one uint8 array (N, H, W, C) (memory-mapped when it comes from disk);
batches leave as float32 (N, C, H, W) in [-1, 1] on the training device.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import paddle

from safe_files import cache_dir
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.images import check_image_array, match_channels

BUILTIN_PREFIX = "builtin:"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


@dataclass
class ImageData:
    """Training images as uint8 (N, H, W, C) plus where they came from, and their class labels
    int64 (N,) and class names (by label) when the source has classes."""

    images: np.ndarray
    description: str
    labels: np.ndarray | None = None
    class_names: list | None = None

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def prepare_root_of(run_dir: str) -> str:
    """Where raw ``--data`` folders and archives are prepared for a run: ``.prepared/`` beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(run_dir)), ".prepared")


def load_npy(path: str, size: int | None = None) -> ImageData:
    """A packed uint8 (N, H, W, C) ``.npy`` array, memory-mapped; with ``size``, its images
    must be ``size`` x ``size``."""
    images = check_image_array(np.load(path, mmap_mode="r"), path)
    if size is not None and images.shape[1:3] != (size, size):
        raise GanKitError(
            f"{path} holds {images.shape[1]}x{images.shape[2]} images but --size is {size}; "
            f"pass --size {images.shape[1]} or prepare {size}px images with python -m data_prep"
        )
    return ImageData(images, f"{path} ({len(images)} images)")


def is_builtin_gems(data: str | None) -> bool:
    """Whether a ``--data`` value names the embedded procedural gems (the cut judge's data)."""
    return data is None or data == BUILTIN_PREFIX + "gems"


def load_images(data: str | None, size: int, fit: str = "crop", gems_count: int = 8192,
                prepare_root: str | None = None, progress: bool = True) -> ImageData:
    """Resolve a ``--data`` value to square images of side ``size``.

    ``None`` is the embedded procedural gem set; ``builtin:mnist`` / ``builtin:fashion_mnist``
    name packaged datasets; a ``data_prep`` directory or an ``.npy`` array is used as is; an
    image folder or a zip/tar archive is prepared once into ``prepare_root`` (reused later;
    default: the cache directory).
    """
    if is_builtin_gems(data):
        from data_prep import gems

        images = gems.builtin_gems(size, n=gems_count, seed=0)
        return ImageData(images, f"builtin procedural gems ({gems_count} images, {size}px)",
                         gems.gem_cuts(gems_count), list(gems.CUTS))
    if data.startswith(BUILTIN_PREFIX):
        name = data[len(BUILTIN_PREFIX):]
        from data_prep import builtin

        images, labels = builtin.load_builtin(name, size)
        return ImageData(check_image_array(images, data), f"{data} ({len(images)} images)", labels,
                         list(builtin.class_names(name)))

    path = os.path.expanduser(data)
    if not os.path.exists(path):
        raise GanKitError(
            f"--data {data} does not exist; give a folder of images, a zip/tar archive, a "
            "prepared data_prep directory or an .npy array (or leave it out for the built-in gems)"
        )
    if path.endswith(".npy") and os.path.isfile(path):
        return load_npy(path, size)
    import data_prep

    if os.path.isdir(path) and data_prep.is_prepared(path):
        images, labels = data_prep.load_prepared(path, size)
        return _checked(ImageData(check_image_array(images, path), f"prepared {path}/{size}", labels,
                                  data_prep.class_names(path) if labels is not None else None), path)
    if os.path.isdir(path) or path.lower().endswith(ARCHIVE_SUFFIXES):
        root = prepare_root or str(cache_dir() / "prepared")
        target = os.path.join(root, _prepared_name(path, fit))
        data_prep.prepare(path, target, [size], fit=fit, progress=progress)
        images, labels = data_prep.load_prepared(target, size)
        return _checked(ImageData(check_image_array(images, path), f"{path} prepared into {target}", labels,
                                  data_prep.class_names(target) if labels is not None else None), path)
    raise GanKitError(
        f"--data {data} is a file data_prep cannot read; give a folder, a .zip/.tar/.tar.gz "
        "archive, a prepared directory or an .npy array"
    )


def _checked(data: ImageData, origin: str) -> ImageData:
    if len(data) == 0:
        raise GanKitError(
            f"{origin} has no decodable image (see the skipped files in the prepared manifest.json); "
            "point --data at JPEG/PNG/BMP/WebP images"
        )
    return data


def _prepared_name(path: str, fit: str) -> str:
    """A stable cache folder name: the source's base name plus a hash of its absolute path."""
    absolute = os.path.abspath(path)
    digest = hashlib.sha1(f"{absolute}|{fit}".encode()).hexdigest()[:10]
    base = os.path.basename(absolute.rstrip(os.sep)) or "data"
    return f"{base}-{fit}-{digest}"


class BatchOrder:
    """Seeded, resumable order of batches: epoch e is a permutation drawn from (seed, e).

    The state is just ``(epoch, position)``, so a resumed run draws exactly the batches the
    uninterrupted run would have drawn. The last incomplete batch of an epoch is dropped.
    With ``world_size > 1`` each rank takes every ``world_size``-th batch of the same order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        per_epoch = n // (batch_size * world_size)
        if per_epoch < 1:
            raise GanKitError(
                f"the dataset has {n} images, fewer than one batch of {batch_size * world_size}; "
                "lower --batch-size or add images"
            )
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = per_epoch
        self.epoch, self.position = 0, 0
        self._perm_epoch, self._perm = -1, None

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self.epoch:
            self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            self._perm_epoch = self.epoch
        return self._perm

    def next_indices(self) -> np.ndarray:
        """Sorted indices of the next batch (sorted: memory-mapped reads stay sequential)."""
        global_batch = self.position * self.world_size + self.rank
        start = global_batch * self.batch_size
        indices = np.sort(self._permutation()[start:start + self.batch_size])
        self.position += 1
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        return indices

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def set_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.position >= self.batches_per_epoch:  # resumed on a smaller dataset
            self.epoch, self.position = self.epoch + 1, 0


def to_tensor_batch(images_uint8: np.ndarray, channels: int):
    """uint8 (N, H, W, C) -> float32 tensor (N, channels, H, W) in [-1, 1] on the current device.

    The uint8 array crosses to the device and is converted there (4x less to copy than float32).
    Grayscale data is repeated to 3 channels, or colour turned to luma, when ``channels`` asks.
    """
    images_uint8 = match_channels(np.ascontiguousarray(images_uint8), channels)
    x = paddle.to_tensor(images_uint8)  # (N, H, W, C) uint8
    return x.astype("float32").transpose([0, 3, 1, 2]) / 127.5 - 1.0  # (N, C, H, W)
