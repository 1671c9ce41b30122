"""Multi-process training with Paddle's own launcher (2 CPU processes, gloo)."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from paddle_gan_kit import snapshot
from conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def launch(tmp_path, *args, nproc=2):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
           "--log_dir", str(tmp_path / "launch_logs"), *map(str, args)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    logs = "".join(open(p).read() for p in sorted(glob.glob(str(tmp_path / "launch_logs" / "workerlog.*"))))
    assert result.returncode == 0, logs[-3000:]
    return logs


def test_two_ranks_stay_identical_and_write_one_set_of_files(tmp_path, tiny_npy):
    """Two ranks with DiffAugment and R1 on top of the gradient penalty (the penalties' extra
    critic passes run under paddle.DataParallel before the backward)."""
    out = tmp_path / "run"
    logs = launch(tmp_path, "tests/dist_worker.py", "fit", out, tiny_npy, 3, "wgan_gp",
                  "augment=translation,color,cutout", "r1_gamma=1")
    assert "x 2 ranks" in logs
    a, b = np.load(out / "params_rank0.npz"), np.load(out / "params_rank1.npz")
    assert a.files == b.files
    for key in a.files:  # weights through all-reduce, BatchNorm statistics through broadcast
        assert np.array_equal(a[key], b[key]), key
    assert len(glob.glob(str(out / "vdl" / "vdlrecords.*"))) == 1
    assert [s for s, _ in snapshot.list_snapshots(str(out / "snapshots"))] == [2, 3]
    assert sorted(os.listdir(out / "samples")) == ["step_00000000.png", "step_00000002.png", "step_00000003.png"]
    log = open(out / "train.log").read()
    assert log.count("done: step 3") == 1 and log.count(" r1 ") == 3  # the R1 term, logged each step

    # resume the 2-rank run on 1 process: continues from step 3 with the same weights
    result = run_cli("paddle_gan_kit.train", "--out", out, "--resume", "--steps", 5, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "(step 3)" in result.stderr and "2 ranks" in result.stderr
    payload = snapshot.load_newest(str(out / "snapshots")).payload
    assert payload["step"] == 5 and payload["world_size"] == 1


def test_two_ranks_with_half_batches_equal_one_rank(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros((64, 16, 16, 3), np.uint8))
    launch(tmp_path, "tests/dist_worker.py", "equiv", tmp_path, 8)
    os.makedirs(tmp_path / "single", exist_ok=True)
    np.save(tmp_path / "single" / "data.npy", np.zeros((64, 16, 16, 3), np.uint8))
    single = subprocess.run([sys.executable, "tests/dist_worker.py", "equiv", str(tmp_path / "single"), "8"],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    two = [np.load(tmp_path / f"critic_world2_rank{r}.npz") for r in (0, 1)]
    one = np.load(tmp_path / "single" / "critic_world1_rank0.npz")
    grads = [k for k in one.files if k.startswith("grad.")]
    assert grads and set(one.files) == set(two[0].files)
    for key in one.files:
        scale = max(1.0, float(np.abs(one[key]).max()))
        np.testing.assert_allclose(two[0][key], one[key], rtol=0, atol=1e-5 * scale, err_msg=key)
        assert np.array_equal(two[0][key], two[1][key]), key


def test_two_ranks_train_the_projected_d_and_stay_identical(tmp_path, tiny_npy, real_lite0):
    """The projected D on 2 ranks: the heads' gradients are all-reduced through DataParallel (the
    frozen network and the random projections need none), so both ranks end with the same weights
    and BatchNorm statistics, and one set of files is written."""
    out = tmp_path / "run"
    logs = launch(tmp_path, "tests/dist_worker.py", "fit", out, tiny_npy, 3, "dcgan", "d_arch=projected", "loss=hinge",
                  "backbone_levels=2", "augment=translation,color,cutout", "n_critic=1")
    assert "x 2 ranks" in logs
    a, b = np.load(out / "params_rank0.npz"), np.load(out / "params_rank1.npz")
    assert a.files == b.files and any(k.startswith("D.heads.") for k in a.files)
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key
    payload = snapshot.load_newest(str(out / "snapshots")).payload
    assert payload["step"] == 3 and payload["backbone"]["name"] == "efficientnet_lite0"
