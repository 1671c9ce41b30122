"""Samples to pick from: each made from its own seed, a grid labelled with those seeds that keeps
every tile's pixels, one PNG per seed, and one-line errors for bad input."""
import os

import cv2
import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import GanKitError
from paddle_gan_kit.config import TrainConfig
from paddle_gan_kit.latent import latent_for_seed
from paddle_gan_kit.models import build_generator
from paddle_gan_kit.images import to_uint8_images
from paddle_gan_kit.sample import labelled_grid, sample, sample_images, save_samples
from conftest import run_cli


def find_tile(grid, tile):
    """(y, x) of every place ``tile`` occurs in ``grid`` pixel for pixel."""
    h, w = tile.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(grid, (h, w, grid.shape[2]))[:, :, 0]  # (Y, X, h, w, C)
    return [tuple(p) for p in np.argwhere((windows == tile).all(axis=(2, 3, 4)))]


def test_sample_i_is_made_from_seed_plus_i_alone(tiny_run):
    generator, cfg = paddle_gan_kit.load_generator(tiny_run)
    images, seeds = sample_images((generator, cfg), n=6, seed=10, batch_size=4)
    assert seeds == list(range(10, 16)) and images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    with paddle.no_grad():
        alone = generator(paddle.to_tensor(latent_for_seed(13, cfg.z_dim)[None]))  # (1, 3, 16, 16)
    assert np.array_equal(images[3], to_uint8_images(alone)[0])
    again, _ = sample_images(tiny_run, n=1, seed=13)  # drawn alone: the same tile
    assert np.array_equal(again[0], images[3])


def test_labelled_grid_keeps_every_tile_and_scales_by_nearest_neighbour():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)  # noise: a tile matches only itself
    seeds = [5, 6, 7, 8, 9, 10, 12345]
    grid = labelled_grid(images, seeds, ncols=4)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    positions = [find_tile(grid, tile) for tile in images]
    assert all(len(p) == 1 for p in positions)
    rows = sorted({p[0][0] for p in positions})
    assert len(rows) == 2 and positions[4][0][0] == rows[1]  # 4 per row, row-major
    big = labelled_grid(images[:2], seeds[:2], scale=3)
    assert len(find_tile(big, images[1].repeat(3, 0).repeat(3, 1))) == 1
    # gray tiles stay gray in an RGB grid
    gray = labelled_grid(images[:2, ..., :1], seeds[:2])
    assert len(find_tile(gray, np.repeat(images[0, ..., :1], 3, axis=-1))) == 1


def test_save_samples_names_files_by_seed(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    paths = save_samples(images, [0, 41, 42], str(tmp_path / "picks"))
    assert [os.path.basename(p) for p in paths] == ["seed_000000.png", "seed_000041.png", "seed_000042.png"]
    assert np.array_equal(cv2.imread(paths[2], cv2.IMREAD_UNCHANGED), images[2, ..., 0])


def test_uniform_prior_samples():
    cfg = TrainConfig(size=16, channels=3, z_dim=16, g_channels=8, z_dist="uniform").resolve()
    paddle.seed(1)
    generator = build_generator(cfg)
    z = latent_for_seed(4, 16, "uniform")
    assert z.min() >= -1 and z.max() <= 1
    images, _ = sample_images((generator, cfg), n=1, seed=4)
    generator.eval()
    with paddle.no_grad():
        assert np.array_equal(images[0], to_uint8_images(generator(paddle.to_tensor(z[None])))[0])


def test_bad_sample_arguments(tiny_run, tmp_path):
    (tmp_path / "a_file").write_text("")
    for kwargs in [dict(), dict(grid=str(tmp_path / "g.png"), n=0), dict(grid=str(tmp_path / "g.png"), seed=-1),
                   dict(grid=str(tmp_path / "g.jpg")), dict(grid=str(tmp_path / "a_file" / "g.png")),
                   dict(out=str(tmp_path / "a_file" / "d")), dict(grid=str(tmp_path / "g.png"), scale=0)]:
        with pytest.raises(GanKitError):
            sample(tiny_run, **kwargs)


def test_cli_writes_grid_and_pngs(tiny_run, tmp_path):
    result = run_cli("paddle_gan_kit.sample", tiny_run, "--n", 6, "--seed", 20, "--grid", tmp_path / "grid.png",
                     "--out", tmp_path / "picks", "--cols", 3)
    assert result.returncode == 0, result.stderr
    names = sorted(os.listdir(tmp_path / "picks"))
    assert names == [f"seed_{s:06d}.png" for s in range(20, 26)]
    grid = cv2.imread(str(tmp_path / "grid.png"))
    tile = cv2.imread(str(tmp_path / "picks" / names[4]))
    expected, _ = sample_images(tiny_run, n=1, seed=24)
    assert np.array_equal(tile[..., ::-1], expected[0])
    assert find_tile(grid, tile)  # the grid holds the very pixels of the file


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    result = run_cli("paddle_gan_kit.sample", empty_run, "--grid", tmp_path / "g.png")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "no snapshot" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,fragment", [
    ([], "nothing to write"),
    (["--grid", "g.png", "--n", "0"], "--n"),
    (["--grid", "g.png", "--n", "many"], "--n"),
    (["--grid", "g.png", "--cols", "0"], "--cols"),
    (["--grid", "g.png", "--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
])
def test_cli_bad_flags_in_process(tiny_run, tmp_path, capsys, monkeypatch, args, fragment):
    from paddle_gan_kit.sample import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([tiny_run, *args])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
