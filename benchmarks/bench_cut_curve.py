"""The cut judge along a run: which cuts appear when, and does anything collapse (a benchmark).

Scores every kept snapshot of one or more runs on the built-in gems (train them with
``--snapshot-every K --set keep_snapshots=1000``) with the cut judge (``metrics.cuts``), on the
same ``--n`` latents every time, against ``--n`` of the run's own gems, and prints one JSON line
per snapshot: step, training minutes, recognised share and its ratio to the real gems', cuts
found, each cut's share, the judge's FD; ``--mobilenet K`` adds the MobileNetV2 FD every K
steps. ``--plot FILE`` draws the curves (ratio, cuts found) of every run against training minutes.

    python benchmarks/bench_cut_curve.py runs/quickstart --every 1000 --plot docs/cut_curves.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_gan_kit  # noqa: E402,F401  (sets CPU threads before Paddle loads)
import numpy as np  # noqa: E402

from paddle_gan_kit import snapshot as snapshots  # noqa: E402
from paddle_gan_kit.data import load_images  # noqa: E402
from paddle_gan_kit.latent import draw_latents, generate_images  # noqa: E402
from paddle_gan_kit.metrics import Evaluator, cuts  # noqa: E402
from paddle_gan_kit.run import generator_from_payload  # noqa: E402


def curve(run: str, every: int, n: int, mobilenet_every: int, judge: cuts.CutJudge):
    """Yield one record per snapshot of ``run`` whose step is a multiple of ``every``."""
    listed = [(step, path) for step, path in snapshots.list_snapshots(os.path.join(run, "snapshots"))
              if step % every == 0]
    if not listed:
        raise SystemExit(f"{run} has no snapshot at a multiple of {every} steps")
    first = snapshots.read_snapshot(listed[0][1])
    _, cfg = generator_from_payload(first, listed[0][1])
    data = load_images(cfg.data, cfg.size, gems_count=cfg.gems_count, progress=False)
    subset = np.sort(np.random.default_rng([0, 1]).permutation(len(data.images))[:n])
    real = cuts.RealCuts(judge, np.asarray(data.images[subset]), data.labels[subset])
    evaluator = None
    latents = draw_latents(np.random.default_rng(0), n, cfg.z_dim, cfg.z_dist)
    asked = np.resize(data.labels[subset], n) if cfg.conditional else None
    for step, path in listed:
        payload = snapshots.read_snapshot(path)
        generator, _ = generator_from_payload(payload, path)
        fake = generate_images(generator, latents, 100, asked)
        record = {"run": os.path.basename(os.path.normpath(run)), "step": step,
                  "minutes": round(float(payload.get("train_seconds", 0.0)) / 60, 2),
                  **cuts.cut_scores(judge, real, fake, asked)}
        if mobilenet_every and step % mobilenet_every == 0:
            if evaluator is None:
                evaluator = Evaluator(data.images, data.labels, "mobilenet_v2", n=n, seed=0, metrics=("fid",))
            record["mobilenet_fd"] = evaluator(generator, cfg.z_dim, cfg.z_dist, cfg.conditional)["fid"]
        yield record


def plot(records: list, path: str, step_seconds: dict) -> None:
    """The curves against minutes of training: a run's own ``train_seconds``, or its steps times
    ``step_seconds[run]`` (a step's time measured on a quiet machine) for runs without them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.3))
    axes = fig.subplots(1, 3)
    for run in dict.fromkeys(r["run"] for r in records):
        mine = [r for r in records if r["run"] == run]
        x = [r["minutes"] or r["step"] * step_seconds.get(run, 0) / 60 or r["step"] for r in mine]
        for ax, key in zip(axes, ("cut_recognised_ratio", "cuts_found", "cut_fd")):
            ax.plot(x, [r[key] for r in mine], label=run, lw=1.3, marker=".", ms=3)
    for ax, label in zip(axes, ("recognised / real gems' rate", "cuts found (of 10)", "cut-judge FD")):
        ax.set_ylabel(label)
        ax.set_xlabel("minutes of training" + (" (steps x quiet step time)" if step_seconds else ""))
        ax.grid(alpha=0.3)
    axes[0].axhline(0.7, color="grey", lw=0.8, ls="--")
    axes[1].set_ylim(0, 10.5)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", help="run directories on the built-in gems")
    parser.add_argument("--every", type=int, default=1000, help="score snapshots at multiples of this step")
    parser.add_argument("--n", type=int, default=1000, help="generated and real pictures per score")
    parser.add_argument("--mobilenet", type=int, default=0, help="add the MobileNetV2 FD every this many steps")
    parser.add_argument("--plot", help="PNG of the curves")
    parser.add_argument("--json", help="write every record to this JSON file")
    parser.add_argument("--from-json", nargs="+", help="plot records written by --json instead of scoring runs")
    parser.add_argument("--step-seconds", nargs="+", default=[], metavar="RUN=S",
                        help="for runs whose snapshots lack train_seconds: a step's seconds, for the plot's x axis")
    args = parser.parse_args()
    step_seconds = {k: float(v) for k, v in (item.split("=") for item in args.step_seconds)}
    if args.from_json:
        records = [r for path in args.from_json for r in json.load(open(path))]
        plot(records, args.plot, step_seconds)
        return 0
    judge = cuts.CutJudge()
    records = []
    for run in args.runs:
        for record in curve(run, args.every, args.n, args.mobilenet, judge):
            records.append(record)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if args.plot:
        plot(records, args.plot, step_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
