"""Files written so that nothing complete is ever lost, and the one cache directory: the
lowest layer of the project, which ``data_prep`` and ``paddle_gan_kit`` both import (it imports
neither, and no Paddle).

Every file this project writes for keeps (snapshots, sample grids, GIFs, JSON results, prepared
arrays, cache entries) goes through :func:`atomic_path`: it is written under a temporary sibling
name ``<name>.tmp-<pid>``, flushed to disk and moved over the final name with ``os.replace``, so
a reader (or a crash at any instant) sees the old file or the new one, never half of one. A full
disk removes the partial file and raises :class:`NoSpaceError` with the bytes needed and free.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from safe_files.errors import NoSpaceError

TMP_MARK = ".tmp-"
CACHE_ENV = "PADDLE_GAN_KIT_CACHE"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def cache_dir() -> Path:
    """Where generated and downloaded data is cached: $PADDLE_GAN_KIT_CACHE or ~/.cache/paddle_gan_kit."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/paddle_gan_kit").expanduser()


def tmp_name(path: str | os.PathLike) -> Path:
    """A sibling temporary name for ``path``, unique to this process."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


def remove_if_orphaned(path: Path) -> None:
    """Delete a temporary file whose writing process (named in its suffix) no longer runs."""
    try:
        pid = int(path.name.rsplit(TMP_MARK, 1)[1])
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
    except (ValueError, IndexError, PermissionError, OSError):
        pass  # not ours to judge, or the process is alive


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes free for this user on the filesystem holding ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def is_no_space(exc: BaseException) -> bool:
    """True for the OSErrors of a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


def mib(n_bytes: float) -> str:
    """A byte count for a message: ``12.3 MB``."""
    return f"{n_bytes / 1e6:.1f} MB"


def no_space_error(path: str | os.PathLike, needed: int | None = None, fix: str | None = None) -> NoSpaceError:
    """The one-line error of a full disk while writing ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    need = f"{mib(needed)} needed, " if needed else ""
    fix = fix or "free some space (or write elsewhere) and run the command again"
    return NoSpaceError(f"no space left on the disk of {folder} to write {os.path.basename(path)} "
                        f"({need}{mib(free_bytes(folder))} free); nothing complete was lost: {fix}")


def _fsync_dir(folder: str) -> None:
    try:  # make the rename itself durable
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, needed: int | None = None, fix: str | None = None):
    """Yield a temporary path beside ``path``; when the block succeeds, move it over ``path``.

    The caller writes the temporary file (or folder) any way it likes and should flush it;
    files are fsynced here before the rename. On any failure the temporary is removed and the
    old ``path`` stays untouched; a full disk becomes :class:`NoSpaceError` (``needed``: the
    bytes the file takes, for the message; ``fix``: what the user should do).
    """
    final = Path(path)
    tmp = tmp_name(final)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except OSError as exc:
        if is_no_space(exc):
            _remove(tmp)
            raise no_space_error(final, needed, fix) from None
        raise
    finally:
        _remove(tmp)
    _fsync_dir(os.path.dirname(os.path.abspath(final)))


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_array(path: str | os.PathLike, shape: tuple, dtype=None):
    """A new ``.npy`` file of ``shape`` opened as a writable memmap, its blocks allocated first:
    a full disk raises ENOSPC here instead of killing the process with SIGBUS when a page of the
    map is written later."""
    import numpy as np

    dtype = np.dtype(dtype or np.uint8)
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "rb+") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return array


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fix: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, needed=len(data), fix=fix) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, fix: str | None = None) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    write_bytes_atomic(path, text.encode("utf-8"), fix=fix)


def encode_png(image) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) RGB or (H, W, 1)/(H, W) gray image."""
    import cv2
    import numpy as np

    image = np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = image[..., ::-1]  # OpenCV encodes BGR
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image of shape {image.shape} as PNG")
    return encoded.tobytes()


def write_png(path: str | os.PathLike, image, fix: str | None = None) -> None:
    """Write a uint8 RGB or gray image as a PNG file, atomically."""
    write_bytes_atomic(path, encode_png(image), fix=fix)
