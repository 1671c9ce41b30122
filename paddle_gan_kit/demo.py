"""``python -m paddle_gan_kit.demo RUN``: the run's web page, served on this machine to try it.

Exports the page (``export --format web``) into a temporary folder, serves it on 127.0.0.1 and
prints the address; Ctrl-C stops the server and removes the folder.

    python -m paddle_gan_kit.demo runs/quickstart --port 8000
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

import paddle_gan_kit  # noqa: F401  (sets CPU threads before Paddle loads)

from paddle_gan_kit.errors import ArgumentParser, GanKitError, cli_entry


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m paddle_gan_kit.demo",
                            description="Serve a run's web page on 127.0.0.1 until Ctrl-C.",
                            epilog="Example: python -m paddle_gan_kit.demo runs/quickstart --port 8000")
    parser.add_run_arguments()
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free one)")
    parser.add_argument("--runtime", metavar="TGZ", help="onnxruntime-web's npm tarball (as export --format web)")
    parser.add_argument("--download", action="store_true", help="fetch that tarball once into the cache folder")
    return parser


@cli_entry
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise GanKitError(f"--port must be 0 to 65535, got {args.port}")
    from paddle_gan_kit.web import export_site, page_server, runtime_archive

    runtime_archive(args.runtime, args.download)  # one line before anything is exported
    folder = tempfile.mkdtemp(prefix="pgk-demo-")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it as Ctrl-C does
    server = None
    try:
        site = os.path.join(folder, "site")
        export_site(args.run, site, snapshot=args.snapshot, runtime=args.runtime, download=args.download)
        server = page_server(site, args.port)
        print(f"serving {args.run} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops it)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.server_close()
        shutil.rmtree(folder, ignore_errors=True)
    print("stopped; the page's folder is removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
