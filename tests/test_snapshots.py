"""The snapshot format: what it holds, that it round-trips exactly, that damage is refused, and
that snapshots written by earlier versions (pickles) still load and resume bit-exactly."""
import os
import shutil

import numpy as np
import pytest

import paddle_gan_kit
from paddle_gan_kit import snapshot
from paddle_gan_kit.config import build_config
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.trainer import Trainer
from conftest import REPO, assert_one_line_error, run_cli

LEGACY = os.path.join(REPO, "tests", "data", "legacy_v1")


def test_encode_decode_round_trips_arrays_and_plain_values():
    payload = {"step": 3, "generator": {"net.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3)},
               "history": [{"step": 1, "loss": float("nan")}], "nested": [np.uint32([1, 2]), None, "text", True],
               "rng": {"numpy": {"keys": np.arange(4, dtype=np.uint32), "pos": 2}}}
    back = snapshot.decode(snapshot.encode(payload))
    assert back["step"] == 3 and back["format"] == snapshot.FORMAT
    np.testing.assert_array_equal(back["generator"]["net.0.weight"], payload["generator"]["net.0.weight"])
    assert back["generator"]["net.0.weight"].dtype == np.float32
    assert np.isnan(back["history"][0]["loss"])
    assert back["nested"][0].dtype == np.uint32 and back["nested"][1:] == [None, "text", True]


def test_a_damaged_file_is_refused_by_its_checksum():
    data = bytearray(snapshot.encode({"step": 1, "w": np.zeros(1000, np.float32)}))
    data[-100] ^= 0x01  # one bit of a weight
    with pytest.raises(ValueError, match="checksum"):
        snapshot.decode(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_a_legacy_pickle_snapshot_loads_exactly_and_resumes(tmp_path, monkeypatch, model):
    """A run stopped at step 2 by the previous version (pickled .pdckpt) loads with every weight
    and optimizer moment as it was written, and trains on to step 4 in today's format. (Not bit
    for bit with the previous version's own continuation: each step's draws are now seeded
    from the step.)"""
    shutil.copytree(os.path.join(LEGACY, model), tmp_path / model)
    shutil.copytree(os.path.join(LEGACY, "data"), tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # the legacy config's paths are relative
    generator, cfg = paddle_gan_kit.load_generator(model)
    assert cfg.model == model and cfg.d_norm == ("batch" if model == "dcgan" else "layer")
    assert cfg.gp_weight == (0.0 if model == "dcgan" else 10.0)

    legacy = snapshot.read_snapshot(os.path.join(model, "snapshots", "step_00000002.pdckpt"))
    settings = {"out": model, "steps": 4, "conv_backend": "paddle"}
    trainer = Trainer(build_config(settings), resume=True, progress=False, explicit=set(settings))
    assert trainer.step == 2
    restored = trainer.payload()
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        for key, value in legacy[part].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(restored[part][key], value, err_msg=f"{part}.{key}")
    assert restored["data_order"] == legacy["data_order"] and restored["history"] == legacy["history"]
    trainer.fit()
    payload = snapshot.read_snapshot(os.path.join(model, "snapshots", snapshot.snapshot_name(4)))
    assert payload["format"] == snapshot.FORMAT and payload["step"] == 4
    moved = [k for k, v in payload["generator"].items() if not np.array_equal(v, legacy["generator"][k])]
    assert moved and all(np.isfinite(v).all() for v in payload["generator"].values())
    assert [s for s, _ in snapshot.list_snapshots(os.path.join(model, "snapshots"))] == [2, 4]


def test_legacy_runs_sample_from_the_command_line(tmp_path):
    shutil.copytree(os.path.join(LEGACY, "wgan_gp"), tmp_path / "wgan_gp")
    result = run_cli("paddle_gan_kit.sample", tmp_path / "wgan_gp", "--n", 4, "--grid", tmp_path / "grid.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "grid.png").stat().st_size > 100


def test_a_truncated_snapshot_is_one_line(tmp_path, tiny_run):
    bad = tmp_path / "step_00000004.safetensors"
    data = open(os.path.join(tiny_run, "snapshots", snapshot.snapshot_name(4)), "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(GanKitError, match="is corrupt, incomplete or not a paddle_gan_kit snapshot"):
        snapshot.read_snapshot(str(bad))
    result = run_cli("paddle_gan_kit.sample", bad, "--n", 2, "--grid", tmp_path / "g.png")
    assert_one_line_error(result, f"snapshot {bad} is corrupt")


def _with_config(src_run, dst_run, **config):
    """A copy of a run whose newest snapshot's config holds ``config`` besides its own keys (what a
    snapshot of an earlier version that had those keys looks like)."""
    shutil.copytree(src_run, dst_run)
    path = os.path.join(dst_run, "snapshots", snapshot.snapshot_name(4))
    payload = snapshot.read_snapshot(path)
    payload["config"] = {**payload["config"], **config, "out": str(dst_run)}
    snapshot.write_snapshot(payload, path)
    os.remove(os.path.join(dst_run, "config.yaml"))
    return path


# what a 0.1.0 snapshot holds for its options that were removed in 0.2.0, every one off
OFF_IN_0_1 = dict(g_coords=False, d_coords=False, d_scales=1, g_attention=0, d_attention=0, d_recon_weight=0.0,
                  g_self_modulation=False, g_skip=False, d_mbstd=0, lecam_weight=0.0, lecam_decay=0.99,
                  cr_weight=0.0, cr_augment="translation,flip", color_strength=1.0, augment_p=1.0)


def test_a_snapshot_of_0_1_with_its_removed_options_off_loads_and_resumes(tmp_path, tiny_run):
    _with_config(tiny_run, tmp_path / "old", **OFF_IN_0_1)
    generator, cfg = paddle_gan_kit.load_generator(str(tmp_path / "old"))
    assert not hasattr(cfg, "g_skip") and cfg.steps == 4
    result = run_cli("paddle_gan_kit.train", "--out", tmp_path / "old", "--resume", "--steps", 5, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "(step 4)" in result.stderr and [s for s, _ in snapshot.list_snapshots(str(tmp_path / "old" / "snapshots"))][-1] == 5


@pytest.mark.parametrize("key,value", [("g_skip", True), ("lecam_weight", 0.3), ("augment", "translation,flip"),
                                       ("g_upsample", "bilinear")])
def test_a_snapshot_that_used_a_removed_option_is_refused_in_one_line(tmp_path, tiny_run, key, value):
    _with_config(tiny_run, tmp_path / "old", **{**OFF_IN_0_1, key: value})
    for module, args in (("paddle_gan_kit.train", ["--out", tmp_path / "old", "--resume"]),
                         ("paddle_gan_kit.sample", [tmp_path / "old", "--n", 2, "--grid", tmp_path / "g.png"])):
        result = run_cli(module, *args)
        assert_one_line_error(result, f"this run uses {key}={value}", "removed in paddle_gan_kit 0.2.0",
                              "docs/quality.md", "paddle_gan_kit 0.1.0")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("args,fragment", [(["--set", "g_attention=16"], "config key 'g_attention' was removed"),
                                           (["--set", "augment=color,hue"], "the augmentation 'hue' was removed"),
                                           (["--set", "g_upsample=bilinear"], "g_upsample=bilinear was removed")])
def test_naming_a_removed_option_is_one_line(tmp_path, tiny_npy, args, fragment):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "r", *args)
    assert_one_line_error(result, fragment, "in paddle_gan_kit 0.2.0", "docs/quality.md")
    assert not (tmp_path / "r").exists()
    (tmp_path / "recipe.yaml").write_text("model: dcgan\nd_mbstd: 4\n")
    result = run_cli("paddle_gan_kit.train", "--config", tmp_path / "recipe.yaml", "--out", tmp_path / "r")
    assert_one_line_error(result, "config key 'd_mbstd' was removed in paddle_gan_kit 0.2.0")
