"""The web page of a trained generator: the exported folder, its one-line refusals, and the page
itself in headless Chromium (grid pixels against onnxruntime in Python, classes, the walk, the
error message), plus the demo server.

The browser tests need Debian's chromium and Playwright for Python (``apt-get install chromium``;
``pip install playwright``, whose own browser download is not used) and onnxruntime-web's npm
tarball (``npm pack onnxruntime-web@1.20.1``, path in $PADDLE_GAN_KIT_ORT_WEB); without them they
skip, saying so, unless PADDLE_GAN_KIT_REQUIRE_WEB=1 makes that a failure (CI)."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import paddle_gan_kit
from paddle_gan_kit import web
from paddle_gan_kit.images import to_uint8_images
from paddle_gan_kit.latent import latents_for_seeds
from conftest import CHROMIUM, CHROMIUM_ARGS, REPO, Served, assert_one_line_error, run_cli, tiny_config

def unavailable(what):
    if os.environ.get("PADDLE_GAN_KIT_REQUIRE_WEB") == "1":
        pytest.fail(f"{what} (PADDLE_GAN_KIT_REQUIRE_WEB=1)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def runtime():
    path = os.environ.get(web.RUNTIME_ENV)
    if not path or not os.path.isfile(path):
        unavailable(f"no onnxruntime-web tarball: npm pack onnxruntime-web@{web.RUNTIME_VERSION} and set "
                    f"{web.RUNTIME_ENV} to it")
    return path


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    if not os.path.isfile(CHROMIUM):
        unavailable("no Chromium for the browser tests: apt-get install chromium")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One-step tiny runs: unconditional colour at 32 and 64 px, conditional digits at 32 and 64 px."""
    root = tmp_path_factory.mktemp("webruns")
    made = {}
    for name, extra in {"colour32": dict(size=32, gems_count=64), "colour64": dict(size=64, gems_count=64),
                        "digits32": dict(size=32, data="builtin:mnist", conditional=True),
                        "digits64": dict(size=64, data="builtin:mnist", conditional=True)}.items():
        out = root / name
        paddle_gan_kit.train(tiny_config(out, steps=1, **extra), progress=False)
        made[name] = str(out)
    return made


def site_of(run, tmp_path, runtime):
    out = tmp_path / "site"
    web.export_site(run, str(out), runtime=runtime)
    return str(out)


def python_images(site, seeds, label=None):
    """What onnxruntime in Python makes of the page's generator for ``seeds``: uint8 (N, H, W, 3)."""
    import onnxruntime

    meta = json.load(open(os.path.join(site, "meta.json")))
    session = onnxruntime.InferenceSession(os.path.join(site, "generator.onnx"))
    feeds = {"z": latents_for_seeds(seeds, meta["z_dim"], meta["z_dist"])}
    if label is not None:
        feeds["label"] = np.full(len(seeds), label, np.int64)
    images = to_uint8_images(session.run(None, feeds)[0])
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def open_page(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("window.pgk && (window.pgk.ready || window.pgk.error)", timeout=60_000)
    return page


def tile_pixels(page, selector="#grid canvas"):
    """RGB of every tile canvas on the page: uint8 (N, H, W, 3)."""
    data = page.evaluate("""(sel) => Array.from(document.querySelectorAll(sel)).map((c) =>
        [c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)])""", selector)
    return np.stack([np.array(px, np.uint8).reshape(side, side, 4)[..., :3] for side, px in data])


def test_the_export_is_a_static_folder_with_no_path_of_this_machine(runs, tmp_path, runtime):
    site = site_of(runs["digits32"], tmp_path, runtime)
    assert sorted(os.listdir(site)) == ["app.js", "generator.onnx", "index.html", "meta.json", "ort", "style.css"]
    assert sorted(os.listdir(os.path.join(site, "ort"))) == sorted(web.RUNTIME_FILES)
    meta = json.load(open(os.path.join(site, "meta.json")))
    assert (meta["run"], meta["size"], meta["channels"], meta["step"], meta["z_dim"]) == ("digits32", 32, 1, 1, 16)
    assert meta["classes"] == [str(d) for d in range(10)] and meta["inputs"] == ["z", "label"]
    z = np.frombuffer(__import__("base64").b64decode(meta["seeds"]["z"]), "<f4").reshape(web.SEEDS, 16)
    np.testing.assert_array_equal(z, latents_for_seeds(range(web.SEEDS), 16, "normal"))
    # nothing names a folder of this machine, in the page or in the plain exports
    other = tmp_path / "plain"
    run_cli("paddle_gan_kit.export", runs["digits32"], "--out", other, "--format", "onnx")
    for folder in (site, str(other)):
        for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
            if os.path.isfile(path):
                data = open(path, "rb").read()
                for private in (str(tmp_path), os.path.dirname(runs["digits32"]), os.path.expanduser("~")):
                    assert private.encode() not in data, (path, private)
    # the page's HTML loads its script and the runtime from the folder itself
    html = open(os.path.join(site, "index.html")).read()
    assert "http://" not in html and "https://" not in html and 'src="ort/ort.wasm.min.js"' in html


def test_a_missing_or_wrong_runtime_is_one_line_before_anything_is_written(runs, tmp_path, monkeypatch):
    env = {web.RUNTIME_ENV: "", "PADDLE_GAN_KIT_CACHE": str(tmp_path / "empty_cache")}
    result = run_cli("paddle_gan_kit.export", runs["colour32"], "--format", "web", "--out", tmp_path / "site", env=env)
    assert_one_line_error(result, f"npm pack onnxruntime-web@{web.RUNTIME_VERSION}", "--runtime", "--download")
    assert not (tmp_path / "site").exists()
    fake = tmp_path / web.RUNTIME_NAME
    fake.write_bytes(b"not the runtime")
    result = run_cli("paddle_gan_kit.export", runs["colour32"], "--format", "web", "--out", tmp_path / "site",
                     "--runtime", fake, env=env)
    assert_one_line_error(result, "has sha256", f"not onnxruntime-web {web.RUNTIME_VERSION}'s")
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("name", ["colour32", "colour64", "digits32", "digits64"])
def test_the_grid_is_what_onnxruntime_makes_in_python(runs, tmp_path, runtime, browser, name):
    site = site_of(runs[name], tmp_path, runtime)
    with Served(site) as url:
        page = open_page(browser, url)
        assert page.evaluate("window.pgk.error") is None
        assert page.text_content("#title") == name and "step 1" in page.text_content("#about")
        shown = tile_pixels(page)
        expected = python_images(site, list(range(16)), 0 if name.startswith("digits") else None)
        assert shown.shape == expected.shape
        assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 2
        if name.startswith("digits"):
            # the class picker lists the run's classes and changes the images to that class's
            assert page.eval_on_selector_all("#class option", "os => os.map(o => o.textContent)") == \
                [str(d) for d in range(10)]
            page.select_option("#class", "7")
            page.wait_for_function("window.pgk.tiles.length && window.pgk.tiles[0].label === 7")
            seven = tile_pixels(page)
            assert np.abs(seven.astype(int) - python_images(site, list(range(16)), 7).astype(int)).max() <= 2
            assert not np.array_equal(seven, shown)
        page.close()


def test_more_favourites_truncation_and_the_walk(runs, tmp_path, runtime, browser):
    site = site_of(runs["colour32"], tmp_path, runtime)
    with Served(site) as url:
        page = open_page(browser, url)
        # the walk plays: its frames change, and it loops back to its first key
        page.wait_for_function("window.pgk.walk.cycles >= 1", timeout=60_000)
        first = tile_pixels(page, "#walk")
        time.sleep(0.3)
        assert not np.array_equal(first, tile_pixels(page, "#walk"))
        # two favourites: the walk goes through them
        page.click('#grid canvas[data-seed="3"]')
        page.click('#grid canvas[data-seed="5"]')
        page.wait_for_function("window.pgk.walk.keys.join() === '3,5'")
        assert page.locator("#favourites canvas").count() == 2
        assert page.locator("#grid figure.favourite").count() == 2
        # more: the next sixteen seeds
        page.click("#more")
        page.wait_for_function("window.pgk.tiles[0].seed === 16")
        assert page.text_content("#grid figcaption") .startswith("seed 16")
        # truncation 0: every z is 0, so every tile is the same image
        page.fill("#truncation", "0")
        page.dispatch_event("#truncation", "input")
        page.wait_for_function("window.pgk.tiles[0].psi === 0")
        tiles = tile_pixels(page)
        assert all(np.array_equal(tiles[0], t) for t in tiles)
        # each tile offers its PNG
        href = page.get_attribute("#grid figcaption a", "href")
        assert href.startswith("data:image/png;base64,")
        page.close()


def test_a_broken_generator_file_shows_the_pages_message(runs, tmp_path, runtime, browser):
    site = site_of(runs["colour32"], tmp_path, runtime)
    with open(os.path.join(site, "generator.onnx"), "wb") as f:
        f.write(b"this is not an onnx model")
    with Served(site) as url:
        page = open_page(browser, url)
        assert page.evaluate("window.pgk.error").startswith("Could not load the generator (generator.onnx)")
        assert page.is_visible("#status") and "Could not load the generator" in page.text_content("#status")
        page.close()


def test_the_demo_serves_the_page_and_cleans_up(runs, tmp_path, runtime):
    import urllib.request

    env = dict(os.environ, PYTHONPATH=REPO, TMPDIR=str(tmp_path), OMP_NUM_THREADS="1", **{web.RUNTIME_ENV: runtime})
    demo = subprocess.Popen([sys.executable, "-m", "paddle_gan_kit.demo", runs["colour32"], "--port", "0"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = demo.stdout.readline()
        assert line.startswith("serving ") and "http://127.0.0.1:" in line, demo.stderr.read()
        url = line.split(" at ")[1].split()[0]
        assert b"ort/ort.wasm.min.js" in urllib.request.urlopen(url, timeout=10).read()
        assert len(urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.wasm", timeout=10).read()) > 1_000_000
        assert glob.glob(str(tmp_path / "pgk-demo-*"))
    finally:
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0 and "stopped" in out
    assert not glob.glob(str(tmp_path / "pgk-demo-*"))
