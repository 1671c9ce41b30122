"""Kill a training run with SIGKILL at random moments, resume it each time, and check that it
ends bit-identical to the same run trained without interruption.

    python benchmarks/stress_kill_resume.py --kills 20 --model dcgan --seed 0
    python benchmarks/stress_kill_resume.py --kills 20 --set d_arch=projected --set loss=hinge --set n_critic=1

Prints one JSON line per kill (the step it resumed from) and a summary line with the number of
arrays that differ from the uninterrupted run (0 means bit-identical). Tiny nets on a small
random dataset, so a run of 20 kills takes a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from paddle_gan_kit import snapshot  # noqa: E402

TINY = ["--size", "16", "--batch-size", "8", "--set", "g_channels=8", "--set", "d_channels=8",
        "--set", "z_dim=16", "--set", "n_samples=16", "--no-progress", "--log-every", "3", "--sample-every", "7"]


def train(args, env, kill_after=None):
    """Run the train CLI; with ``kill_after`` seconds, SIGKILL it then (if still running)."""
    proc = subprocess.Popen([sys.executable, "-m", "paddle_gan_kit.train", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(err)
        return True
    time.sleep(kill_after)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        return False
    return proc.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--model", default="dcgan", choices=["dcgan", "wgan_gp"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config keys for both runs")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npy")
        np.save(data, np.random.default_rng(0).integers(0, 256, (256, 16, 16, 3), dtype=np.uint8))
        common = ["--model", args.model, "--data", data, "--steps", args.steps, "--snapshot-every", 2,
                  "--set", "n_critic=2", *TINY, *[f for item in args.set for f in ("--set", item)]]
        t0 = time.perf_counter()
        train([*common, "--out", os.path.join(tmp, "whole")], env)
        whole_s = time.perf_counter() - t0
        killed = os.path.join(tmp, "killed")
        kills = 0
        while True:
            # a process needs ~3 s to start; kill it somewhere in its first ~1/12 of training
            finished = train([*common, "--out", killed, "--resume"], env, kill_after=rng.uniform(3.0, 3.0 + whole_s / 12))
            snaps = snapshot.list_snapshots(os.path.join(killed, "snapshots"))
            print(json.dumps({"kill": kills + (not finished), "finished": finished,
                              "newest_snapshot_step": snaps[-1][0] if snaps else None}), flush=True)
            if finished:
                break
            kills += 1
            if kills >= args.kills:  # enough kills: let it finish
                train([*common, "--out", killed, "--resume"], env)
                break
        a = snapshot.read_snapshot(os.path.join(tmp, "whole", "snapshots", snapshot.snapshot_name(args.steps)))
        b = snapshot.read_snapshot(os.path.join(killed, "snapshots", snapshot.snapshot_name(args.steps)))
        differ = [f"{part}.{key}" for part in ("generator", "discriminator", "opt_g", "opt_d")
                  for key, value in a[part].items()
                  if isinstance(value, np.ndarray) and not np.array_equal(value, b[part][key])]
        print(json.dumps({"model": args.model, "set": args.set, "steps": args.steps, "kills": kills,
                          "arrays_differing": len(differ),
                          "first_differing": differ[:3], "data_order_equal": a["data_order"] == b["data_order"]}))


if __name__ == "__main__":
    main()
