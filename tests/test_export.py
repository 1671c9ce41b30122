"""Export: the generator as a Paddle inference model and as ONNX, both reproducing load_generator's outputs."""
import json
import os

import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit.export import ONNX_OPSET, export_generator

from conftest import assert_one_line_error, run_cli, tiny_config


def test_exported_generator_reproduces_the_run(tmp_path, tiny_run):
    prefix = export_generator(tiny_run, str(tmp_path / "exported"))
    meta = json.loads(open(os.path.join(os.path.dirname(prefix), "meta.json"), encoding="utf-8").read())
    assert meta["input"]["shape"] == [None, 16] and meta["output"]["shape"] == [None, 3, 16, 16]
    loaded = paddle.jit.load(prefix)
    generator, cfg = paddle_gan_kit.load_generator(tiny_run)
    for n in (1, 5):  # any batch size
        z = paddle.to_tensor(np.random.default_rng(n).standard_normal((n, cfg.z_dim)).astype("float32"))
        with paddle.no_grad():
            expected = generator(z).numpy()
        got = loaded(z)
        got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
        assert got.shape == (n, 3, 16, 16)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_export_cli_refuses_a_non_empty_folder(tmp_path, tiny_run):
    out = tmp_path / "exported"
    result = run_cli("paddle_gan_kit.export", tiny_run, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "paddle.jit.load" in result.stdout
    before = {name: os.path.getmtime(out / name) for name in os.listdir(out)}
    result = run_cli("paddle_gan_kit.export", tiny_run, "--out", out)
    assert_one_line_error(result, f"--out {out} is not empty", "never overwritten")
    assert {name: os.path.getmtime(out / name) for name in os.listdir(out)} == before
    result = run_cli("paddle_gan_kit.export", tmp_path / "no_run", "--out", tmp_path / "x")
    assert_one_line_error(result, f"{tmp_path / 'no_run'} is neither a run directory nor a snapshot file")


@pytest.mark.parametrize("options", [dict(g_upsample="nearest"), dict(g_upsample="nearest", g_arch="resnet"),
                                     dict(g_upsample="transposed", z_dist="uniform")])
def test_onnx_export_matches_load_generator_in_onnxruntime(tmp_path, tiny_npy, options):
    """A generator with every G option (upsampling, EMA with measured statistics, the DCGAN and
    the residual nets), converted by paddle2onnx, gives load_generator's images in onnxruntime for
    any batch size."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    run = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(run, "dcgan", tiny_npy, steps=2, ema_decay=0.9, **options), progress=False)
    result = run_cli("paddle_gan_kit.export", run, "--out", tmp_path / "exported", "--format", "onnx")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "exported" / "meta.json").read_text())
    assert meta["onnx"]["opset"] == ONNX_OPSET and meta["onnx"]["input"] == "z"
    session = ort.InferenceSession(str(tmp_path / "exported" / "generator.onnx"))
    generator, cfg = paddle_gan_kit.load_generator(str(run))
    for n in (1, 7):
        z = np.random.default_rng(n).standard_normal((n, cfg.z_dim)).astype("float32")
        got = session.run(None, {"z": z})[0]
        with paddle.no_grad():
            expected = generator(paddle.to_tensor(z)).numpy()
        assert got.shape == (n, 3, 16, 16)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_onnx_without_paddle2onnx_is_one_line(tmp_path, tiny_run, capsys, monkeypatch):
    import sys

    from paddle_gan_kit.export import main

    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # an import of it fails
    with pytest.raises(SystemExit) as exit_info:
        main([tiny_run, "--out", str(tmp_path / "x"), "--format", "onnx"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: --format onnx needs paddle2onnx: pip install -e ".[onnx]" (or pip install paddle2onnx '
                   'onnxruntime)']
    assert not (tmp_path / "x").exists()
