"""The AI Studio notebooks: stored clean, call the library only, and run top to bottom.

The slow test executes all four notebooks in one shared work directory with tiny settings
injected through the PGK_* environment variables their parameters cells read: 01 prepares a
small zip of class folders, 02 and 03 train on what 01 prepared, 04 walks through 02's run.
"""
from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "aistudio_notebooks"
NOTEBOOKS = ["01_prepare_data.ipynb", "02_train_dcgan.ipynb", "03_train_wgan_gp.ipynb",
             "04_latent_walk.ipynb"]

# Model, loss and training code belongs in the library; a cell holding any of these copied it.
FORBIDDEN = ["nn.Conv2D", "Conv2DTranspose", "nn.BatchNorm", "nn.Layer", "paddle.optimizer",
             ".backward(", "paddle.static", "Executor(", "fluid", "paddle.grad(",
             "pip install paddlepaddle"]

# Tiny nets and runs: every notebook finishes in seconds on 2 cores.
TINY_SET = "g_channels=8 d_channels=8 z_dim=16 n_samples=16 log_every=1 sample_every=2"
ENGLISH = re.compile(r"\b(the|and|of|to|is)\b", re.IGNORECASE)
FRAMES = 3
FAVOURITES = "1,2"


def _read(name):
    import nbformat

    return nbformat.read(str(NB_DIR / name), as_version=4)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name):
    nbformat = pytest.importorskip("nbformat")
    path = NB_DIR / name
    assert path.stat().st_size < 30_000, f"{name} is {path.stat().st_size} bytes"
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["nbformat"] == 4
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs stored"
        for pattern in FORBIDDEN:
            assert pattern not in cell.source, f"{name}: a cell contains {pattern!r}"
    # first code cell: installs the package when missing, never Paddle
    assert "pip" in code[0].source and '"-e"' in code[0].source and "find_spec" in code[0].source
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[1], "the second code cell is the tagged parameters cell"
    assert "PGK_WORK_DIR" in params[0].source
    for line in params[0].source.splitlines():
        if re.match(r"[A-Z_0-9]+ = ", line):
            assert "os.environ.get(\"PGK_" in line, f"{name}: parameter not overridable: {line}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for cell in nb.cells:  # every step explained in both languages
        if cell.cell_type == "markdown" and cell.source.startswith(("# ", "## ")):
            assert re.search(r"[\u4e00-\u9fff]", cell.source) and ENGLISH.search(cell.source), \
                f"{name}: a section is not in both Chinese and English: {cell.source[:40]!r}"


def _kernel_manager(tmp_path):
    """A kernel manager for this interpreter (sys.executable), whatever kernels are installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (test)", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def execute(name, tmp_path, **env):
    """Run notebook ``name`` top to bottom with PGK_* settings; returns the executed notebook."""
    from nbclient import NotebookClient

    nb = _read(name)
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("OMP_NUM_THREADS", "1")
    full_env.update({key: str(value) for key, value in env.items()})
    client = NotebookClient(nb, timeout=300, kernel_name="python3", km=_kernel_manager(tmp_path),
                            resources={"metadata": {"path": str(NB_DIR)}})
    # cleanup_kc: shut the kernel down afterwards (and on failure) although we own its manager
    client.execute(env=full_env, cwd=str(NB_DIR), cleanup_kc=True)
    return nb


def _text(nb):
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(output.get("text", "") or "".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def _tiny_zip(path):
    """A zip of 24 distinct 40x30 PNGs in two class folders (plus a non-image file)."""
    import cv2

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(24):
            image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            ok, data = cv2.imencode(".png", image)
            assert ok
            archive.writestr(f"Gemstones/{'ruby' if i % 2 else 'topaz'}/{i:03d}.png", data.tobytes())
        archive.writestr("Gemstones/readme.txt", "not an image")
    return path


@pytest.mark.slow
def test_notebooks_run_top_to_bottom(tmp_path):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from PIL import Image

    work = tmp_path / "work"
    common = dict(PGK_WORK_DIR=work, PGK_SIZE=16, PGK_BATCH=8, PGK_SET=TINY_SET)

    # 01 on a fresh machine: no AI Studio dataset, the built-in gems
    nb = execute("01_prepare_data.ipynb", tmp_path, PGK_WORK_DIR=tmp_path / "fresh", PGK_DATA="builtin",
                 PGK_SIZES="16", PGK_GEMS_COUNT=32)
    assert "built-in procedural gems" in _text(nb)
    assert (tmp_path / "fresh" / "preview.png").is_file()
    assert not (tmp_path / "fresh" / "prepared").exists()

    # 01 with an uploaded zip
    source = _tiny_zip(tmp_path / "Gemstones.zip")
    nb = execute("01_prepare_data.ipynb", tmp_path, PGK_WORK_DIR=work, PGK_DATA=source, PGK_SIZES="16 32")
    assert str(source) in _text(nb)
    images = np.load(work / "prepared" / "16" / "images.npy")
    assert images.shape == (24, 16, 16, 3) and images.dtype == np.uint8
    assert np.load(work / "prepared" / "32" / "labels.npy").tolist().count(1) == 12
    assert json.loads((work / "prepared" / "manifest.json").read_text())["classes"] == ["ruby", "topaz"]
    assert Image.open(work / "preview.png").size[0] > 32

    # 02: DCGAN on 01's data
    nb = execute("02_train_dcgan.ipynb", tmp_path, PGK_STEPS=2, **common)
    dcgan = work / "runs" / "dcgan_16"
    assert str(work / "prepared") in _text(nb) and "vdl" in _text(nb)
    assert [p.name for p in (dcgan / "snapshots").glob("step_*")] == ["step_00000002.safetensors"]
    assert sorted(p.name for p in (dcgan / "samples").glob("*.png")) == ["step_00000000.png", "step_00000002.png"]
    assert (dcgan / "losses.png").is_file() and any((dcgan / "vdl").iterdir())

    # 03: WGAN-GP, resumed for one more step in the notebook, compared with 02's run, FID/KID
    nb = execute("03_train_wgan_gp.ipynb", tmp_path, PGK_STEPS=2, PGK_MORE_STEPS=1, PGK_EVAL_N=16,
                 PGK_EXTRACTOR="classifier", **dict(common, PGK_SET=TINY_SET + " n_critic=2"))
    wgan = work / "runs" / "wgan_gp_16"
    text = _text(nb)
    assert "resumed" in (wgan / "train.log").read_text() and "'DCGAN'" in text
    assert [p.name for p in (wgan / "snapshots").glob("step_*")] == ["step_00000002.safetensors", "step_00000003.safetensors"]
    assert (wgan / "losses.png").is_file() and "TRAIN_256 = False" in text
    for run in (dcgan, wgan):
        assert list((run / "eval").glob("step_*.classifier.n16.json")), f"no FID/KID result in {run}"

    # 04: latent walk through favourites of 02's run
    nb = execute("04_latent_walk.ipynb", tmp_path, PGK_WORK_DIR=work, PGK_SIZE=16, PGK_N_SAMPLES=8,
                 PGK_FRAMES=FRAMES, PGK_FAVOURITES=FAVOURITES, PGK_SCALE=2, PGK_WEB_DOWNLOAD=0)
    # it ends with the web page: exported where the runtime is here, else a line saying how to get it
    last = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    if os.environ.get("PADDLE_GAN_KIT_ORT_WEB"):
        assert (work / "site" / "dcgan_16" / "index.html").is_file() and "web page:" in last, last
    else:
        assert "npm pack onnxruntime-web@" in last, last
    grid = Image.open(work / "walks" / "dcgan_16_samples.png")
    assert grid.size[0] > 32
    gif = Image.open(work / "walks" / "dcgan_16_walk.gif")
    assert gif.n_frames == len(FAVOURITES.split(",")) * FRAMES
    assert gif.size == (32, 32)
