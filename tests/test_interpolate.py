"""Latent walks: exact keyframes, norm-keeping slerp, a seamless loop, GIF/MP4/frames that decode
to every frame, the key-seed link with ``sample``, and one-line errors for bad input."""
import io
import os
import sys
import types

import numpy as np
import paddle
import pytest
from PIL import Image

import paddle_gan_kit
from paddle_gan_kit import GanKitError
from paddle_gan_kit.config import TrainConfig
from paddle_gan_kit.interpolate import (encode_gif, gif_frame_ms, interpolate, parse_grid, save_frames,
                                        show_gif, walk_frames, walk_latents)
from paddle_gan_kit.latent import generate_images, latent_for_seed, latent_walk, latents_for_seeds, lerp, slerp
from paddle_gan_kit.models import build_generator
from paddle_gan_kit.images import to_uint8_images
from conftest import assert_one_line_error, run_cli


def fresh_generator(z_dist="normal", size=16, channels=3, z_dim=16):
    """An untrained, seeded generator and its config: random weights give busy, varied images."""
    cfg = TrainConfig(size=size, channels=channels, z_dim=z_dim, g_channels=8, z_dist=z_dist).resolve()
    paddle.seed(3)
    generator = build_generator(cfg)
    generator.eval()
    return generator, cfg


def decode_gif(data):
    """(frames uint8 (T, H, W, 3), per-frame durations in ms, loop) of GIF bytes, read by Pillow."""
    im = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
        durations.append(im.info["duration"])
    return np.stack(frames), durations, im.info.get("loop")


# ---- latent paths ------------------------------------------------------------------------

def test_slerp_keeps_the_norm_between_equal_norm_keys_and_linear_does_not():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 100))
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    t = np.linspace(0, 1, 21)
    norms_slerp = np.linalg.norm(slerp(a, b, t), axis=1)
    norms_lerp = np.linalg.norm(lerp(a, b, t), axis=1)
    np.testing.assert_allclose(norms_slerp, np.linalg.norm(a), rtol=1e-5)
    assert norms_lerp[10] < 0.8 * np.linalg.norm(a)  # nearly orthogonal keys: midpoint ~ 1/sqrt(2)
    # the endpoints are the keys bit for bit, whatever the formula's rounding
    assert np.array_equal(slerp(a, b, [0.0, 1.0]), np.stack([a, b]).astype(np.float32))
    assert np.array_equal(slerp(a, a, [0.0, 0.5]), np.stack([a, a]).astype(np.float32))  # parallel keys


@pytest.mark.parametrize("mode", ["slerp", "linear"])
def test_walk_is_a_closed_loop_without_a_jump_or_repeat(mode):
    keys = latents_for_seeds([3, 17, 42, 7], 64)
    walk = latent_walk(keys, 10, mode)  # (40, 64)
    assert walk.shape == (40, 64) and walk.dtype == np.float32
    assert np.array_equal(walk[::10], keys)  # frame k*F is key k exactly
    steps = np.linalg.norm(np.diff(np.concatenate([walk, walk[:1]]), axis=0), axis=1)  # incl. seam
    seam = steps[-1]  # last frame -> first frame when the GIF loops
    assert steps.min() > 0  # the first key is not repeated at the end
    assert seam <= steps.max() * (1 + 1e-5)
    # the seam step is an ordinary step of the last segment: close to the one before it
    np.testing.assert_allclose(seam, steps[-2], rtol=0.05)
    # keys of equal norm: slerp moves at constant speed within a segment, seam included
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True) * 8.0
    steps = np.linalg.norm(np.diff(np.concatenate([latent_walk(unit, 10, mode), unit[:1]]), axis=0), axis=1)
    if mode == "slerp":
        np.testing.assert_allclose(steps[-1], steps[-10:-1], rtol=1e-4)


def test_uniform_prior_walk_stays_in_the_cube():
    keys = latents_for_seeds(range(5), 100, "uniform")
    assert keys.min() >= -1 and keys.max() <= 1
    raw = np.concatenate([slerp(keys[k], keys[(k + 1) % 5], np.arange(8) / 8) for k in range(5)])
    assert np.abs(raw).max() > 1  # unclipped, the arc leaves the prior's support
    walk = latent_walk(keys, 8, "slerp", z_dist="uniform")
    assert walk.min() >= -1 and walk.max() <= 1
    assert np.array_equal(walk[::8], keys)


def test_latent_of_a_seed_is_drawn_alone():
    z = latents_for_seeds([5, 6], 16)
    assert np.array_equal(z[1], latent_for_seed(6, 16))
    assert np.array_equal(latent_for_seed(6, 16), np.random.default_rng(6).standard_normal(16).astype(np.float32))
    assert np.array_equal(walk_latents(16, keys=3, frames=2, seed=4)[::2, 0], latents_for_seeds([4, 5, 6], 16))


# ---- frames ------------------------------------------------------------------------------

def test_key_frames_equal_the_generator_on_the_key_alone(tiny_run):
    generator, cfg = paddle_gan_kit.load_generator(tiny_run)
    frames = walk_frames((generator, cfg), keys=3, frames=4, seed=9, batch_size=5)  # chunks split segments
    assert frames.shape == (12, 16, 16, 3) and frames.dtype == np.uint8
    for k, s in enumerate([9, 10, 11]):
        with paddle.no_grad():
            alone = generator(paddle.to_tensor(latent_for_seed(s, cfg.z_dim)[None]))  # (1, 3, 16, 16)
        assert np.array_equal(frames[4 * k], to_uint8_images(alone)[0])
    # the same from the run path (the EMA/plain generator load_generator picks)
    assert np.array_equal(walk_frames(tiny_run, keys=3, frames=4, seed=9), frames)


def test_batch_norm_generator_frames_do_not_depend_on_their_batch():
    generator, cfg = fresh_generator()
    generator.train()  # a notebook user may hand over a generator still in training mode
    z = walk_latents(cfg.z_dim, keys=3, frames=5)[:, 0]  # (15, 16)
    one_by_one = generate_images(generator, z, batch_size=1)
    assert np.array_equal(generate_images(generator, z, batch_size=64), one_by_one)
    assert np.array_equal(generate_images(generator, z, batch_size=4), one_by_one)
    assert generator.training  # mode restored


def test_pixels_change_smoothly_with_no_jump_at_the_loop_point():
    run = fresh_generator()
    frames = walk_frames(run, keys=4, frames=12).astype(np.float32)  # (48, 16, 16, 3)
    diffs = np.abs(np.diff(np.concatenate([frames, frames[:1]]), axis=0)).mean(axis=(1, 2, 3))
    assert diffs.min() > 0
    assert diffs[-1] <= diffs[:-1].max()
    # and no frame-to-frame change is a cut: far below the difference between two keys
    key_gap = np.abs(frames[0] - frames[12]).mean()
    assert diffs.max() < 0.5 * key_gap


def test_uniform_prior_run_frames(tmp_path):
    run = fresh_generator("uniform")
    frames = walk_frames(run, keys=2, frames=3, mode="slerp")
    z = latent_for_seed(1, 16, "uniform")
    assert np.array_equal(frames[3], generate_images(run[0], z[None])[0])


def test_grid_tiles_independent_walks_and_scale_is_nearest_neighbour():
    run = fresh_generator()
    single = walk_frames(run, keys=2, frames=2, seed=0)  # keys: seeds 0, 1
    grid = walk_frames(run, keys=2, frames=2, grid="2x3", seed=0, scale=2)
    assert grid.shape == (4, 2 * (32 + 2) + 2, 3 * (32 + 2) + 2, 3)
    top_left = grid[:, 2:34, 2:34]  # walk 0 uses the same seeds as the single walk
    assert np.array_equal(top_left[:, ::2, ::2], single)
    assert np.array_equal(top_left[:, 1::2, 1::2], single)
    second = grid[:, 2:34, 36:68]  # walk 1: seeds 2, 3
    assert np.array_equal(second[:, ::2, ::2], walk_frames(run, keys=2, frames=2, seed=2))


def test_bad_walk_arguments_raise_gan_kit_errors():
    run = fresh_generator()
    for kwargs in [dict(keys=1), dict(frames=0), dict(mode="cubic"), dict(grid="2by2"), dict(grid=(0, 2)),
                   dict(scale=0), dict(key_seeds=[3]), dict(key_seeds=[1, 2], grid=(2, 1))]:
        with pytest.raises(GanKitError):
            walk_frames(run, **kwargs)
    assert parse_grid("3X2") == (3, 2)


# ---- writing -----------------------------------------------------------------------------

def test_gif_decodes_to_every_frame_at_the_fps_and_loops_forever(tiny_run, tmp_path):
    out = tmp_path / "walk.gif"
    interpolate(tiny_run, str(out), keys=3, frames=4, grid=(1, 2), fps=12, scale=2)
    frames, durations, loop = decode_gif(out.read_bytes())
    expected = walk_frames(tiny_run, keys=3, frames=4, grid=(1, 2), scale=2)
    assert frames.shape == expected.shape == (12, 36, 70, 3)
    assert durations == [gif_frame_ms(12)] * 12 == [80] * 12  # 1000/12 ms, stored in 10 ms steps
    assert loop == 0
    assert np.abs(frames.astype(int) - expected).max() <= 8  # tiny run: few colours, near-exact
    # imageio reads the same file the same way
    import imageio.v3 as iio

    assert iio.imread(out, index=None).shape[:3] == (12, 36, 70)


def test_gif_palette_is_adaptive_per_frame_and_keeps_gradients_smooth():
    yy, xx = np.mgrid[0:64, 0:64]
    gradient = np.stack([xx * 4 + 2, yy * 4 + 2, np.full_like(xx, 128)], -1).astype(np.uint8)  # 4096 colours
    reds = np.zeros_like(gradient)
    reds[..., 0] = np.linspace(0, 255, 64).astype(np.uint8)[None, :]  # a second frame of other colours
    frames, _, _ = decode_gif(encode_gif(np.stack([reds, gradient, reds])))
    error = np.abs(frames[1].astype(int) - gradient)
    assert error.max() <= 16 and error.mean() < 4
    assert len(np.unique(frames[1].reshape(-1, 3), axis=0)) >= 200
    # what a fixed palette would do: few colours, bands twice as wide
    web = np.asarray(Image.fromarray(gradient).convert("P", palette=Image.Palette.WEB,
                                                       dither=Image.Dither.NONE).convert("RGB"))
    assert np.abs(web.astype(int) - gradient).max() > 20 and len(np.unique(web.reshape(-1, 3), axis=0)) < 50
    assert np.array_equal(frames[0], reds) and np.array_equal(frames[2], reds)  # 64 levels: exact


def test_frames_format_writes_numbered_pngs_and_drops_stale_ones(tmp_path):
    import cv2

    run = fresh_generator(channels=1)
    frames = walk_frames(run, keys=2, frames=3)  # (6, 16, 16, 1) gray
    folder = tmp_path / "frames"
    save_frames(np.concatenate([frames, frames]), str(folder))
    save_frames(frames, str(folder), format="frames")
    names = sorted(os.listdir(folder))
    assert names == [f"frame_{i:05d}.png" for i in range(6)]
    assert np.array_equal(cv2.imread(str(folder / names[3]), cv2.IMREAD_UNCHANGED), frames[3, ..., 0])
    gif_frames, _, _ = decode_gif(encode_gif(frames))  # gray frames make an RGB GIF
    assert gif_frames.shape == (6, 16, 16, 3)


def test_mp4_without_imageio_ffmpeg_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(GanKitError, match="pip install imageio-ffmpeg"):
        save_frames(frames, str(tmp_path / "walk.mp4"))


def test_mp4_decodes_to_every_frame(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    yy, xx = np.mgrid[0:15, 0:17]
    frames = np.stack([np.stack([xx * 15 + i, yy * 15, np.full_like(xx, 100)], -1)
                       for i in range(10)]).astype(np.uint8)  # (10, 15, 17, 3): odd sides
    out = tmp_path / "walk.mp4"
    save_frames(frames, str(out), fps=10)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    decoded = [np.frombuffer(buf, np.uint8).reshape(16, 18, 3) for buf in reader]
    assert meta["size"] == (18, 16) and meta["fps"] == 10 and len(decoded) == 10
    assert np.abs(decoded[5][:15, :17].astype(int) - frames[5]).mean() < 8  # lossy, but the same picture


def test_show_gif_returns_an_ipython_image(tmp_path, monkeypatch):
    class FakeImage:
        def __init__(self, data=None, format=None):
            self.data, self.format = data, format

    ipython = types.ModuleType("IPython")
    display = types.ModuleType("IPython.display")
    display.Image = FakeImage
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    frames[1] = 200
    shown = show_gif(frames, fps=10)
    assert shown.format == "gif" and shown.data.startswith(b"GIF89a")
    path = tmp_path / "a.gif"
    path.write_bytes(shown.data)
    assert show_gif(str(path)).data == shown.data

    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(GanKitError, match="pip install ipython"):
        show_gif(str(path))


# ---- command line ------------------------------------------------------------------------

def test_key_seeds_walk_through_the_sample_tiles(tiny_run, tmp_path):
    import cv2

    from paddle_gan_kit import interpolate as interpolate_cli, sample as sample_cli

    assert sample_cli.main([tiny_run, "--n", "8", "--seed", "0", "--out", str(tmp_path / "picks")]) == 0
    assert interpolate_cli.main([tiny_run, "--key-seeds", "3,5,1", "--frames", "3", "--format", "frames",
                                 "--out", str(tmp_path / "walk")]) == 0
    assert len(os.listdir(tmp_path / "walk")) == 9
    for k, s in enumerate([3, 5, 1]):
        tile = cv2.imread(str(tmp_path / "picks" / f"seed_{s:06d}.png"))
        key = cv2.imread(str(tmp_path / "walk" / f"frame_{3 * k:05d}.png"))
        assert np.array_equal(key, tile), s


def test_cli_writes_a_gif(tiny_run, tmp_path):
    out = tmp_path / "sub" / "walk.gif"
    result = run_cli("paddle_gan_kit.interpolate", tiny_run, "--out", out, "--keys", 2, "--frames", 3,
                     "--mode", "linear", "--grid", "1x2", "--fps", 10, "--snapshot", 2)
    assert result.returncode == 0, result.stderr
    frames, durations, loop = decode_gif(out.read_bytes())
    assert frames.shape == (6, 20, 38, 3) and durations == [100] * 6 and loop == 0


def test_cli_bad_input_is_one_line_and_exit_2(tiny_run, tmp_path):
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (tmp_path / "a_file").write_text("")
    # in real processes: a load failure, an argparse failure, an unwritable --out
    for args, fragment in [([empty_run], "no snapshot"), ([tiny_run, "--mode", "cubic"], "--mode"),
                           ([tiny_run, "--out", tmp_path / "a_file" / "walk.gif"], "cannot write")]:
        args = args if "--out" in args else [*args, "--out", tmp_path / "w.gif"]
        assert_one_line_error(run_cli("paddle_gan_kit.interpolate", *args), fragment)
    assert not (tmp_path / "w.gif").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--keys", "1"], "--keys"),
    (["--frames", "0"], "--frames"),
    (["--grid", "2by2"], "--grid"),
    (["--grid", "0x2"], "--grid"),
    (["--scale", "0"], "--scale"),
    (["--fps", "60"], "--fps"),
    (["--format", "gif", "--out", "w.mp4"], "--format"),
    (["--out", "walk.webm"], "format"),
    (["--key-seeds", "3,x"], "--key-seeds"),
    (["--key-seeds", "3"], "key seeds"),
    (["--key-seeds", "3,4", "--keys", "3"], "--keys"),
    (["--seed", "-1"], "--seed"),
])
def test_cli_bad_flags_in_process(tiny_run, tmp_path, capsys, args, fragment):
    from paddle_gan_kit.interpolate import main

    argv = [tiny_run, *args] + ([] if "--out" in args else ["--out", str(tmp_path / "w.gif")])
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
