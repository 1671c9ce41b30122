"""Back-to-back pairs against PyTorch eager: every recipe in configs/, alternated (not a test).

For each case, ``--pairs`` rounds of ``bench_torch_baseline.py`` (in the Python that has torch)
and ``bench_train.py`` (this Python) on the same nets, batch, step and threads, the order swapped
every other round so that a machine whose speed drifts favours neither side. One JSON line per
pair, then a table: images/s of each side, the ratio of each pair and their median::

    python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.13.0 numpy
    OMP_NUM_THREADS=2 python benchmarks/bench_pairs.py --torch-python /tmp/tvenv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# case -> (PyTorch baseline arguments, bench_train.py arguments): the recipes the bar names
CASES = {
    "wgan_gp_64": ("--model wgan_gp --size 64 --batch-size 64", "--model wgan_gp --size 64 --batch-size 64"),
    "wgan_gp_96": ("--model wgan_gp --size 96 --batch-size 64", "--recipe wgan_gp_96"),
    "dcgan_64": ("--model dcgan --size 64 --batch-size 64", "--model dcgan --size 64 --batch-size 64"),
    "dcgan_96": ("--model dcgan --size 96 --batch-size 64", "--recipe dcgan_96"),
    "quickstart_cpu": ("--model dcgan --size 32 --batch-size 32 --widths 32 --g-upsample nearest --ema",
                       "--recipe quickstart_cpu"),
    "dcgan_mnist_32": ("--model dcgan --size 32 --batch-size 64 --widths 32 --channels 1", "--recipe dcgan_mnist_32"),
    # the other recipes in configs/; PyTorch has no DiffAugment here, so on the small-data recipes
    # ours does more work a step and the ratio is a lower bound
    "dcgan_64_recipe": ("--model dcgan --size 64 --batch-size 128", "--recipe dcgan_64"),
    "wgan_gp_256": ("--model wgan_gp --size 256 --batch-size 32 --widths 32", "--recipe wgan_gp_256"),
    "dcgan_nearest_ema_32": ("--model dcgan --size 32 --batch-size 64 --g-upsample nearest --ema",
                             "--recipe dcgan_nearest_ema_32"),
    "dcgan_grayscale_32": ("--model dcgan --size 32 --batch-size 64 --g-upsample nearest --ema",
                           "--recipe dcgan_grayscale_32"),
    "wgan_gp_grayscale_32": ("--model wgan_gp --size 32 --batch-size 64 --g-upsample nearest --ema",
                             "--recipe wgan_gp_grayscale_32"),
    "dcgan_small_data_32": ("--model dcgan --size 32 --batch-size 64 --g-upsample nearest --ema",
                            "--recipe dcgan_small_data_32"),
    "dcgan_small_data_64": ("--model dcgan --size 64 --batch-size 64 --g-upsample nearest --ema",
                            "--recipe dcgan_small_data_64"),
    "wgan_gp_small_data_32": ("--model wgan_gp --size 32 --batch-size 64 --g-upsample nearest --ema",
                              "--recipe wgan_gp_small_data_32"),
}


def images_per_s(python: str, script: str, args: str, steps: int) -> float:
    command = [python, os.path.join(HERE, script), *args.split(), "--steps", str(steps)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["train_images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True, help="a Python with torch installed")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="repeatable; default all")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (median taken)")
    args = parser.parse_args()
    table = []
    for case in args.case or list(CASES):
        torch_args, our_args = CASES[case]
        ratios = []
        for pair in range(args.pairs):
            runs = [(args.torch_python, "bench_torch_baseline.py", torch_args),
                    (sys.executable, "bench_train.py", our_args)]
            if pair % 2:
                runs.reverse()
            speed = {script: images_per_s(python, script, extra, args.steps) for python, script, extra in runs}
            torch_speed, ours = speed["bench_torch_baseline.py"], speed["bench_train.py"]
            ratios.append(ours / torch_speed)
            print(json.dumps({"case": case, "pair": pair + 1, "torch_images_per_s": torch_speed,
                              "ours_images_per_s": ours, "ratio": round(ours / torch_speed, 3)}), flush=True)
        table.append((case, ratios))
    print(f"\n{'case':<16} {'ratio per pair':<40} median  (threads {os.environ.get('OMP_NUM_THREADS', 'default')})")
    for case, ratios in table:
        print(f"{case:<16} {', '.join(f'{r:.2f}' for r in ratios):<40} {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
