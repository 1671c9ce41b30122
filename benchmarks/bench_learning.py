"""Does training learn MNIST? Classifier-feature FD, KID and class coverage against steps (a benchmark,
not a test).

Trains the MNIST recipe at 32 px (configs/dcgan_mnist_32.yaml: uniform z, widths 32, batch 64,
builtin:mnist; for ``--model wgan_gp`` the same data, prior and widths with the model's own
optimiser defaults) and prints one JSON line per evaluation: step, training seconds so far, FD,
KID, classes covered and evenness, with the counts and extractor they depend on. The generator
is scored in eval mode on the same noise every time (``paddle_gan_kit.metrics.Evaluator``).

    python benchmarks/bench_learning.py --model dcgan --steps 1000 --eval-every 100
    python benchmarks/bench_learning.py --model wgan_gp --steps 500 --eval-every 50 --set n_critic=5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_gan_kit  # noqa: E402  (sets CPU threads before Paddle loads)
import paddle  # noqa: E402

from paddle_gan_kit.config import build_config, load_yaml, parse_set  # noqa: E402
from paddle_gan_kit.metrics import Evaluator  # noqa: E402
from paddle_gan_kit.trainer import Trainer  # noqa: E402

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "dcgan_mnist_32.yaml")


def mnist_config(model: str, steps: int, seed: int, out: str, overrides: dict):
    """The MNIST 32 px recipe for ``model``, without periodic outputs (the loop here is timed)."""
    values = load_yaml(RECIPE)
    values.update(model=model, steps=steps, seed=seed, out=out, snapshot_every=10 ** 9, sample_every=10 ** 9,
                  log_every=10 ** 9)
    values.update(overrides)
    return build_config(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["dcgan", "wgan_gp"], default="dcgan")
    parser.add_argument("--steps", type=int, default=1000, help="generator updates")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations (and at step 0)")
    parser.add_argument("--n", type=int, default=1000, help="generated (and real) images per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = mnist_config(args.model, args.steps, args.seed, os.path.join(tmp, "run"), parse_set(args.set))
        trainer = Trainer(cfg, progress=False)
        t0 = time.perf_counter()
        evaluator = Evaluator(trainer.data.images, trainer.data.labels, "classifier", n=args.n, seed=args.seed)
        setup_s = time.perf_counter() - t0
        print(json.dumps({"model": args.model, "config": {k: v for k, v in trainer.cfg.to_dict().items()
                                                          if k not in ("out", "snapshot_every", "sample_every", "log_every")},
                          "evaluator": evaluator.describe(), "evaluator_setup_s": round(setup_s, 1),
                          "threads": os.environ.get("OMP_NUM_THREADS"), "paddle": paddle.__version__}), flush=True)
        train_s = 0.0
        while True:
            t0 = time.perf_counter()
            result = evaluator(trainer.objective.generator, trainer.cfg.z_dim, trainer.cfg.z_dist)
            line = {"model": args.model, "step": trainer.step, "train_s": round(train_s, 1),
                    "eval_s": round(time.perf_counter() - t0, 1)}
            line.update({k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.items()})
            print(json.dumps(line), flush=True)
            if trainer.step >= args.steps:
                break
            t0 = time.perf_counter()
            for _ in range(min(args.eval_every, args.steps - trainer.step)):
                values = trainer.train_step()
                trainer.step += 1
            float(values["loss_g"])  # wait for queued device work before the clock stops
            train_s += time.perf_counter() - t0


if __name__ == "__main__":
    main()
