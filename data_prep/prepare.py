"""``prepare()``: turn a folder or archive of images into a prepared dataset directory.

Flow: list the source files (sources.py) → hash each file; files already in the manifest are
reused → decode and fit the rest in worker processes (decode.py, fit.py) → de-duplicate on the
decoded pixels → write the packed arrays and then the manifest (packed.py).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

import safe_files as files
from data_prep import packed
from data_prep.decode import UndecodableImage, decode_image
from data_prep.errors import DataPrepError, UserError
from data_prep.fit import check_options, check_sizes, fit_square
from data_prep.sources import DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TOTAL_BYTES, Source
from data_prep.workers import process_pool

# Below this many files a process pool costs more to start than it saves.
_INLINE_MAX_FILES = 64
_BATCH_FILES = 32
_BATCH_BYTES = 16 * 1024**2


@dataclass
class PrepareReport:
    """What one ``prepare()`` run did. Counts are of source files; ``channels`` is 1 or 3."""

    out: Path
    sizes: list[int]
    kept: int
    duplicates: int
    skipped: int
    reused: int  # files found unchanged in the manifest, not decoded again
    decoded: int  # files decoded in this run
    seconds: float
    channels: int
    classes: list[str] = field(default_factory=list)
    skipped_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Files decoded and fitted per second of wall time in this run."""
        return self.decoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines for the end of the command."""
        speed = (f"decoded {self.decoded} at {self.images_per_second:.0f} images/s"
                 if self.decoded else "nothing new to decode")
        lines = [f"kept {self.kept}, duplicates {self.duplicates}, skipped {self.skipped} in "
                 f"{self.seconds:.1f} s; {speed}, {self.reused} unchanged files not redone",
                 f"sizes {' '.join(map(str, self.sizes))}, {self.channels} channel(s), "
                 f"{len(self.classes) or 'no'} classes → {self.out}"]
        for reason, count in sorted(self.skipped_reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  skipped {count}: {reason}")
        return "\n".join(lines)


def parse_color(value) -> tuple[int, int, int]:
    """An RGB colour from (r, g, b), "r,g,b", "#rrggbb", "white", "black" or "gray"."""
    names = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128),
             "grey": (128, 128, 128)}
    try:
        if isinstance(value, str):
            text = value.strip().lower()
            if text in names:
                return names[text]
            if text.startswith("#") and len(text) == 7:
                return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
            value = [int(part) for part in text.split(",")]
        rgb = tuple(int(v) for v in value)
        if len(rgb) == 3 and all(0 <= v <= 255 for v in rgb):
            return rgb
    except (TypeError, ValueError):
        pass
    raise DataPrepError(f"bad colour {value!r}; use r,g,b with values 0-255 (e.g. 255,255,255), "
                        f"#rrggbb, white, black or gray")


# ---------------------------------------------------------------------------------------------
# Work done in the worker processes.

def _init_worker() -> None:
    # Ctrl-C goes to the whole process group; only the parent should react and clean up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One OpenCV thread per process: the parallelism comes from the processes.
    cv2.setNumThreads(1)


def _is_gray(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[:, :, 0], rgb[:, :, 1])
                and np.array_equal(rgb[:, :, 0], rgb[:, :, 2]))


def _process_batch(batch: list[bytes], settings: tuple) -> list[dict]:
    """Decode and fit each file's bytes; one dict per file, with "reason" if unusable."""
    sizes, fit, interp, pad_mode, background = settings
    results = []
    for data in batch:
        try:
            img = decode_image(data, background)
        except UndecodableImage as exc:
            results.append({"reason": str(exc)})
            continue
        gray = img.ndim == 2
        if gray:
            # Fit in RGB so that a pad colour stays that colour; gray-ness is re-checked below.
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        h, w = img.shape[:2]
        pixel_hash = hashlib.sha256(f"{h}x{w}:".encode())
        pixel_hash.update(np.ascontiguousarray(img).data)
        outputs = {size: fit_square(img, size, fit, interp, pad_mode, background)
                   for size in sizes}
        # A gray picture gives gray outputs, so a colourful output settles it cheaply; only
        # pictures whose output looks gray (few, in a colour dataset) get the full check.
        if _is_gray(outputs[sizes[-1]]):
            gray = gray or _is_gray(img)
        else:
            gray = False
        results.append({"width": w, "height": h, "pixel_sha256": pixel_hash.hexdigest(),
                        "gray": gray, "outputs": outputs})
    return results


# ---------------------------------------------------------------------------------------------
# The parent process.

def _label_of(path: str) -> str | None:
    """The class of a file: the name of the folder it sits in (None at the source root)."""
    parts = path.split("/")
    return parts[-2] if len(parts) > 1 else None


def _is_empty_dir(path: Path) -> bool:
    # Our lock file, and the temporary of the manifest that claims the folder, alone mean a first
    # run died right after starting (before that manifest landed): still empty.
    return all(child.name == ".lock" or packed.TMP_MARK in child.name for child in path.iterdir())


@contextlib.contextmanager
def _exclusive(out: Path):
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, run unguarded
        yield
        return
    with open(out / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DataPrepError(f"another data_prep run is writing {out}; wait for it to "
                                f"finish or stop it") from None
        yield


class _Spool:
    """Fitted images of this run, appended to raw files per size: (k, size, size, 3) uint8."""

    def __init__(self, out: Path, sizes: list[int]):
        self.sizes = sizes
        self.count = 0
        self.paths = {s: files.tmp_name(out / str(s) / "spool.raw") for s in sizes}
        self.files = {}
        for size, path in self.paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.files[size] = open(path, "wb")

    def append(self, outputs: dict[int, np.ndarray]) -> int:
        for size in self.sizes:
            self.files[size].write(np.ascontiguousarray(outputs[size]).data)
        self.count += 1
        return self.count - 1

    def arrays(self) -> dict[int, np.ndarray]:
        """Read-only views of everything appended so far."""
        views = {}
        for size in self.sizes:
            self.files[size].flush()
            if self.count:
                views[size] = np.memmap(self.paths[size], np.uint8, "r",
                                        shape=(self.count, size, size, 3))
        return views

    def remove(self) -> None:
        for size in self.sizes:
            self.files[size].close()
            self.paths[size].unlink(missing_ok=True)


def _convert_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if img.shape[-1] == channels:
        return img
    if channels == 1:
        return img[..., :1]  # only reached for gray images, whose three channels are equal
    return np.repeat(img, 3, axis=-1)


def _check_out(out: Path, source: Source) -> dict | None:
    """Refuse an --out that is not ours; return its manifest if it is a dataset."""
    if out.exists() and not out.is_dir():
        raise DataPrepError(f"--out {out} is a file; pass a folder for the prepared dataset")
    if source.kind == "folder" and out.is_relative_to(source.path.resolve()):
        raise DataPrepError(f"--out {out} is inside the source folder {source.path}; put the "
                            f"prepared dataset elsewhere so it is not read back as images")
    if not out.exists():
        return None
    manifest = packed.read_manifest(out)
    if manifest is None and not _is_empty_dir(out):
        raise DataPrepError(f"--out {out} already exists and is not a prepared dataset (no "
                            f"data_prep {packed.MANIFEST}); choose a new or empty folder")
    return manifest


def _reusable(manifest: dict | None, source: Source, settings: dict, sizes: list[int],
              force: bool) -> tuple[dict | None, list[int]]:
    """Decide what an existing manifest allows: (manifest to reuse or None, sizes to write)."""
    if manifest is None or force:
        return None, sizes
    all_sizes = sorted(set(sizes) | set(manifest.get("sizes", [])))
    if not manifest.get("complete"):
        return None, all_sizes  # interrupted run of ours: redo it, nothing to trust
    if manifest.get("source") != str(source.path.resolve()):
        raise DataPrepError(f"{manifest['out']} was prepared from {manifest.get('source')}, "
                            f"not {source.path}; add --force to rebuild it from the new source, "
                            f"or choose another --out")
    for key, value in settings.items():
        if manifest.get(key) != value:
            old = manifest.get(key)
            flag = "--" + key.replace("_", "-")
            raise DataPrepError(
                f"{manifest['out']} was prepared with {flag} {_fmt(old)}, not {_fmt(value)}; "
                f"re-run with {flag} {_fmt(old)} to update it, or add --force to rebuild it")
    if set(all_sizes) != set(manifest["sizes"]):
        return None, all_sizes  # a new size needs every image decoded again
    return manifest, all_sizes


def _fmt(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def prepare(src, out, sizes, fit: str = "crop", interp: str = "area", workers: int | None = None,
            force: bool = False, png: bool = False, background=(255, 255, 255),
            pad_mode: str = "color", progress: bool = True,
            max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
            max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> PrepareReport:
    """Prepare ``src`` (folder, zip, tar[.gz]) into ``out``: ``out/<size>/images.npy`` uint8
    (N, size, size, C) per size, ``labels.npy`` when there are class folders, and
    ``out/manifest.json``.

    Re-runs are incremental; ``force`` redoes everything. ``fit`` is crop|pad|stretch,
    ``interp`` area|lanczos|cubic|linear, ``pad_mode`` color|edge, ``background`` the RGB colour
    behind transparency and padding. Raises DataPrepError for anything the user must fix.
    """
    start = time.perf_counter()
    sizes = check_sizes(sizes)
    check_options(fit, interp, pad_mode)
    background = parse_color(background)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise DataPrepError(f"--workers must be at least 1, got {workers}")
    source = Source(src, max_total_bytes, max_entry_bytes)
    out = Path(out).expanduser().resolve()
    settings = {"fit": fit, "interp": interp, "pad_mode": pad_mode, "background": list(background)}
    manifest = _check_out(out, source)
    if manifest is not None:
        manifest["out"] = str(out)
    old, sizes = _reusable(manifest, source, settings, sizes, force)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _exclusive(out):
            packed.remove_stale_temporaries(out)
            if manifest is None:
                # Claim the folder first, so that a killed first run leaves a folder this tool
                # recognises (and finishes without --force), never one that looks complete.
                packed.write_json_atomic(out / packed.MANIFEST, {
                    "format": packed.FORMAT, "complete": False,
                    "source": str(source.path.resolve()), "sizes": sizes})
            job = _Job(source, out, sizes, settings, old, manifest, workers, png, force)
            try:
                report = _run(job, progress)
            except OSError as exc:
                if not files.is_no_space(exc):
                    raise
                raise files.no_space_error(out, fix="free some space (or choose another --out) "
                                           "and run the same command again") from None
    except UserError:
        # A refused first run leaves the folder as it found it.
        if created:
            shutil.rmtree(out, ignore_errors=True)
        elif manifest is None:
            (out / packed.MANIFEST).unlink(missing_ok=True)
            (out / ".lock").unlink(missing_ok=True)
            for size in sizes:
                with contextlib.suppress(OSError):
                    (out / str(size)).rmdir()  # only if empty
        raise
    report.seconds = time.perf_counter() - start
    return report


@dataclass
class _Job:
    """What one ``prepare()`` call was asked for, fixed before any file is read."""

    source: Source
    out: Path
    sizes: list[int]
    settings: dict  # fit, interp, pad_mode, background: recorded in the manifest
    old: dict | None  # the manifest whose arrays can be reused, if any
    manifest: dict | None  # the manifest found in --out, if any
    workers: int
    png: bool
    force: bool

    @property
    def worker_settings(self) -> tuple:
        s = self.settings
        return (self.sizes, s["fit"], s["interp"], s["pad_mode"], tuple(s["background"]))


class _Preparation:
    """The state of one run over the source: records of every file, where each kept image's
    pixels are (the old arrays or this run's spool), and the batches in flight."""

    def __init__(self, job: _Job, total: int | None, bar):
        self.job, self.bar = job, bar
        self.old_by_sha: dict[str, dict] = {}
        self.old_rows: dict[str, int] = {}  # pixel hash -> row in the old arrays
        if job.old is not None:
            for entry in job.old["entries"]:
                if entry.get("sha256"):
                    self.old_by_sha.setdefault(entry["sha256"], entry)
                if entry["status"] == "kept":
                    self.old_rows[entry["pixel_sha256"]] = entry["index"]
        self.records: list[dict] = []
        self.row_of: dict[str, tuple[str, int]] = {}  # pixel hash -> ("old" | "new", row)
        self.spool = _Spool(job.out, job.sizes)
        self.decoded = 0
        self.inline = job.workers == 1 or (total is not None and total <= _INLINE_MAX_FILES)
        self.pool = None
        self.pending: collections.deque = collections.deque()  # (records, data, future)
        self.batch_records: list[dict] = []
        self.batch_data: list[bytes] = []
        self.batch_bytes = 0

    def add(self, item) -> None:
        """Record one source file: skipped, reused from the old manifest, or queued to decode."""
        record = {"path": item.path, "label": _label_of(item.path)}
        self.records.append(record)
        if item.data is None:
            record["reason"] = item.skip_reason
            self.bar.update(1)
            return
        sha = hashlib.sha256(item.data).hexdigest()
        record["sha256"] = sha
        previous = self.old_by_sha.get(sha)
        if previous is not None and (previous["status"] == "skipped"
                                     or previous.get("pixel_sha256") in self.old_rows):
            for key in ("width", "height", "pixel_sha256", "gray", "reason"):
                if key in previous:
                    record[key] = previous[key]
            record["reused"] = True
            if "reason" not in record:
                self.row_of.setdefault(record["pixel_sha256"], ("old", self.old_rows[record["pixel_sha256"]]))
            self.bar.update(1)
            return
        self.batch_records.append(record)
        self.batch_data.append(item.data)
        self.batch_bytes += len(item.data)
        if len(self.batch_data) >= _BATCH_FILES or self.batch_bytes >= _BATCH_BYTES:
            self.submit()

    def submit(self) -> None:
        """Decode the current batch here, or hand it to the worker pool."""
        if not self.batch_data:
            return
        records, data = self.batch_records, self.batch_data
        self.batch_records, self.batch_data, self.batch_bytes = [], [], 0
        if not self.inline and self.pool is None:
            self.pool = process_pool(self.job.workers, _init_worker)
            self.inline = self.pool is None
        if self.inline:
            self._absorb(records, _process_batch(data, self.job.worker_settings))
            return
        self.pending.append((records, data, self.pool.submit(_process_batch, data, self.job.worker_settings)))
        # Bound the bytes in flight; the archive may be far bigger than memory.
        while len(self.pending) > 2 * self.job.workers:
            self.collect_oldest()

    def collect_oldest(self) -> None:
        records, data, future = self.pending.popleft()
        try:
            results = future.result()
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory): finish in this process rather than fail.
            if not self.inline:
                print(f"warning: decoding worker processes failed ({exc}); continuing in "
                      f"this process", file=sys.stderr)
            self.inline = True
            results = _process_batch(data, self.job.worker_settings)
        self._absorb(records, results)

    def drain(self) -> None:
        """Decode everything still queued or in flight."""
        self.submit()
        while self.pending:
            self.collect_oldest()

    def _absorb(self, records: list[dict], results: list[dict]) -> None:
        for record, result in zip(records, results):
            self.decoded += 1
            outputs = result.pop("outputs", None)
            record.update(result)
            if outputs is not None and record["pixel_sha256"] not in self.row_of:
                self.row_of[record["pixel_sha256"]] = ("new", self.spool.append(outputs))
        self.bar.update(len(records))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.spool.remove()

    def finish(self) -> PrepareReport:
        """Classify every record (kept, duplicate, skipped), write the arrays if anything
        changed, then the manifest that marks the dataset complete."""
        job = self.job
        # Sorted by path so that the array order does not depend on archive order or re-runs.
        records = sorted(self.records, key=lambda r: r["path"])
        first_path: dict[str, str] = {}
        kept: list[dict] = []
        reasons: collections.Counter = collections.Counter()
        for record in records:
            if "reason" in record:
                record["status"] = "skipped"
                reasons[record["reason"]] += 1
            elif record["pixel_sha256"] in first_path:
                record["status"] = "duplicate"
                record["duplicate_of"] = first_path[record["pixel_sha256"]]
            else:
                first_path[record["pixel_sha256"]] = record["path"]
                record["status"] = "kept"
                record["index"] = len(kept)
                kept.append(record)
        if not kept:
            shown = "; ".join(f"{n}× {r}" for r, n in reasons.most_common(3)) or "it is empty"
            raise DataPrepError(f"no decodable image in {job.source.path} ({len(records)} files: "
                                f"{shown}); pass a folder or archive of JPEG/PNG/BMP/WebP images")

        channels = 1 if all(r["gray"] for r in kept) else 3
        labels = [r["label"] for r in kept]
        classes = sorted(set(labels)) if None not in labels else []
        if len(classes) < 2:
            classes = []  # one folder of images is a layout, not a class
        rows = [self.row_of[r["pixel_sha256"]] for r in kept]
        old = job.old
        unchanged = (old is not None and old["channels"] == channels and old["classes"] == classes
                     and old["count"] == len(kept)
                     and rows == [("old", i) for i in range(len(kept))])
        write_png = job.png or bool(job.manifest and job.manifest.get("png") and not job.force)

        if not unchanged:
            dropped = sorted(set(job.manifest.get("sizes", []) if job.manifest else []) - set(job.sizes))
            _write_arrays(job.out, job.sizes, rows, channels, classes, labels, self.spool, old, dropped,
                          write_png)
        elif write_png:
            for size in job.sizes:
                if not packed.png_dir(job.out, size).is_dir():
                    packed.write_pngs(job.out, size, np.load(packed.images_path(job.out, size), mmap_mode="r"))

        counts = collections.Counter(r["status"] for r in records)
        reused = sum(1 for r in records if r.pop("reused", False))
        packed.write_json_atomic(job.out / packed.MANIFEST, {
            "format": packed.FORMAT,
            "complete": True,
            "source": str(job.source.path.resolve()),
            "source_kind": job.source.kind,
            **job.settings,
            "sizes": job.sizes,
            "channels": channels,
            "count": len(kept),
            "classes": classes,
            "png": write_png,
            "counts": {k: counts.get(k, 0) for k in ("kept", "duplicate", "skipped")},
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "entries": records,
        })
        return PrepareReport(out=job.out, sizes=job.sizes, kept=len(kept), duplicates=counts["duplicate"],
                             skipped=counts["skipped"], reused=reused, decoded=self.decoded, seconds=0.0,
                             channels=channels, classes=classes, skipped_reasons=dict(reasons))


def _run(job: _Job, progress: bool) -> PrepareReport:
    from tqdm import tqdm

    total = job.source.count()
    bar = tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, desc="preparing",
               dynamic_ncols=True)
    state = _Preparation(job, total, bar)
    try:
        for item in job.source:
            state.add(item)
        state.drain()
        bar.close()
        return state.finish()
    finally:
        bar.close()
        state.close()


def _write_arrays(out: Path, sizes: list[int], rows: list[tuple[str, int]], channels: int,
                  classes: list[str], labels: list[str | None], spool: _Spool,
                  old: dict | None, dropped_sizes: list[int], write_png: bool) -> None:
    """Write every size's arrays under temporary names, then swap them in while the manifest
    says incomplete. ``rows`` gives, per kept image, ("old", row) or ("new", spool row)."""
    new_views = spool.arrays()
    temporaries: list[tuple[Path, Path]] = []
    try:
        for size in sizes:
            final = packed.images_path(out, size)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = files.tmp_name(final)
            temporaries.append((tmp, final))
            old_view = np.load(final, mmap_mode="r") if old is not None else None
            images = files.open_array(tmp, (len(rows), size, size, channels))
            for i, (origin, row) in enumerate(rows):
                view = old_view if origin == "old" else new_views[size]
                images[i] = _convert_channels(view[row], channels)
            images.flush()
            del images, old_view
            if classes:
                ids = {name: k for k, name in enumerate(classes)}
                final_labels = packed.labels_path(out, size)
                tmp_labels = files.tmp_name(final_labels)
                with open(tmp_labels, "wb") as fh:
                    np.save(fh, np.array([ids[name] for name in labels], np.int64))
                temporaries.append((tmp_labels, final_labels))
        # Every new array is complete on disk. From here until the final manifest is written
        # the folder is marked incomplete, so a crash in between cannot look finished.
        current = packed.read_manifest(out) or {"format": packed.FORMAT, "sizes": sizes}
        current["complete"] = False
        packed.write_json_atomic(out / packed.MANIFEST, current)
        for tmp, final in temporaries:
            os.replace(tmp, final)
        for size in sizes:
            if not classes:
                packed.labels_path(out, size).unlink(missing_ok=True)
            if write_png:
                packed.write_pngs(out, size, np.load(packed.images_path(out, size), mmap_mode="r"))
        for size in dropped_sizes:
            packed.remove_size(out, size)
    finally:
        for tmp, _ in temporaries:
            tmp.unlink(missing_ok=True)
