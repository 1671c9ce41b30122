"""Reading image files out of a folder, a zip or a tar archive, without extracting anything.

Archives are untrusted: members are read into memory one at a time and never written to disk,
so absolute paths, ``..`` components, symlinks and hardlinks cannot reach outside the output
directory. Such members are still listed (as skipped, with the reason) so nothing disappears
silently. Uncompressed sizes are capped per member and in total to stop archive bombs.
"""
from __future__ import annotations

import os
import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from data_prep.errors import DataPrepError

DEFAULT_MAX_TOTAL_BYTES = 4 * 1024**3
DEFAULT_MAX_ENTRY_BYTES = 256 * 1024**2

# Files that operating systems scatter into folders and archives; they are never images.
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass
class SourceFile:
    """One file found in a source.

    ``path`` is '/'-separated and relative to the source root; ``data`` is the file's bytes,
    or None when the file is not read, in which case ``skip_reason`` says why.
    """

    path: str
    data: bytes | None
    skip_reason: str | None = None


def _mib(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


def decode_name(raw: bytes, encodings: tuple[str, ...] = ("utf-8", "gbk")) -> str:
    """Turn raw file-name bytes into text: the first of ``encodings`` that fits (by default
    UTF-8, else GBK as Chinese Windows writes), else UTF-8 with escapes."""
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="backslashreplace")


def _raw_zip_name(info: zipfile.ZipInfo) -> bytes | None:
    """The name bytes of a member written without the UTF-8 flag (None if it has the flag)."""
    if info.flag_bits & 0x800:
        return None
    # Without the flag Python decodes as cp437, which mangles the GBK names that Chinese
    # Windows writes; encoding back to cp437 recovers the bytes.
    try:
        return info.filename.encode("cp437")
    except UnicodeEncodeError:
        return None


def _zip_encodings(infos: list[zipfile.ZipInfo]) -> tuple[str, ...]:
    """Guess the encoding of an archive's unflagged names once for the whole archive: short
    GBK names can be valid UTF-8 by chance ('图片' reads as 'ͼƬ'), but one tool wrote them all."""
    raws = [raw for raw in map(_raw_zip_name, infos) if raw is not None]

    def fits(raw: bytes, encoding: str) -> bool:
        try:
            raw.decode(encoding)
            return True
        except UnicodeDecodeError:
            return False

    if not all(fits(raw, "utf-8") for raw in raws) and all(fits(raw, "gbk") for raw in raws):
        return ("gbk", "utf-8")
    return ("utf-8", "gbk")


def _fs_name(name: str, encodings: tuple[str, ...] = ("utf-8", "gbk")) -> str:
    # tarfile and os.walk hand undecodable bytes over as surrogate escapes.
    return decode_name(name.encode("utf-8", errors="surrogateescape"), encodings)


def unsafe_path_reason(name: str) -> str | None:
    """Why an archive member name could escape the target directory, or None if it cannot."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path in archive (not extracted)"
    if ".." in re.split(r"[\\/]", name):
        return "'..' in archive path (not extracted)"
    return None


def _clean(name: str) -> str:
    parts = [p for p in re.split(r"[\\/]", name) if p not in ("", ".")]
    return "/".join(parts)


def _system_file_reason(path: str) -> str | None:
    parts = path.split("/")
    base = parts[-1]
    if "__MACOSX" in parts or base.startswith("._") or base.lower() in _SYSTEM_FILES:
        return "operating-system metadata file, not an image"
    return None


class Source:
    """A folder, zip or tar (plain, .gz, .bz2, .xz) to read image files from.

    Iterating yields :class:`SourceFile` in the source's own order. ``kind`` is "folder",
    "zip" or "tar"; ``count()`` is the number of files, or None when only a full pass over a
    compressed tar could tell.
    """

    def __init__(self, path: str | os.PathLike, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES):
        self.path = Path(path).expanduser()
        self.max_total_bytes = int(max_total_bytes)
        self.max_entry_bytes = int(max_entry_bytes)
        if not self.path.exists():
            raise DataPrepError(f"source {self.path} does not exist; pass a folder or a "
                                f".zip/.tar/.tar.gz archive of images")
        if self.path.is_dir():
            self.kind = "folder"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        elif _is_tar(self.path):
            self.kind = "tar"
        else:
            raise DataPrepError(f"source {self.path} is neither a folder nor a zip/tar archive; "
                                f"pass the folder of images or the archive that holds them")

    def count(self) -> int | None:
        """Number of files the source lists (None for tar archives, which stream)."""
        if self.kind == "folder":
            return sum(len(files) for _, _, files in os.walk(self.path))
        if self.kind == "zip":
            with zipfile.ZipFile(self.path) as zf:
                return sum(1 for info in zf.infolist() if not info.is_dir())
        return None

    def __iter__(self) -> Iterator[SourceFile]:
        if self.kind == "folder":
            return self._iter_folder()
        if self.kind == "zip":
            return self._iter_zip()
        return self._iter_tar()

    def _too_big(self, path: str, size: int) -> DataPrepError:
        return DataPrepError(
            f"archive member {path} is {_mib(size)} uncompressed, above the per-file limit of "
            f"{_mib(self.max_entry_bytes)}; if you trust the archive raise --max-entry-mb")

    def _total_too_big(self, total: int) -> DataPrepError:
        return DataPrepError(
            f"archive {self.path.name} holds more than {_mib(self.max_total_bytes)} uncompressed "
            f"(at least {_mib(total)}); if you trust the archive raise --max-total-mb")

    def _iter_folder(self) -> Iterator[SourceFile]:
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            rel_root = Path(root).relative_to(self.path)
            for name in sorted(dirs):
                full = Path(root, name)
                if full.is_symlink():  # os.walk does not descend into them: say so
                    yield SourceFile(_fs_name(str(rel_root / name)).replace(os.sep, "/"),
                                     None, "symlinked folder (not followed)")
            for name in sorted(files):
                full = Path(root, name)
                rel = _clean(_fs_name(str(rel_root / name)).replace(os.sep, "/"))
                reason = _system_file_reason(rel)
                if reason is None and not full.is_file():
                    reason = "not a regular file"
                if reason is not None:
                    yield SourceFile(rel, None, reason)
                    continue
                try:
                    data = full.read_bytes()
                except OSError as exc:
                    yield SourceFile(rel, None, f"unreadable: {exc.strerror or exc}")
                    continue
                yield SourceFile(rel, data)

    def _iter_zip(self) -> Iterator[SourceFile]:
        try:
            zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataPrepError(f"cannot open zip {self.path}: {exc}; check the download") from None
        with zf:
            infos = [info for info in zf.infolist() if not info.is_dir()]
            # The central directory declares every size up front: refuse a bomb before reading.
            total = sum(info.file_size for info in infos)
            if total > self.max_total_bytes:
                raise self._total_too_big(total)
            encodings = _zip_encodings(infos)
            for info in infos:
                raw = _raw_zip_name(info)
                raw_name = info.filename if raw is None else decode_name(raw, encodings)
                path = _clean(raw_name)
                reason = unsafe_path_reason(raw_name)
                if reason is not None:
                    yield SourceFile(raw_name, None, reason)  # listed as written, to be found
                    continue
                reason = _system_file_reason(path)
                if reason is None and stat.S_ISLNK(info.external_attr >> 16):
                    reason = "symlink in archive (not followed)"
                if reason is None and info.flag_bits & 0x1:
                    reason = "encrypted archive member"
                if reason is not None:
                    yield SourceFile(path, None, reason)
                    continue
                if info.file_size > self.max_entry_bytes:
                    raise self._too_big(path, info.file_size)
                try:
                    with zf.open(info) as fh:
                        # Read one byte past the limit so a member lying about its size is caught.
                        data = fh.read(self.max_entry_bytes + 1)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                        OSError) as exc:
                    yield SourceFile(path, None, f"corrupt archive member: {exc}")
                    continue
                if len(data) > self.max_entry_bytes:
                    raise self._too_big(path, len(data))
                yield SourceFile(path, data)

    def _iter_tar(self) -> Iterator[SourceFile]:
        try:
            tf = tarfile.open(self.path, mode="r:*", encoding="utf-8", errors="surrogateescape")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataPrepError(f"cannot open tar {self.path}: {exc}; check the download") from None
        total = 0
        last = "<start of archive>"
        encodings = ("utf-8", "gbk")
        with tf:
            members = iter(tf)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    return
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    # A truncated or damaged stream: what came before is usable, the rest is
                    # lost. Report it as one skipped pseudo-entry rather than crash.
                    yield SourceFile(f"{self.path.name}:after:{last}", None,
                                     f"archive damaged or truncated here, rest unreadable: {exc}")
                    return
                if member.isdir():
                    continue
                raw_name = _fs_name(member.name, encodings)
                if encodings[0] == "utf-8" and raw_name != _fs_name(member.name, ("utf-8",)):
                    # A name that only GBK explains: the archive's writer used GBK, so prefer it
                    # for the names that follow (tar streams; no look-ahead as in zip).
                    encodings = ("gbk", "utf-8")
                path = _clean(raw_name)
                last = path
                reason = unsafe_path_reason(raw_name)
                if reason is not None:
                    yield SourceFile(raw_name, None, reason)  # listed as written, to be found
                    continue
                reason = _system_file_reason(path)
                if reason is None and member.issym():
                    reason = "symlink in archive (not followed)"
                if reason is None and member.islnk():
                    reason = "hardlink in archive (not followed)"
                if reason is None and not member.isfile():
                    reason = "not a regular file"
                if reason is not None:
                    yield SourceFile(path, None, reason)
                    continue
                if member.size > self.max_entry_bytes:
                    raise self._too_big(path, member.size)
                total += member.size
                if total > self.max_total_bytes:
                    raise self._total_too_big(total)
                try:
                    fh = tf.extractfile(member)
                    data = fh.read() if fh is not None else b""
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    yield SourceFile(path, None, f"archive damaged or truncated in this member, "
                                                 f"the rest is unreadable: {exc}")
                    return
                yield SourceFile(path, data)


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error, tarfile.TarError):
        return False
