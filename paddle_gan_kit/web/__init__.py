"""A trained generator as a static web page that runs it in the visitor's browser.

``export_site(run, out)`` writes ``out/``: ``index.html`` with ``app.js`` and ``style.css`` (this
folder's files), ``generator.onnx`` (the ONNX export), ``meta.json`` (the run's name, model, size,
step, channels, latent size and prior, class names, and the latents of seeds 0 to
``SEEDS - 1``, so that the page's "seed k" is the image ``sample RUN --seed k`` gives) and
``ort/``, onnxruntime-web's WebAssembly runtime at a pinned version. The folder loads nothing
from elsewhere: any static host serves it, and so does ``python -m http.server`` with no network.

The runtime comes from the npm registry's own tarball of ``onnxruntime-web`` (``npm pack
onnxruntime-web@1.20.1`` writes it; ``--download`` fetches the same file), checked by sha256; only
its three files the page needs are unpacked.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import tarfile
import tempfile

import numpy as np

from safe_files import cache_dir, sha256_of, write_bytes_atomic, write_text_atomic
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.latent import latents_for_seeds

RUNTIME_VERSION = "1.20.1"
RUNTIME_NAME = f"onnxruntime-web-{RUNTIME_VERSION}.tgz"
RUNTIME_SHA256 = "0a38facf0672dfaaeaf352e8a9f44533732b60b4af93b9dd507fe7c2d2be437b"
RUNTIME_URL = f"https://registry.npmjs.org/onnxruntime-web/-/{RUNTIME_NAME}"
RUNTIME_ENV = "PADDLE_GAN_KIT_ORT_WEB"
# the WebAssembly build only (no WebGL/WebGPU): its loader, its module and the module's binary
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
RUNTIME_FIX = (f"run npm pack onnxruntime-web@{RUNTIME_VERSION} and pass --runtime {RUNTIME_NAME} (or set "
               f"{RUNTIME_ENV} to it, or put it in the cache folder), or add --download")
PAGE_FILES = ("index.html", "app.js", "style.css")
SEEDS = 128  # seeds whose exact latents the page carries; "more" beyond them draws its own
HERE = os.path.dirname(os.path.abspath(__file__))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a page's folder without a log line per request."""

    def log_message(self, format, *args):
        pass


def page_server(folder: str, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server of ``folder`` on 127.0.0.1:``port`` (0: a free port), not yet serving; one line
    when the port cannot be had."""
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(QuietHandler, directory=folder))
    except OSError as exc:
        raise GanKitError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror}); choose another --port") from None


def runtime_archive(given: str | None = None, download: bool = False) -> str:
    """The checked onnxruntime-web tarball: ``given``, else $PADDLE_GAN_KIT_ORT_WEB, else the cache
    folder's copy, else (with ``download``) fetched from the npm registry into the cache folder.
    One line naming the command that fixes it when there is none, or it is another file."""
    path = given or os.environ.get(RUNTIME_ENV) or None
    cached = os.path.join(str(cache_dir()), RUNTIME_NAME)
    if path is None and os.path.isfile(cached):
        path = cached
    if path is None and download:
        from paddle_gan_kit.metrics.pretrained import download_checked

        path = download_checked(RUNTIME_URL, RUNTIME_NAME, lambda sha: None if sha == RUNTIME_SHA256 else
                                f"has sha256 {sha[:16]}..., not {RUNTIME_SHA256[:16]}...", RUNTIME_FIX)
    if path is None:
        raise GanKitError(f"the web page needs onnxruntime-web {RUNTIME_VERSION}'s runtime, which is not here: "
                          f"{RUNTIME_FIX}")
    if not os.path.isfile(path):
        raise GanKitError(f"the onnxruntime-web runtime {path} does not exist; {RUNTIME_FIX}")
    sha = sha256_of(path)
    if sha != RUNTIME_SHA256:
        raise GanKitError(f"{path} has sha256 {sha[:16]}..., not onnxruntime-web {RUNTIME_VERSION}'s "
                          f"{RUNTIME_SHA256[:16]}...; {RUNTIME_FIX}")
    return path


def unpack_runtime(archive: str, dest: str) -> None:
    """The page's three runtime files from the npm tarball into ``dest`` (by name, nothing else)."""
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for name in RUNTIME_FILES:
            member = tar.extractfile(f"package/dist/{name}")
            write_bytes_atomic(os.path.join(dest, name), member.read())


def page_meta(meta: dict, seeds: int) -> dict:
    """What the page reads: the export's description (``export_generator``'s meta.json) plus the
    classes and the seeds' latents."""
    z = latents_for_seeds(range(seeds), meta["z_dim"], meta["z_dist"])  # (seeds, z_dim) float32, as sample draws them
    classes = (meta.get("label") or {}).get("classes")
    return {
        "run": meta["run"], "model": meta["model"], "size": meta["size"], "channels": meta["channels"],
        "step": meta["step"], "z_dim": meta["z_dim"], "z_dist": meta["z_dist"], "classes": classes,
        "inputs": ["z", "label"] if classes else ["z"],
        "seeds": {"count": seeds, "z": base64.b64encode(np.ascontiguousarray(z, "<f4").tobytes()).decode("ascii")},
        "runtime": f"onnxruntime-web {RUNTIME_VERSION}",
    }


def export_site(run: str, out: str, snapshot=None, runtime: str | None = None, download: bool = False,
                seeds: int = SEEDS) -> str:
    """Write the web page of ``run``'s generator into the new (or empty) folder ``out``; returns
    the path of its ``index.html``. Checks the runtime and ``out`` before anything is written."""
    from paddle_gan_kit.export import export_generator

    archive = runtime_archive(runtime, download)
    if os.path.isdir(out) and os.listdir(out):
        raise GanKitError(f"--out {out} is not empty; choose a new folder (an export is never overwritten)")
    with tempfile.TemporaryDirectory(prefix="pgk-web-") as tmp:
        export_generator(run, tmp, snapshot=snapshot, format="onnx")
        with open(os.path.join(tmp, "meta.json")) as f:
            meta = json.load(f)
        os.makedirs(out, exist_ok=True)
        shutil.copyfile(os.path.join(tmp, "generator.onnx"), os.path.join(out, "generator.onnx"))
    for name in PAGE_FILES:
        shutil.copyfile(os.path.join(HERE, name), os.path.join(out, name))
    unpack_runtime(archive, os.path.join(out, "ort"))
    write_text_atomic(os.path.join(out, "meta.json"), json.dumps(page_meta(meta, seeds)))
    return os.path.join(out, "index.html")
