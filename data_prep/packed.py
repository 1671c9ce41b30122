"""The on-disk layout of a prepared dataset, and the only code that reads or writes it.

```
DIR/manifest.json          every source file, the settings, and "complete": true when done
DIR/<size>/images.npy      uint8 (N, size, size, C), memory-mapped by the trainer
DIR/<size>/labels.npy      int64 (N,) class ids, only when the source has class folders
DIR/<size>/png/000000.png  PNG copies, only on request
```
Arrays are written under temporary names and moved into place with ``os.replace``; the manifest
is marked incomplete before the first array is replaced and complete after the last, so an
interrupted run can never be mistaken for a finished dataset.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from data_prep.errors import DataPrepError
from safe_files import TMP_MARK, atomic_path, encode_png, tmp_name, write_text_atomic

MANIFEST = "manifest.json"
FORMAT = "data_prep/1"


def _dumps(data: dict) -> str:
    # One line per source entry: a manifest of 10,000 files stays readable and diffable.
    head = {k: v for k, v in data.items() if k != "entries"}
    text = json.dumps(head, ensure_ascii=False, indent=1)
    if "entries" not in data:
        return text + "\n"
    rows = ",\n  ".join(json.dumps(e, ensure_ascii=False) for e in data["entries"])
    body = f'"entries": [\n  {rows}\n ]' if rows else '"entries": []'
    return (text[:-2] + ",\n " if head else "{\n ") + body + "\n}\n"


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to ``path`` atomically (``files.atomic_path``)."""
    write_text_atomic(path, _dumps(data))


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The manifest of ``out`` as a dict, or None if there is none or it is not ours."""
    path = Path(out).expanduser() / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return data


def images_path(out: str | os.PathLike, size: int) -> Path:
    """Where the packed (N, size, size, C) uint8 array of ``size`` lives."""
    return Path(out).expanduser() / str(size) / "images.npy"


def labels_path(out: str | os.PathLike, size: int) -> Path:
    """Where the (N,) int64 labels of ``size`` live (absent for unlabelled datasets)."""
    return Path(out).expanduser() / str(size) / "labels.npy"


def png_dir(out: str | os.PathLike, size: int) -> Path:
    """Where the optional PNG copies of ``size`` live."""
    return Path(out).expanduser() / str(size) / "png"


def _array_problem(out: Path, size: int, manifest: dict) -> str | None:
    count, channels = manifest["count"], manifest["channels"]
    try:
        images = np.load(images_path(out, size), mmap_mode="r")
    except (OSError, ValueError) as exc:
        return f"{images_path(out, size)} is missing or unreadable ({exc})"
    if images.shape != (count, size, size, channels) or images.dtype != np.uint8:
        return (f"{images_path(out, size)} has shape {images.shape}, the manifest says "
                f"{(count, size, size, channels)}")
    if manifest.get("classes"):
        try:
            labels = np.load(labels_path(out, size), mmap_mode="r")
        except (OSError, ValueError) as exc:
            return f"{labels_path(out, size)} is missing or unreadable ({exc})"
        if labels.shape != (count,):
            return f"{labels_path(out, size)} has {labels.shape[0]} labels for {count} images"
    return None


def is_prepared(out: str | os.PathLike) -> bool:
    """True if ``out`` holds a complete prepared dataset (every listed size consistent)."""
    out = Path(out).expanduser()
    manifest = read_manifest(out)
    if manifest is None or not manifest.get("complete"):
        return False
    return all(_array_problem(out, size, manifest) is None for size in manifest["sizes"])


def class_names(out: str | os.PathLike) -> list[str] | None:
    """The class names of a prepared dataset by label (its class folders), or None without classes."""
    import json

    with open(Path(out).expanduser() / MANIFEST, encoding="utf-8") as f:
        return json.load(f).get("classes") or None


def load_prepared(out: str | os.PathLike, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Open a prepared dataset: images as a read-only memmap uint8 (N, size, size, C) in
    [0, 255], and int64 (N,) labels (None when the source had no class folders)."""
    out = Path(out).expanduser()
    command = f"python -m data_prep SRC --out {out} --sizes {size}"
    manifest = read_manifest(out)
    if manifest is None:
        raise DataPrepError(f"{out} is not a prepared dataset (no {MANIFEST}); prepare it with "
                            f"`{command}`")
    if not manifest.get("complete"):
        raise DataPrepError(f"{out} was not finished (the last run was interrupted); re-run "
                            f"`python -m data_prep {manifest.get('source', 'SRC')} --out {out}`")
    sizes = manifest["sizes"]
    if size not in sizes:
        have = ", ".join(map(str, sizes))
        raise DataPrepError(f"{out} has sizes {have} but not {size}; add it with "
                            f"`python -m data_prep {manifest.get('source', 'SRC')} --out {out} "
                            f"--sizes {size}`")
    problem = _array_problem(out, size, manifest)
    if problem is not None:
        raise DataPrepError(f"{problem}; rebuild with `python -m data_prep "
                            f"{manifest.get('source', 'SRC')} --out {out} --force`")
    images = np.load(images_path(out, size), mmap_mode="r")
    labels = np.load(labels_path(out, size)) if manifest.get("classes") else None
    return images, labels


def write_pngs(out: str | os.PathLike, size: int, images: np.ndarray) -> None:
    """Replace ``out/<size>/png/`` with one PNG per image of uint8 (N, size, size, C)."""
    final = png_dir(out, size)
    old = tmp_name(final.with_name("png-old"))
    with atomic_path(final) as tmp:
        tmp.mkdir(parents=True)
        for i, img in enumerate(images):
            (tmp / f"{i:06d}.png").write_bytes(encode_png(img))
        if final.exists():
            os.replace(final, old)  # a full folder cannot be replaced in one rename
    shutil.rmtree(old, ignore_errors=True)


def remove_size(out: Path, size: int) -> None:
    """Delete the files this tool wrote for ``size`` (and the folder if nothing else is left)."""
    for path in (images_path(out, size), labels_path(out, size)):
        path.unlink(missing_ok=True)
    shutil.rmtree(png_dir(out, size), ignore_errors=True)
    try:
        (out / str(size)).rmdir()
    except OSError:
        pass


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files left by a killed run (they never hold a finished array)."""
    for path in list(out.glob(f"*{TMP_MARK}*")) + list(out.glob(f"*/*{TMP_MARK}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
