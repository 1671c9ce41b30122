"""The cut judge of the built-in gems: its accuracy on fresh stones, what it refuses, what its
numbers say of a collapsed or a one-colour generator, and where it is reported."""
import json

import cv2
import numpy as np
import pytest

from data_prep import gems
from paddle_gan_kit.metrics import Evaluator, MetricsError, cuts
from conftest import assert_one_line_error, run_cli, vdl_records

TEST_SEED = 103  # neither the judge's training (101) nor its held-out (102) seed, nor the data's (0)


@pytest.fixture(scope="module")
def judge():
    return cuts.CutJudge()


@pytest.fixture(scope="module")
def fresh():
    """600 fresh gems at 32 px and their cuts."""
    return gems.render_gems(600, 32, TEST_SEED), gems.gem_cuts(600, TEST_SEED)


@pytest.fixture(scope="module")
def real(judge):
    """What the judge says of 500 of the built-in gems (the data of a training run)."""
    images = gems.render_gems(500, 32, 0)
    return cuts.RealCuts(judge, images, gems.gem_cuts(500, 0))


def test_shipped_weights_are_checked(tmp_path):
    assert cuts._weights_sha256(cuts.WEIGHTS_FILE) == cuts.WEIGHTS_SHA256
    other = tmp_path / "judge.safetensors"
    other.write_bytes(b"not weights")
    with pytest.raises(MetricsError, match="is not a safetensors file"):
        cuts.CutJudge(str(other))
    with pytest.raises(MetricsError, match="are missing"):
        cuts.CutJudge(str(tmp_path / "absent.safetensors"))


@pytest.mark.parametrize("size,n", [(32, 600), (64, 200)])
def test_judge_names_the_cut_of_fresh_gems(judge, size, n):
    images, labels = gems.render_gems(n, size, TEST_SEED, 10_000), gems.gem_cuts(n, TEST_SEED, 10_000)
    probs = judge.probabilities(images)
    assert probs.shape == (n, 10) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == labels).mean() >= 0.95
    # confident where it is right: most fresh stones pass the threshold
    assert (probs.max(axis=1) >= cuts.THRESHOLD).mean() >= 0.8


def test_unrecognisable_pictures_score_low(judge, fresh):
    images, _ = fresh
    rng = np.random.default_rng(7)
    shuffled = np.stack([im.reshape(-1, 3)[rng.permutation(32 * 32)].reshape(32, 32, 3) for im in images[:200]])
    blurred = np.stack([cv2.GaussianBlur(im, (0, 0), 2.0) for im in images[:200]])
    noise = rng.integers(0, 256, size=(200, 32, 32, 3), dtype=np.uint8)  # a kind never trained on
    for name, pictures in (("shuffled", shuffled), ("blurred", blurred), ("noise", noise)):
        recognised = (judge.probabilities(pictures).max(axis=1) >= cuts.THRESHOLD).mean()
        assert recognised <= 0.05, (name, recognised)


def test_real_gems_score_as_real(judge, real, fresh):
    images, labels = fresh
    scores = cuts.cut_scores(judge, real, images)
    assert 0.8 <= real.recognised and scores["cut_recognised_ratio"] == pytest.approx(1.0, abs=0.1)
    assert scores["cuts_found"] == 10
    shares = np.array([scores[f"cut_share_{c}"] for c in cuts.CUTS])
    assert np.abs(shares - real.cut_share).max() < 0.06
    # the same gems, asked for their own cut: they agree and keep the data's colours
    conditional = cuts.cut_scores(judge, real, images, labels)
    assert conditional["cut_agreement"] >= 0.8 and conditional["colour_spread"] >= 0.8
    assert conditional["cut_fd"] < 5.0


def test_a_collapsed_generator_covers_one_cut(judge, real):
    trillions = gems.render_gems(1500, 32, TEST_SEED, 20_000)[gems.gem_cuts(1500, TEST_SEED, 20_000) == 6][:100]
    scores = cuts.cut_scores(judge, real, trillions)
    assert scores["cuts_found"] == 1 and scores["cut_share_trillion"] > 0.9
    assert scores["cut_fd"] > 20 * cuts.cut_scores(judge, real, gems.render_gems(100, 32, TEST_SEED))["cut_fd"]


def test_asked_for_a_cut_and_given_a_colour(judge, real, fresh):
    """The conditional failure the judge is there to see: each "cut" is one colour of stones of
    any cut. Agreement falls to chance and every cut comes in one colour."""
    images, labels = fresh
    hues = cuts.stone_hues(images)
    fake, asked = [], []
    for c in range(10):
        one_colour = images[hues == np.bincount(hues[hues >= 0]).argmax()][:40]
        fake.append(one_colour)
        asked += [c] * len(one_colour)
    scores = cuts.cut_scores(judge, real, np.concatenate(fake), np.array(asked))
    assert scores["cut_agreement"] < 0.3
    assert scores["colour_spread"] < 0.3


def test_stone_hues_follow_the_stones(fresh):
    images, _ = fresh
    params = [gems._params(TEST_SEED, i) for i in range(len(images))]
    hues = cuts.stone_hues(images)
    coloured = np.array([p["sat"] > 0.3 for p in params])
    expected = np.array([int((p["hue"] % 360) / 360 * cuts.HUE_BINS) % cuts.HUE_BINS for p in params])
    near = np.minimum((hues - expected) % cuts.HUE_BINS, (expected - hues) % cuts.HUE_BINS) <= 1
    assert near[coloured].mean() >= 0.9
    assert (hues[[p["sat"] < 0.06 for p in params]] == -1).mean() >= 0.8  # diamonds are colourless


def test_cuts_metric_needs_the_gems():
    blobs = np.zeros((8, 16, 16, 1), np.uint8)
    with pytest.raises(MetricsError, match="needs them as the real images"):
        Evaluator(blobs, np.zeros(8, np.int64), extractor="classifier", metrics=("cuts",))


@pytest.mark.slow
def test_gems_runs_report_the_judge_in_training_and_evaluate(tmp_path):
    out = tmp_path / "gems"
    common = ["--size", "32", "--batch-size", "8", "--set", "g_channels=8", "--set", "d_channels=8",
              "--set", "z_dim=16", "--set", "n_samples=16", "--no-progress", "--set", "gems_count=256"]
    result = run_cli("paddle_gan_kit.train", "--out", out, "--steps", 4, "--eval-every", 2, "--eval-n", 64,
                     "--set", "eval_extractor=classifier", *common)
    assert result.returncode == 0, result.stderr
    tags, _ = vdl_records(str(out))
    for tag in ("eval/cut_recognised", "eval/cut_recognised_ratio", "eval/cuts_found", "eval/cut_fd",
                "eval/cut_share_marquise", "eval/fid"):
        assert [s for s, _ in tags[tag]] == [2, 4], tag
    assert 0 <= dict(tags["eval/cuts_found"])[4] <= 10

    result = run_cli("paddle_gan_kit.evaluate", out, "--extractor", "classifier", "--n", 64)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert "cuts" in scores["metrics"] and scores["cut_recognised_real"] >= 0.8
    assert "of the samples recognised" in result.stderr and "cut-judge fd" in result.stderr

    refused = run_cli("paddle_gan_kit.evaluate", out, "--extractor", "classifier", "--n", 64, "--metrics", "fid,cuts",
                      "--real", "builtin:mnist")
    assert_one_line_error(refused, "needs them as the real images")
