"""The projected discriminator's frozen EfficientNet-Lite0: milliseconds per batch forward without a
graph (real images, and generated ones in D's update) and forward + backward to the input (G's
update), by input side, feature levels and convolution backend (a benchmark, not a test).

    python benchmarks/bench_backbone.py                       # sides 32 64 128, levels 2 and 4, both backends
    python benchmarks/bench_backbone.py --sides 64 --levels 4 --batch-size 32 --backend onednn

Prints one JSON line per case: the median of ``--repeats`` timed calls after two warm-up calls,
with the threads of $OMP_NUM_THREADS. Needs EfficientNet-Lite0's weights (see
paddle_gan_kit/models/efficientnet_lite.py); random inputs, so only compute is measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import paddle_gan_kit  # noqa: E402,F401  (sets CPU threads before Paddle loads)
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_gan_kit import fastconv  # noqa: E402
from paddle_gan_kit.models import efficientnet_lite  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backend", nargs="+", default=["onednn", "paddle"], choices=["onednn", "paddle"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    path = efficientnet_lite.weights_path()
    efficientnet_lite.check_weights(path)
    fastconv.configure("auto", "cpu")
    for levels in args.levels:
        net = efficientnet_lite.load_features(path, levels)
        for side in args.sides:
            x0 = paddle.to_tensor(np.random.default_rng(side).uniform(-1, 1, (args.batch_size, 3, side, side))
                                  .astype(np.float32))

            def forward():
                with paddle.no_grad():
                    float(sum(f.sum() for f in net(x0)))

            def forward_backward():
                x = x0.clone()
                x.stop_gradient = False
                (grad,) = paddle.grad(sum(f.mean() for f in net(x)), [x])
                float(grad.sum())

            for backend in args.backend:
                with fastconv.using(backend):
                    line = {"side": side, "levels": levels, "batch_size": args.batch_size, "backend": backend,
                            "forward_ms": round(median_ms(forward, args.repeats), 1),
                            "forward_backward_ms": round(median_ms(forward_backward, args.repeats), 1),
                            "threads": os.environ.get("OMP_NUM_THREADS"), "paddle": paddle.__version__}
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
