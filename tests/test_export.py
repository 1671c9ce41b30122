"""Export: the generator as a Paddle inference model that reproduces load_generator's outputs."""
import json
import os

import numpy as np
import paddle

import paddle_gan_kit
from paddle_gan_kit.export import export_generator

from conftest import assert_one_line_error, run_cli


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
    assert result.returncode == 2 and "Traceback" not in result.stderr
