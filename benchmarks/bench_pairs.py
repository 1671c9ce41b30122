"""Back-to-back pairs against PyTorch eager: every recipe in configs/, alternated (not a test).

For each case, ``--pairs`` rounds of ``bench_torch_baseline.py`` (in the Python that has torch)
and ``bench_train.py`` (this Python) on the same nets, batch, step and threads, the order swapped
every other round so that a machine whose speed drifts favours neither side. One JSON line per
pair, then a table: the ratio of our images/s to PyTorch's in training, in sampling (eval
mode, no gradients, one batch) and in a latent walk (32 slerp frames/s, generated alone, and
generated and encoded as a GIF with the same Pillow calls, whose time depends on what the frames
show) for each pair, and their medians::

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
# (the small-data recipes, configs/<model>_small_data_<size>.yaml, share one pattern)
CASES = {
    "wgan_gp_64": ("--model wgan_gp --size 64 --batch-size 64", "--model wgan_gp --size 64 --batch-size 64"),
    "wgan_gp_96": ("--model wgan_gp --size 96 --batch-size 64", "--recipe wgan_gp_96"),
    "dcgan_64": ("--model dcgan --size 64 --batch-size 64", "--model dcgan --size 64 --batch-size 64"),
    "dcgan_96": ("--model dcgan --size 96 --batch-size 64", "--recipe dcgan_96"),
    "quickstart_cpu": ("--model dcgan --size 32 --batch-size 32 --widths 32 --g-upsample nearest --ema"
                       " --augment translation,color",
                       "--recipe quickstart_cpu"),
    "dcgan_mnist_32": ("--model dcgan --size 32 --batch-size 64 --widths 32 --channels 1", "--recipe dcgan_mnist_32"),
    # the other recipes in configs/
    "dcgan_64_recipe": ("--model dcgan --size 64 --batch-size 128", "--recipe dcgan_64"),
    "wgan_gp_256": ("--model wgan_gp --size 256 --batch-size 32 --widths 32", "--recipe wgan_gp_256"),
    "dcgan_nearest_ema_32": ("--model dcgan --size 32 --batch-size 64 --g-upsample nearest --ema",
                             "--recipe dcgan_nearest_ema_32"),
    "dcgan_grayscale_32": ("--model dcgan --size 32 --batch-size 64 --g-upsample nearest --ema",
                           "--recipe dcgan_grayscale_32"),
    "wgan_gp_grayscale_32": ("--model wgan_gp --size 32 --batch-size 64 --g-upsample nearest --ema",
                             "--recipe wgan_gp_grayscale_32"),
    **{f"{model}_small_data_{size}": (f"--model {model} --size {size} --batch-size 64 --g-upsample nearest"
                                       " --ema --augment translation,color",
                                       f"--recipe {model}_small_data_{size}")
       for model, size in (("dcgan", 32), ("dcgan", 64), ("dcgan", 96), ("wgan_gp", 32), ("wgan_gp", 64))},
}


def measure(python: str, script: str, args: str, steps: int) -> dict:
    """The last JSON line a benchmark script prints (training and sampling images/s)."""
    command = [python, os.path.join(HERE, script), *args.split(), "--steps", str(steps)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        ratios = {"train": [], "sample": [], "walk_generate": [], "walk": []}
        for pair in range(args.pairs):
            runs = [(args.torch_python, "bench_torch_baseline.py", torch_args),
                    (sys.executable, "bench_train.py", our_args)]
            if pair % 2:
                runs.reverse()
            found = {script: measure(python, script, extra, args.steps) for python, script, extra in runs}
            theirs, ours = found["bench_torch_baseline.py"], found["bench_train.py"]
            line = {"case": case, "pair": pair + 1}
            for kind in ratios:
                key = f"{kind}_frames_per_s" if kind.startswith("walk") else f"{kind}_images_per_s"
                ratios[kind].append(ours[key] / theirs[key])
                line.update({f"torch_{key}": theirs[key], f"ours_{key}": ours[key],
                             f"{kind}_ratio": round(ours[key] / theirs[key], 3)})
            print(json.dumps(line), flush=True)
        table.append((case, ratios))
    headers = ("training", "sampling", "walk frames", "walk + GIF")
    print(f"\n{'case':<22} " + "  ".join(f"{h + ', per pair':<22} median" for h in headers)
          + f"  (threads {os.environ.get('OMP_NUM_THREADS', 'default')})")
    for case, ratios in table:
        cells = [(", ".join(f"{r:.2f}" for r in ratios[kind]), statistics.median(ratios[kind])) for kind in ratios]
        print(f"{case:<22} " + "  ".join(f"{text:<22} {median:>6.2f}" for text, median in cells))

if __name__ == "__main__":
    main()
