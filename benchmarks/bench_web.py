"""The web page in headless Chromium: its weight, the time from opening it to the first grid, and
a walk frame's time (a benchmark: prints one JSON line per run).

Exports each run's page (``export --format web``; the runtime from $PADDLE_GAN_KIT_ORT_WEB or
``--runtime``), serves it on 127.0.0.1 and opens it ``--loads`` times in Debian's chromium (a new
browser context each time, so nothing is cached), reading what the page records in ``window.pgk``;
the walk's frame time is its running mean after ``--walk-seconds``. ``--screenshot FILE`` keeps a
picture of the first run's page.

    python benchmarks/bench_web.py runs/quickstart --screenshot docs/web_page.png
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

import paddle_gan_kit  # noqa: E402,F401  (sets CPU threads before Paddle loads)

from paddle_gan_kit import web  # noqa: E402
from conftest import CHROMIUM, CHROMIUM_ARGS, Served  # noqa: E402


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--runtime", help="onnxruntime-web's npm tarball (default $PADDLE_GAN_KIT_ORT_WEB)")
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--walk-seconds", type=float, default=4.0)
    parser.add_argument("--screenshot", help="PNG of the first run's page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for i, run in enumerate(args.runs):
            site = os.path.join(tmp, f"site{i}")
            web.export_site(run, site, runtime=args.runtime)
            first, frames, fps = [], [], []
            with Served(site) as url:
                for load in range(args.loads):
                    context = browser.new_context(viewport={"width": 1000, "height": 1100})
                    page = context.new_page()
                    started = time.perf_counter()
                    page.goto(url)
                    page.wait_for_function("window.pgk.ready || window.pgk.error", timeout=120_000)
                    wall = (time.perf_counter() - started) * 1000
                    if page.evaluate("window.pgk.error"):
                        raise SystemExit(page.evaluate("window.pgk.error"))
                    first.append(min(wall, page.evaluate("window.pgk.firstGridMs")))
                    time.sleep(args.walk_seconds)
                    frames.append(page.evaluate("window.pgk.walk.frameMs"))
                    fps.append(page.evaluate("window.pgk.fps"))
                    if load == 0 and i == 0 and args.screenshot:
                        page.screenshot(path=args.screenshot, full_page=True)
                    context.close()
            meta = json.load(open(os.path.join(site, "meta.json")))
            print(json.dumps({"run": meta["run"], "size": meta["size"], "page_mb": round(folder_bytes(site) / 1e6, 2),
                              "onnx_mb": round(os.path.getsize(os.path.join(site, "generator.onnx")) / 1e6, 2),
                              "first_grid_ms": round(statistics.median(first)),
                              "walk_frame_ms": round(statistics.median(frames), 2),
                              "walk_fps": round(statistics.median(fps), 1), "loads": args.loads}), flush=True)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
