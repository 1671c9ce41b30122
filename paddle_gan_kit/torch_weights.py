"""Read a PyTorch ``.pth`` state dict into numpy arrays, without torch and without running code.

Published weights (torchvision's MobileNetV2, pytorch-fid's Inception) are ``torch.save``
files: pickles whose tensors point at raw storages, either in the legacy stream format or in a
zip archive (``archive/data.pkl`` + ``archive/data/<key>``). A pickle can run any code, so this
reader admits exactly the globals a state dict needs (``collections.OrderedDict``, torch's
tensor-rebuild functions and storage types, which it replaces by its own numpy builders) and
refuses every other one with one line. Storages are read as raw little-endian arrays.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile

import numpy as np

from paddle_gan_kit.errors import GanKitError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": None,
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only its dtype matters."""

    def __init__(self, name: str):
        if _STORAGE_DTYPES.get(name) is None:
            raise _Refused(f"torch.{name} (this reader takes float, int and bool storages)")
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """A storage named in the pickle; its data arrive after (legacy) or beside (zip) it."""

    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.data = dtype, int(numel), None


class _Tensor:
    """A tensor of the pickle: a view of a storage whose bytes may come later (legacy format)."""

    def __init__(self, storage, offset, size, stride, *unused):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def array(self) -> np.ndarray:
        storage = self.storage
        if storage.data is None:
            raise ValueError("a tensor's storage has no data")
        if self.size and (min(self.stride) < 0 or self.offset
                          + sum((n - 1) * s for n, s in zip(self.size, self.stride)) >= storage.numel):
            raise ValueError("a tensor reaches outside its storage")
        item = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(storage.data[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.array(view)  # a contiguous copy


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


def _arrays(value):
    """The loaded object with every tensor made a numpy array."""
    if isinstance(value, _Tensor):
        return value.array()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    return value


class _Refused(Exception):
    pass


class _OrderedDict(dict):
    """Stands in for ``collections.OrderedDict`` (torch sets a ``_metadata`` attribute on it)."""


_GLOBALS = {
    ("collections", "OrderedDict"): _OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
    ("torch._utils", "_rebuild_tensor"): _Tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict, data_of=None):
        super().__init__(file)
        self.storages, self.data_of = storages, data_of

    def find_class(self, module, name):
        if (module, name) in _GLOBALS:
            return _GLOBALS[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise ValueError(f"unexpected persistent id {pid!r:.80}")
        key = str(pid[2])
        if key not in self.storages:
            self.storages[key] = _Storage(pid[1].dtype, pid[4])
            if self.data_of is not None:  # zip: the storage's bytes are a member of the archive
                self.storages[key].data = self.data_of(key, self.storages[key])
        return self.storages[key]


def _raw(data: bytes, storage: _Storage, where: str) -> np.ndarray:
    need = storage.numel * storage.dtype.itemsize
    if len(data) < need:
        raise ValueError(f"storage {where} is truncated")
    return np.frombuffer(data[:need], dtype=storage.dtype.newbyteorder("<"))


def _load_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ValueError("a zip archive without data.pkl")
        prefix = pickles[0][: -len("data.pkl")]

        def data_of(key, storage):
            return _raw(archive.read(f"{prefix}data/{key}"), storage, key)

        return _Unpickler(io.BytesIO(archive.read(pickles[0])), {}, data_of).load()


def _load_legacy(path: str) -> dict:
    with open(path, "rb") as f:
        if pickle.load(f) != _LEGACY_MAGIC:  # the magic number, protocol and sys info are plain ints and dicts
            raise ValueError("not a torch.save file")
        pickle.load(f)
        info = pickle.load(f)
        if isinstance(info, dict) and not info.get("little_endian", True):
            raise ValueError("a big-endian file")
        storages: dict = {}
        result = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", f.read(8))
            if count != storage.numel:
                raise ValueError(f"storage {key} holds {count} elements, the tensor says {storage.numel}")
            storage.data = _raw(f.read(count * storage.dtype.itemsize), storage, str(key))
    return result


def is_torch_file(path: str) -> bool:
    """True for a ``torch.save`` file: a zip archive, or a stream starting with torch's magic number."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        head = f.read(16)
    return head[2:4] == b"\x8a\x0a" and head[4:14] == _LEGACY_MAGIC.to_bytes(10, "little")


def read_state_dict(path: str) -> dict:
    """``{name: numpy array}`` from a PyTorch ``.pth`` state dict (legacy or zip format).
    A pickle with any global other than a state dict's is refused in one line, unrun."""
    try:
        loaded = _arrays(_load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path))
    except _Refused as refused:
        raise GanKitError(f"{path} holds a pickled {refused}, which a weights file never needs; refusing to "
                          "load it (a pickle can run code): use the published file") from None
    except FileNotFoundError:
        raise GanKitError(f"weights file {path} does not exist; check the path") from None
    except Exception as exc:  # a damaged or foreign file makes the readers raise many types
        raise GanKitError(f"{path} is not a readable PyTorch state dict ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); use the published file") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, np.ndarray) for v in loaded.values()):
        raise GanKitError(f"{path} holds no state dict of tensors; use the published weights file")
    return loaded


def checked_weights(path, what: str, name: str, sha256: str | None, fix: str, error=GanKitError,
                    owner: str | None = None) -> str:
    """The sha256 of ``path`` when it is ``owner``'s published ``name``, the weights of ``what``
    (any file when ``sha256`` is None); else one line (``error``) saying what is wrong and ``fix``."""
    from safe_files import sha256_of

    if not path:
        raise error(f"no {what} weights given; {fix}")
    if not os.path.isfile(path):
        raise error(f"{what} weights file not found: {path}; {fix}")
    sha = sha256_of(path)
    if sha256 is not None and sha != sha256:
        raise error(f"{path} has sha256 {sha[:16]}..., not {owner or what}'s {name} ({sha256[:16]}...); refusing it: "
                    f"{fix}")
    return sha
