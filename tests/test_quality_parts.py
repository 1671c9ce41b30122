"""The parts of the better-samples recipes: DiffAugment, consistency regularisation (bCR),
spectral norm, the hinge loss, R1, the EMA generator with its ramp-up and measured BatchNorm
statistics, upsample-then-convolve, and bit-exact resume with all of them on."""
import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import augment, losses
from paddle_gan_kit.config import TrainConfig, parse_size
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_discriminator, build_generator, count_parameters, resnet
from paddle_gan_kit.models.dcgan import Discriminator, Generator, MultiScaleDiscriminator
from paddle_gan_kit.models import SelfModulation, init_weights
from paddle_gan_kit.models.layers import (AddCoords, BatchNorm2D, MinibatchStd, NearestUpsample2x, SelfAttention, SpectralConv2D,
                                          UpsampleConv2D)
from paddle_gan_kit.models.resnet import DownBlock, ResNetDiscriminator, ResNetGenerator, UpBlock, avg_pool2x
from paddle_gan_kit.steps import AdversarialStep, recalibrate_batchnorm
from paddle_gan_kit.trainer import Trainer
from conftest import assert_one_line_error, conv_backend, params_of, run_cli, tiny_config


# --- DiffAugment -------------------------------------------------------------------------------

def test_translation_shifts_by_whole_pixels_with_zero_fill():
    paddle.seed(0)
    x = paddle.to_tensor(np.arange(2 * 1 * 8 * 8, dtype=np.float32).reshape(2, 1, 8, 8) + 1)
    out = augment.translation(x).numpy()
    for i in range(2):
        src = x.numpy()[i, 0]
        found = [(dy, dx) for dy in range(-1, 2) for dx in range(-1, 2)
                 if np.array_equal(out[i, 0], np.roll(np.roll(np.pad(src, 1), dy, 0), dx, 1)[1:-1, 1:-1])]
        assert found, out[i, 0]


def test_cutout_zeroes_one_square_and_color_keeps_shapes():
    paddle.seed(1)
    x = paddle.ones([4, 3, 16, 16])
    out = augment.cutout(x).numpy()
    zeros = (out == 0).all(axis=1)  # (4, 16, 16)
    for mask in zeros:
        ys, xs = np.nonzero(mask)
        assert 0 < len(ys) <= 64 and len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    for channels in (1, 3):
        assert augment.color(paddle.rand([2, channels, 8, 8])).shape == [2, channels, 8, 8]


@pytest.mark.parametrize("channels,strength", [(1, 1.0), (3, 1.0), (3, 0.25)])
def test_color_equals_brightness_then_saturation_then_contrast(channels, strength):
    """The folded one-map colour transform equals Zhao et al.'s three steps in turn, for the same
    draws (same seed), and so do its input gradients; ``strength`` s draws brightness in
    +-0.5 s, saturation in [1 - s, 1 + s] and contrast in [1 - s/2, 1 + s/2]."""
    def stepwise(x):
        n = x.shape[0]
        x = x + (paddle.rand([n, 1, 1, 1]) - 0.5) * strength
        if channels > 1:
            mean = x.mean(axis=1, keepdim=True)
            x = (x - mean) * (1.0 + (paddle.rand([n, 1, 1, 1]) * 2.0 - 1.0) * strength) + mean
        mean = x.mean(axis=[1, 2, 3], keepdim=True)
        return (x - mean) * (1.0 + (paddle.rand([n, 1, 1, 1]) - 0.5) * strength) + mean

    x0 = paddle.to_tensor(np.random.default_rng(4).normal(size=(5, channels, 8, 12)).astype(np.float32))
    results = []
    for transform in (lambda x: augment.DiffAugment("color", color_strength=strength)(x), stepwise):
        x = x0.clone()
        x.stop_gradient = False
        paddle.seed(5)
        out = transform(x)
        (out * out * paddle.arange(out.size, dtype="float32").reshape(out.shape) / out.size).sum().backward()
        results.append((out.numpy(), x.grad.numpy()))
    (out, grad), (want, want_grad) = results
    assert float(np.abs(want).max()) > 0.5
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-5)


def test_translation_matrices_shift_within_the_drawn_range():
    paddle.seed(6)
    matrices = augment._shift_matrices(40, 10, 2).numpy()[:, 0]  # (40, 10, 10)
    shifts = set()
    for m in matrices:
        rows, cols = np.nonzero(m)
        assert set(np.unique(m)) <= {0.0, 1.0} and len(set(rows - cols)) == 1
        shift = int((rows - cols)[0])
        assert len(rows) == 10 - abs(shift)
        shifts.add(shift)
    assert shifts == {-2, -1, 0, 1, 2}


@pytest.mark.parametrize("backend", ["paddle", "onednn"])
@pytest.mark.parametrize("channels", [1, 3])
def test_diffaugment_is_differentiable_twice(channels, backend):
    """Gradients reach G through it, and the penalties' double backward goes through it, on
    either convolution backend."""
    with conv_backend(backend):
        _check_diffaugment_twice(channels)


def _check_diffaugment_twice(channels):
    paddle.seed(2)
    aug = augment.DiffAugment("translation,cutout,color,flip,scale,hue")
    G = Generator(16, channels, 8, 4, 16)
    z = paddle.randn([3, 8])
    out = aug(G(z)).sum()
    out.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.parameters() if not p.stop_gradient)
    D = Discriminator(16, channels, 4, 16, "layer")
    critic = lambda x: D(aug(x))  # noqa: E731
    real, fake = paddle.rand([3, channels, 16, 16]) * 2 - 1, paddle.rand([3, channels, 16, 16]) * 2 - 1
    for penalty in (losses.gradient_penalty(critic, real, fake), losses.r1_penalty(critic, real)):
        for p in D.parameters():
            p.clear_gradient(False)
        penalty.backward()
        assert sum(float(p.grad.abs().sum()) > 0 for p in D.parameters() if p.grad is not None) >= 3


def test_flip_mirrors_about_half_the_images_and_keeps_the_others():
    paddle.seed(4)
    x = paddle.rand([64, 3, 5, 7])
    out, xs = augment.flip(x).numpy(), x.numpy()
    mirrored = np.array([np.array_equal(out[i], xs[i, :, :, ::-1]) for i in range(64)])
    kept = np.array([np.array_equal(out[i], xs[i]) for i in range(64)])
    assert (mirrored ^ kept).all() and 16 < mirrored.sum() < 48


def _bilinear_zoom_reference(v, scale):
    """Zoom a 1-D signal about its centre by ``scale``: bilinear, mirrored at the borders."""
    size = len(v)
    centre = (size - 1) / 2
    mirrored = np.concatenate([v, v[::-1]])  # one period of the reflected signal
    out = []
    for i in range(size):
        source = (i - centre) / scale + centre
        left = int(np.floor(source))
        t = source - left
        out.append((1 - t) * mirrored[left % (2 * size)] + t * mirrored[(left + 1) % (2 * size)])
    return np.array(out)


def test_scale_zooms_bilinearly_about_the_centre_with_mirrored_borders():
    scales = paddle.to_tensor([[1.0], [2.0], [0.6], [1.3]])
    zoom = augment._zoom_matrices(scales, 9).numpy()[:, 0]  # (4, 9, 9)
    np.testing.assert_array_equal(zoom[0], np.eye(9))
    v = np.random.default_rng(7).normal(size=9)
    for matrix, s in zip(zoom[1:], (2.0, 0.6, 1.3)):
        np.testing.assert_allclose(matrix @ v, _bilinear_zoom_reference(v, s), atol=1e-6)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)  # a flat image stays flat
    paddle.seed(8)
    x = paddle.to_tensor(np.random.default_rng(8).normal(size=(64, 3, 8, 8)).astype(np.float32))
    out = augment.scale(x).numpy()
    assert out.shape == (64, 3, 8, 8)
    changed = ~np.isclose(out, x.numpy(), atol=1e-6).all(axis=(1, 2, 3))
    assert changed.sum() > 50  # 2^N(0, 0.2^2) is 1 with probability 0
    # the same zoom for every channel: the per-channel difference pattern is shared
    diff = augment.scale(paddle.ones([2, 3, 8, 8]) * paddle.to_tensor([1.0, 2.0, 3.0]).reshape([1, 3, 1, 1]))
    np.testing.assert_allclose(diff.numpy(), np.broadcast_to([1.0, 2.0, 3.0], (2, 8, 8, 3)).transpose(0, 3, 1, 2),
                               rtol=1e-5)


def test_hue_rotates_colours_about_the_grey_axis():
    third = paddle.full([1, 1, 1], 2 * np.pi / 3)
    np.testing.assert_allclose(augment._hue_rotations(third).numpy()[0], np.roll(np.eye(3), 1, axis=0), atol=1e-6)
    paddle.seed(9)
    x = paddle.to_tensor(np.random.default_rng(9).uniform(-1, 1, size=(64, 3, 5, 5)).astype(np.float32))
    out = augment.hue(x).numpy()
    xs = x.numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(xs, axis=1), rtol=1e-5)  # a rotation
    np.testing.assert_allclose(out.mean(axis=1), xs.mean(axis=1), atol=1e-6)  # brightness along the grey axis kept
    greys = paddle.to_tensor(np.repeat(xs[:, :1], 3, axis=1))
    np.testing.assert_allclose(augment.hue(greys).numpy(), greys.numpy(), atol=1e-6)
    assert (~np.isclose(out, xs, atol=1e-3).all(axis=(1, 2, 3))).sum() > 50
    gray = paddle.rand([2, 1, 4, 4])
    np.testing.assert_array_equal(augment.hue(gray).numpy(), gray.numpy())


def test_augment_p_mixes_augmented_and_plain_images():
    paddle.seed(3)
    x = paddle.rand([64, 3, 8, 8])
    out = augment.DiffAugment("cutout", p=0.5)(x).numpy()
    unchanged = np.array([np.array_equal(out[i], x.numpy()[i]) for i in range(64)])
    assert 10 < unchanged.sum() < 54


def test_unknown_augmentations_are_one_line(tmp_path, tiny_npy):
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "r", "--set", "augment=rotate,color")
    assert_one_line_error(result, "unknown augmentation 'rotate' in augment", "translation", "cutout", "flip")
    assert not (tmp_path / "r").exists()


# --- consistency regularisation (bCR) -------------------------------------------------------------

def _cr_step(**overrides):
    cfg = TrainConfig(model="dcgan", size=16, channels=3, z_dim=8, g_channels=4, d_channels=4, batch_size=8,
                      **overrides).resolve()
    return AdversarialStep(cfg)


def test_consistency_term_is_the_mean_squared_change_of_d_under_the_transform():
    nets = _cr_step(cr_weight=10.0, cr_augment="translation,flip")
    paddle.seed(5)
    x = paddle.rand([8, 3, 16, 16]) * 2 - 1
    scores = nets._score(x)
    paddle.seed(6)
    term = nets._consistency(x, scores)
    paddle.seed(6)  # the same draws of T
    transformed = augment.flip(augment.translation(x))
    expected = np.mean((nets._score(transformed).numpy() - scores.numpy()) ** 2)
    assert float(term) == pytest.approx(expected, rel=1e-5) and expected > 0
    term.backward()  # both outputs carry gradients into D, so every weight gets one...
    trained = [(name, p) for name, p in nets.discriminator.named_parameters() if not p.stop_gradient]
    assert all(float(p.grad.abs().sum()) > 0 for name, p in trained[:-1]), [name for name, _ in trained]
    last_name, last_bias = trained[-1]  # ...except the output's bias, which cancels in the difference
    assert last_name.endswith("bias") and float(last_bias.grad.abs().sum()) == 0


def test_consistency_adds_its_weighted_term_to_d_and_only_when_on():
    """Same seed, same draws up to D's loss: with cr_weight the logged D loss is the same step's
    loss without it plus cr_weight x the logged term, and D's outputs are unchanged."""
    real = [paddle.rand([8, 3, 16, 16]) * 2 - 1]
    on = _cr_step(cr_weight=10.0).step(real)
    off = _cr_step().step(real)
    assert "cr" in on and "cr" not in off and float(on["cr"]) > 0
    assert float(on["d_real"]) == pytest.approx(float(off["d_real"]), rel=1e-6)  # the terms come after D's outputs
    assert float(on["loss_d"]) > float(off["loss_d"])
    assert float(on["loss_d"]) - 10.0 * float(on["cr"]) == pytest.approx(float(off["loss_d"]), rel=1e-5)


def test_consistency_trains_logs_and_is_off_by_default(tmp_path, tiny_npy):
    paddle_gan_kit.train(tiny_config(tmp_path / "on", "dcgan", tiny_npy, steps=4, cr_weight=10.0, augment="color",
                                     snapshot_every=4, log_every=1), progress=False)
    history = params_of(str(tmp_path / "on"), 4)["history"]
    assert [row["step"] for row in history] == [1, 2, 3, 4]
    assert all(np.isfinite(row["cr"]) and row["cr"] > 0 for row in history)
    assert TrainConfig().cr_weight == 0


def test_bad_consistency_options_are_one_line(tmp_path, tiny_npy):
    for setting in ("cr_weight=-1", "cr_augment=rotate"):
        result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "r", "--set", "cr_weight=10",
                         "--set", setting)
        assert_one_line_error(result, "cr_weight must be >= 0 and cr_augment name augmentations",
                              "--set cr_weight=10 --set cr_augment=translation,flip")
        assert not (tmp_path / "r").exists()


# --- spectral norm, hinge, R1 ---------------------------------------------------------------------

def test_spectral_norm_power_iteration_converges_to_the_largest_singular_value():
    paddle.seed(4)
    conv = SpectralConv2D(5, 7, 3, 1, 1)
    conv.train()
    x = paddle.randn([1, 5, 6, 6])
    for _ in range(60):
        conv(x)
    w = conv.weight.numpy().reshape(7, -1)
    sigma = np.linalg.svd(w, compute_uv=False)[0]
    normalized = conv.normalized_weight().numpy().reshape(7, -1)
    assert np.linalg.svd(normalized, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(normalized, w / sigma, rtol=1e-3, atol=1e-6)
    u = conv.sn_u.numpy().copy()
    conv.eval()
    conv(x)
    np.testing.assert_array_equal(conv.sn_u.numpy(), u)  # eval mode does not iterate
    assert "sn_u" in conv.state_dict()


def test_spectral_critic_takes_the_gradient_penalty():
    cfg = TrainConfig(model="wgan_gp", size=16, channels=3, d_channels=4, max_channels=16, d_norm="spectral").resolve()
    D = build_discriminator(cfg)
    assert not any(isinstance(m, (paddle.nn.BatchNorm2D,)) for m in D.sublayers())
    gp = losses.gradient_penalty(D, paddle.randn([2, 3, 16, 16]), paddle.randn([2, 3, 16, 16]))
    gp.backward()
    assert all(p.grad is not None for p in D.parameters() if not p.stop_gradient and p.name.endswith("w_0"))


@pytest.mark.parametrize("n,group,g", [(8, 4, 4), (6, 4, 3), (3, 4, 3), (1, 4, 1)])
def test_minibatch_std_channel_equals_numpy(n, group, g):
    x = np.random.default_rng(n).standard_normal((n, 3, 2, 2)).astype(np.float32)
    out = MinibatchStd(group)(paddle.to_tensor(x)).numpy()
    assert out.shape == (n, 4, 2, 2)
    np.testing.assert_array_equal(out[:, :3], x)
    m = n // g
    for i in range(n):
        members = x[i % m::m].reshape(g, -1)  # image i's group: the same index mod n/g
        expected = np.sqrt(members.var(axis=0) + 1e-8).mean()
        np.testing.assert_allclose(out[i, 3], np.full((2, 2), expected), rtol=1e-5)


def test_minibatch_std_critic_takes_the_gradient_penalty_and_sees_collapse():
    cfg = TrainConfig(model="wgan_gp", size=16, channels=3, d_channels=4, max_channels=16, d_mbstd=4).resolve()
    D = build_discriminator(cfg)
    assert any(isinstance(m, MinibatchStd) for m in D.sublayers())
    gp = losses.gradient_penalty(D, paddle.randn([4, 3, 16, 16]), paddle.randn([4, 3, 16, 16]))
    gp.backward()
    assert all(float(p.grad.abs().sum()) > 0 for p in D.parameters() if p.name.endswith("w_0"))
    assert D.net[-1].weight.shape[1] == 8 + 1  # the last conv reads the widest stage and the extra channel
    # a collapsed batch (four copies of one image) gets ~0 there, a varied one does not
    same = paddle.expand(paddle.randn([1, 3, 16, 16]), [4, 3, 16, 16])
    assert float(MinibatchStd(4)(same)[:, 3].max()) < 1e-3
    assert float(MinibatchStd(4)(same + paddle.randn([4, 3, 16, 16]))[:, 3].min()) > 0.5


def test_hinge_losses_and_r1_values():
    real, fake = paddle.to_tensor([2.0, 0.5, -1.0]), paddle.to_tensor([-3.0, 0.0, 2.0])
    assert float(losses.d_loss_hinge(real, fake)) == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1 + 3) / 3)
    assert float(losses.g_loss_hinge(fake)) == pytest.approx(1 / 3)

    class Quadratic(paddle.nn.Layer):  # D(x) = 0.5 |x|^2: grad x, so R1 = 0.5 E|x|^2
        def forward(self, x):
            return 0.5 * (x * x).reshape([x.shape[0], -1]).sum(axis=1)

    x = paddle.randn([4, 1, 3, 3])
    expected = 0.5 * np.mean((x.numpy().reshape(4, -1) ** 2).sum(1))
    assert float(losses.r1_penalty(Quadratic(), x)) == pytest.approx(expected, rel=1e-5)


def test_lecam_term_equals_numpy_with_bias_corrected_averages_and_its_gradient():
    rng = np.random.default_rng(0)
    lecam, sums = losses.LeCam(decay=0.9), np.zeros(2)
    assert lecam.anchors() is None
    for t in range(1, 4):
        real = rng.normal(size=8).astype(np.float32)
        fake = rng.normal(size=8).astype(np.float32) - 1.0
        real_t, fake_t = paddle.to_tensor(real, stop_gradient=False), paddle.to_tensor(fake, stop_gradient=False)
        value = lecam.term(real_t, fake_t)
        value.backward()
        sums = 0.9 * sums + 0.1 * np.array([real.mean(), fake.mean()])
        a_real, a_fake = sums / (1 - 0.9 ** t)  # TensorFlow's zero_debias, as the reference code
        assert lecam.anchors() == pytest.approx((a_real, a_fake), rel=1e-5)
        above, below = np.maximum(real - a_fake, 0), np.maximum(a_real - fake, 0)
        assert float(value) == pytest.approx(np.mean(above ** 2) + np.mean(below ** 2), rel=1e-5)
        assert above.any() and below.any()  # both sides of the term are exercised
        # the averages are constants of the step: only D's outputs get a gradient
        np.testing.assert_allclose(real_t.grad.numpy(), 2 * above / 8, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(fake_t.grad.numpy(), -2 * below / 8, rtol=1e-5, atol=1e-7)
    state = lecam.state_dict()
    again = losses.LeCam(decay=0.9)
    again.set_state_dict(state)
    assert again.count == 3 and again.anchors() == lecam.anchors()


def test_lecam_trains_logs_and_keeps_its_state_in_the_snapshot(tmp_path, tiny_npy):
    paddle_gan_kit.train(tiny_config(tmp_path / "on", "dcgan", tiny_npy, steps=4, lecam_weight=0.3, snapshot_every=4,
                                     log_every=1), progress=False)
    payload = params_of(str(tmp_path / "on"), 4)
    assert payload["lecam"]["count"] == 4 and payload["lecam"]["sums"].shape == (2,)
    assert np.isfinite(payload["lecam"]["sums"]).all()
    assert [row["step"] for row in payload["history"]] == [1, 2, 3, 4]  # logged every step
    assert all(np.isfinite(row["lecam"]) and row["lecam"] >= 0 for row in payload["history"])
    paddle_gan_kit.train(tiny_config(tmp_path / "off", "dcgan", tiny_npy, steps=2, snapshot_every=2), progress=False)
    assert params_of(str(tmp_path / "off"), 2)["lecam"] is None


# --- EMA ------------------------------------------------------------------------------------------

def test_ema_rampup_starts_fast_and_reaches_the_decay():
    cfg = TrainConfig(model="dcgan", size=16, channels=3, z_dim=8, g_channels=4, d_channels=4, ema_decay=0.999,
                      ema_rampup=0.05).resolve()
    nets = AdversarialStep(cfg)
    decays = {}
    for updates in (0, 100, 1000, 100000):
        nets.updates = updates
        decays[updates] = nets.ema_decay()
    assert decays[0] < 0.01 < decays[100] < decays[1000] < 0.999
    assert decays[100000] == pytest.approx(0.999)
    nets.cfg = TrainConfig(**{**cfg.to_dict(), "ema_rampup": 0.0})
    assert nets.ema_decay() == 0.999


def test_recalibrated_batchnorm_statistics_are_the_generators_own():
    cfg = TrainConfig(model="dcgan", size=16, channels=3, z_dim=8, g_channels=4).resolve()
    paddle.seed(5)
    G = build_generator(cfg)
    norms = [m for m in G.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    recalibrate_batchnorm(G, cfg, batch_size=32, batches=4)
    assert not G.training
    # the first BatchNorm's input, measured directly on the same latents
    from paddle_gan_kit.latent import draw_latents

    rng = np.random.default_rng([cfg.seed, 2])
    z = np.concatenate([draw_latents(rng, 32, cfg.z_dim, cfg.z_dist) for _ in range(4)])
    with paddle.no_grad():
        first = G.net[0](paddle.to_tensor(z).reshape([128, cfg.z_dim, 1, 1])).numpy()
    state = norms[0].state_dict()
    mean = next(v for k, v in state.items() if k.endswith("mean")).numpy()
    var = next(v for k, v in state.items() if k.endswith("variance")).numpy()
    np.testing.assert_allclose(mean, first.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(var, first.var(axis=(0, 2, 3)), rtol=1e-3, atol=1e-6)
    before = paddle.get_rng_state()[0].__getstate__()
    recalibrate_batchnorm(G, cfg, batch_size=32, batches=4)
    assert paddle.get_rng_state()[0].__getstate__() == before  # no global RNG moved


def test_samples_use_the_ema_generator_with_its_own_statistics(tmp_path, tiny_npy):
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=4, ema_decay=0.9, ema_rampup=0.05), progress=False)
    payload = params_of(str(out), 4)
    ema, raw = payload["generator_ema"], payload["generator"]
    means = [k for k in ema if k.endswith("_mean")]
    assert means and all(not np.array_equal(ema[k], raw[k]) for k in means)  # measured, not copied
    generator, _ = paddle_gan_kit.load_generator(str(out))
    assert all(np.array_equal(generator.state_dict()[k].numpy(), ema[k]) for k in ema)


# --- architecture and the whole step ---------------------------------------------------------------

@pytest.mark.parametrize("size", [28, 32, 64, 96])
def test_upsample_then_convolve_generator_shapes(size):
    cfg = TrainConfig(size=size, channels=3, z_dim=8, g_channels=4, max_channels=16, g_upsample="nearest").resolve()
    G = build_generator(cfg)
    assert G(paddle.randn([2, 8])).shape == [2, 3, size, size]
    _, doublings = parse_size(size)
    assert sum(type(m) is paddle_gan_kit.models.layers.Conv2DTranspose for m in G.sublayers()) == 1  # 1x1 -> s0
    assert sum(isinstance(m, UpsampleConv2D) for m in G.sublayers()) == doublings
    assert all(m.weight.shape[2:] == [3, 3] for m in G.sublayers() if isinstance(m, UpsampleConv2D))
    x = paddle.randn([2, 3, 5, 7])
    np.testing.assert_array_equal(NearestUpsample2x()(x).numpy(),
                                  paddle.nn.functional.interpolate(x, scale_factor=2, mode="nearest").numpy())


def upsample_then_conv(x, layer, upsample):
    """The literal reference for ``UpsampleConv2D``: nearest upsampling then the 3x3 conv with
    zero padding, or the [1, 3, 3, 1] / 4 filter's full output (side 2H + 2) then the 3x3 conv
    without padding."""
    if upsample == "nearest":
        return paddle.nn.functional.conv2d(NearestUpsample2x()(x), layer.weight, layer.bias, padding=1)
    u = paddle.to_tensor([0.25, 0.75, 0.75, 0.25])
    channels = x.shape[1]
    kernel = (u.unsqueeze(1) * u.unsqueeze(0)).reshape([1, 1, 4, 4]).tile([channels, 1, 1, 1])
    full = paddle.nn.functional.conv2d_transpose(x, kernel, stride=2, groups=channels)  # (N, C, 2H + 2, 2W + 2)
    return paddle.nn.functional.conv2d(full, layer.weight, layer.bias)


@pytest.mark.parametrize("backend", ["paddle", "onednn"])
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("shape,bias", [((3, 5, 4, 4), True), ((2, 8, 7, 7), False), ((2, 3, 16, 16), True)])
def test_upsample_conv_is_upsampling_then_a_3x3_conv(backend, upsample, shape, bias):
    """The folded transposed conv equals upsample-then-convolve: output, input gradient and
    weight gradient, on both convolution backends."""
    with conv_backend(backend):
        paddle.seed(7)
        layer = UpsampleConv2D(shape[1], 6, bias_attr=None if bias else False, upsample=upsample)
        x = paddle.randn(shape)
        x.stop_gradient = False
        ours = layer(x)
        reference = upsample_then_conv(x, layer, upsample)
        assert ours.shape == reference.shape == [shape[0], 6, 2 * shape[2], 2 * shape[3]]
        probe = paddle.randn(ours.shape)
        for a, b in zip([ours, *paddle.grad((ours * probe).sum(), [x, layer.weight])],
                        [reference, *paddle.grad((reference * probe).sum(), [x, layer.weight])]):
            scale = float(b.abs().max())
            assert float((a - b).abs().max()) <= 1e-5 * scale + 1e-6
    assert list(layer.state_dict()) == (["weight", "bias"] if bias else ["weight"])


def test_bilinear_upsampling_inside_the_image_is_bilinear_interpolation():
    """Away from the border, the "bilinear" fold's upsampling is Paddle's bilinear interpolation
    (half-pixel centres): a 3x3 conv holding only a centre 1 shows the upsampled image itself."""
    layer = UpsampleConv2D(2, 2, bias_attr=False, upsample="bilinear")
    identity = np.zeros([2, 2, 3, 3], np.float32)
    identity[0, 0, 1, 1] = identity[1, 1, 1, 1] = 1.0
    layer.weight.set_value(identity)
    x = paddle.randn([1, 2, 5, 6])
    expected = paddle.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    np.testing.assert_allclose(layer(x).numpy()[:, :, 1:-1, 1:-1], expected.numpy()[:, :, 1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("size", [28, 32, 64])
def test_skip_generator_sums_rgb_from_every_resolution(size):
    cfg = TrainConfig(size=size, channels=3, z_dim=8, g_channels=4, max_channels=16, g_skip=True,
                      g_upsample="nearest").resolve()
    paddle.seed(6)
    G = build_generator(cfg)
    _, doublings = parse_size(size)
    assert len(G.to_rgb) == doublings  # s0 and every stage but the last, which outputs RGB itself
    z = paddle.randn([2, 8])
    out = G(z)
    assert out.shape == [2, 3, size, size] and float(out.abs().max()) <= 1.0
    # the lowest resolution's RGB reaches the output: zeroing it changes the images
    G.eval()
    before = G(z).numpy()
    G.to_rgb[0].weight.set_value(np.zeros(G.to_rgb[0].weight.shape, np.float32))
    G.to_rgb[0].bias.set_value(np.zeros(G.to_rgb[0].bias.shape, np.float32))
    assert not np.allclose(G(z).numpy(), before)


def test_self_modulation_scales_and_shifts_each_batchnorm_by_the_latent():
    """With the modulation MLPs' last layers zeroed the generator is the plain one with the same
    weights; otherwise each BatchNorm output x becomes x (1 + gamma(z)) + beta(z), per sample."""
    kw = dict(size=32, channels=3, z_dim=8, g_channels=4, max_channels=16, g_upsample="nearest")
    paddle.seed(7)
    G = build_generator(TrainConfig(g_self_modulation=True, **kw).resolve())
    plain = build_generator(TrainConfig(**kw).resolve())
    plain.set_state_dict({k: v for k, v in G.state_dict().items() if not k.startswith("modulations.")})
    norms = [layer for layer in G.net if isinstance(layer, BatchNorm2D)]
    assert len(G.modulations) == len(norms) == 3 and [m.out.weight.shape[1] for m in G.modulations] == [32, 16, 8]
    z = paddle.randn([5, 8])
    G.eval()
    plain.eval()
    with paddle.no_grad():
        modulated = G(z).numpy()
        for m in G.modulations:
            m.out.weight.set_value(np.zeros(m.out.weight.shape, np.float32))
            m.out.bias.set_value(np.zeros(m.out.bias.shape, np.float32))
        np.testing.assert_allclose(G(z).numpy(), plain(z).numpy(), rtol=0, atol=1e-6)
    assert float(np.abs(modulated - plain(z).numpy()).max()) > 1e-3

    m = SelfModulation(8, 6)
    init_weights(m)
    x = paddle.randn([5, 6, 3, 3])
    h = np.maximum(z.numpy() @ m.hidden.weight.numpy() + m.hidden.bias.numpy(), 0)
    gb = h @ m.out.weight.numpy() + m.out.bias.numpy()  # (5, 12): gamma, then beta
    want = x.numpy() * (1 + gb[:, :6, None, None]) + gb[:, 6:, None, None]
    np.testing.assert_allclose(m(x, z).numpy(), want, rtol=1e-5, atol=1e-6)


def test_self_modulation_trains_and_is_the_dcgan_generator_only(tmp_path, tiny_npy):
    trainer = Trainer(tiny_config(tmp_path / "r", "dcgan", tiny_npy, steps=2, g_self_modulation=True), progress=False)
    trainer.fit()
    G = trainer.objective.generator
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in G.modulations.parameters())
    with pytest.raises(GanKitError, match="g_self_modulation modulates the plain DCGAN generator only"):
        TrainConfig(g_self_modulation=True, g_skip=True, g_upsample="nearest").resolve()
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "bad", "--set",
                     "g_self_modulation=true", "--set", "g_arch=resnet")
    assert_one_line_error(result, "g_self_modulation modulates the plain DCGAN generator only",
                          "g_self_modulation=false")
    assert not (tmp_path / "bad").exists()


def test_self_attention_is_the_sagan_formula():
    """Queries and 2x2-pooled keys and values from 1x1 convs, a softmax over the keys, the
    output conv scaled by gamma and added to the input; gamma 0 (its start) is the identity."""
    paddle.seed(3)
    layer = init_weights(SelfAttention(16))
    x = paddle.randn([2, 16, 6, 4])
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    layer.gamma.set_value(np.array([0.7], np.float32))

    def conv(w, a):  # a 1x1 conv without bias: (N, I, H, W) -> (N, O, H, W)
        return np.einsum("oi,nihw->nohw", w.numpy()[:, :, 0, 0], a)

    def pool(a):
        n, c, h, w = a.shape
        return a.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)).reshape(n, c, -1)

    a = x.numpy()
    q = conv(layer.query.weight, a).reshape(2, 2, 24)
    k, v = pool(conv(layer.key.weight, a)), pool(conv(layer.value.weight, a))
    logits = np.einsum("ncq,nck->nqk", q, k)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    o = np.einsum("nck,nqk->ncq", v, attention).reshape(2, 8, 6, 4)
    np.testing.assert_allclose(layer(x).numpy(), a + 0.7 * conv(layer.out.weight, o), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model,d_norm", [("dcgan", None), ("wgan_gp", None), ("dcgan", "spectral")])
def test_self_attention_sits_at_the_asked_side_and_takes_the_penalty_double_backward(model, d_norm):
    cfg = TrainConfig(model=model, size=32, channels=3, z_dim=8, g_channels=4, d_channels=4, max_channels=16,
                      g_attention=16, d_attention=8, d_norm=d_norm).resolve()
    paddle.seed(4)
    G, D = build_generator(cfg), build_discriminator(cfg)
    g_at = [i for i, layer in enumerate(G.net) if isinstance(layer, SelfAttention)]
    d_at = [i for i, layer in enumerate(D.net) if isinstance(layer, SelfAttention)]
    assert len(g_at) == len(d_at) == 1
    x = paddle.randn([2, 8]).reshape([2, 8, 1, 1])
    for layer in G.net[:g_at[0]]:
        x = layer(x)
    assert x.shape == [2, 4, 16, 16]  # G's 16x16 stage feeds the attention
    assert D.net[d_at[0]].query.weight.shape[1] == 8  # D's second stage: 8 channels at 8x8
    if d_norm == "spectral":
        assert isinstance(D.net[d_at[0]].query, SpectralConv2D)
    D.net[d_at[0]].gamma.set_value(np.array([0.5], np.float32))
    real, fake = paddle.randn([4, 3, 32, 32]), G(paddle.randn([4, 8])).detach()
    penalty = losses.gradient_penalty(D, real, fake) + losses.r1_penalty(D, real)
    penalty.backward()
    for p in D.net[d_at[0]].parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0


def test_self_attention_trains_and_refuses_other_sides_and_nets(tmp_path, tiny_npy):
    trainer = Trainer(tiny_config(tmp_path / "r", "dcgan", tiny_npy, steps=2, g_attention=8, d_attention=4),
                      progress=False)
    trainer.fit()
    attention = [m for m in trainer.objective.generator.sublayers() if isinstance(m, SelfAttention)]
    assert len(attention) == 1 and float(attention[0].gamma.grad.abs().max()) > 0
    with pytest.raises(GanKitError, match="g_attention is 16; at size 16 use 0 \\(none\\) or a feature-map side: 4, 8"):
        TrainConfig(size=16, g_attention=16).resolve()
    with pytest.raises(GanKitError, match="at size 28 use 0 \\(none\\) or a feature-map side: 14$"):
        TrainConfig(size=28, d_attention=7).resolve()
    with pytest.raises(GanKitError, match="g_attention adds self-attention to the DCGAN nets only"):
        TrainConfig(g_attention=8, g_skip=True, g_upsample="nearest").resolve()
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "bad", "--size", "16",
                     "--set", "d_attention=8", "--set", "d_arch=resnet")
    assert_one_line_error(result, "d_attention adds self-attention to the DCGAN nets only", "d_arch=dcgan",
                          "d_attention=0")
    assert not (tmp_path / "bad").exists()


def test_coordconv_adds_the_pixel_coordinates_before_every_resizing_conv(tmp_path, tiny_npy):
    x = paddle.randn([3, 5, 4, 4])
    out = AddCoords(4)(x).numpy()
    ramp = np.array([-1, -1 / 3, 1 / 3, 1], np.float32)
    assert out.shape == (3, 7, 4, 4) and np.array_equal(out[:, :5], x.numpy())
    for image in out:
        np.testing.assert_allclose(image[5], np.tile(ramp, (4, 1)), atol=1e-6)  # x grows to the right
        np.testing.assert_allclose(image[6], np.tile(ramp[:, None], (1, 4)), atol=1e-6)  # y grows downwards
    for model, d_norm in (("dcgan", None), ("wgan_gp", None), ("dcgan", "spectral")):
        cfg = TrainConfig(model=model, size=32, channels=3, z_dim=8, g_channels=4, d_channels=4, max_channels=16,
                          g_upsample="nearest", g_coords=True, d_coords=True, d_norm=d_norm).resolve()
        paddle.seed(5)
        G, D = build_generator(cfg), build_discriminator(cfg)
        sides = {net: [layer.grid.shape[-1] for layer in getattr(net, "net") if isinstance(layer, AddCoords)]
                 for net in (G, D)}
        assert sides[G] == [4, 8, 16] and sides[D] == [32, 16, 8]  # the input side of every resizing conv
        plain = TrainConfig(model=model, size=32, channels=3, z_dim=8, g_channels=4, d_channels=4, max_channels=16,
                            g_upsample="nearest", d_norm=d_norm).resolve()
        k = 4 * 4  # D's 4x4 kernels; G's 3x3 convs
        assert count_parameters(G) - count_parameters(build_generator(plain)) == 2 * 9 * (8 + 4 + 3)
        assert count_parameters(D) - count_parameters(build_discriminator(plain)) == 2 * k * (4 + 8 + 16)
        real, fake = paddle.randn([4, 3, 32, 32]), G(paddle.randn([4, 8])).detach()
        assert fake.shape == [4, 3, 32, 32]
        first = next(layer for layer in D.net if isinstance(layer, (paddle.nn.Conv2D, SpectralConv2D)))
        penalty = losses.gradient_penalty(D, real, fake) + losses.r1_penalty(D, real)
        penalty.backward()  # the penalties' double backward reaches the weights on the coordinates
        assert float(first.weight.grad[:, 3:].abs().max()) > 0
    trainer = Trainer(tiny_config(tmp_path / "r", "dcgan", tiny_npy, steps=2, g_coords=True, d_coords=True),
                      progress=False)
    trainer.fit()
    assert trainer.step == 2
    with pytest.raises(GanKitError, match="g_coords adds coordinate channels to the DCGAN nets only"):
        TrainConfig(g_coords=True, g_skip=True, g_upsample="nearest").resolve()
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "bad", "--size", "16",
                     "--set", "d_coords=true", "--set", "d_arch=resnet")
    assert_one_line_error(result, "d_coords adds coordinate channels to the DCGAN nets only", "d_arch=dcgan",
                          "d_coords=false")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_multiscale_d_scores_the_images_and_their_pooled_copies(tmp_path, tiny_npy32, model):
    cfg = TrainConfig(model=model, size=64, channels=3, d_channels=4, max_channels=16, d_scales=3).resolve()
    paddle.seed(6)
    D = build_discriminator(cfg)
    assert isinstance(D, MultiScaleDiscriminator) and [d.size for d in D.scales] == [64, 32, 16]
    x = paddle.randn([5, 3, 64, 64])
    xs = x.numpy()
    pooled = [xs, xs.reshape(5, 3, 32, 2, 32, 2).mean((3, 5))]
    pooled.append(pooled[1].reshape(5, 3, 16, 2, 16, 2).mean((3, 5)))
    want = np.concatenate([d(paddle.to_tensor(p)).numpy() for d, p in zip(D.scales, pooled)])
    np.testing.assert_allclose(D(x).numpy(), want, rtol=1e-5, atol=1e-5)
    assert count_parameters(D) == sum(count_parameters(d) for d in D.scales)
    real, fake = paddle.randn([4, 3, 64, 64]), paddle.randn([4, 3, 64, 64])
    penalty = losses.gradient_penalty(D, real, fake) + losses.r1_penalty(D, real)
    penalty.backward()  # the penalties' double backward reaches every scale, through the pooling
    for d in D.scales:
        assert float(d.net[0].weight.grad.abs().max()) > 0
    run = tiny_config(tmp_path / "r", model, tiny_npy32, steps=2, size=32, d_scales=2)
    trainer = Trainer(run, progress=False)
    trainer.fit()
    assert trainer.step == 2
    assert any(key.startswith("scales.1.") for key in params_of(str(tmp_path / "r"), 2)["discriminator"])
    for size, extra, fragment in ((28, [], "at size 28 use 1 to 1"), (32, ["--set", "d_arch=resnet"], "d_arch=dcgan"),
                                  (32, ["--set", "d_recon_weight=1"], "d_recon_weight=0")):
        result = run_cli("paddle_gan_kit.train", "--data", tiny_npy32, "--out", tmp_path / "bad", "--size", str(size),
                         "--set", "d_scales=2", *extra)
        assert_one_line_error(result, "d_scales is 2", fragment, "or d_scales=1")
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("size,mbstd", [(16, 0), (32, 2), (96, 0)])
def test_reconstructing_d_redraws_at_four_times_the_bottleneck_and_scores_as_before(size, mbstd):
    cfg = TrainConfig(size=size, channels=3, z_dim=8, d_channels=4, max_channels=16, d_mbstd=mbstd,
                      d_recon_weight=1.0).resolve()
    paddle.seed(5)
    D = build_discriminator(cfg)
    x = paddle.rand([4, 3, size, size]) * 2 - 1
    logits, redrawn = D(x, reconstruct=True)
    s0, _ = parse_size(size)
    assert redrawn.shape == [4, 3, 4 * s0, 4 * s0] and float(redrawn.abs().max()) <= 1
    np.testing.assert_allclose(logits.numpy(), D(x).numpy(), rtol=1e-6, atol=1e-6)
    plain = build_discriminator(TrainConfig(size=size, channels=3, z_dim=8, d_channels=4, max_channels=16,
                                            d_mbstd=mbstd).resolve())
    assert plain.decoder is None and set(D.state_dict()) - set(plain.state_dict()) == {
        k for k in D.state_dict() if k.startswith("decoder.")}


def test_reconstruction_error_is_the_mse_against_the_pooled_images():
    from paddle_gan_kit.steps import reconstruction_error

    seen, redrawn = paddle.rand([3, 3, 32, 32]), paddle.rand([3, 3, 16, 16])
    pooled = seen.numpy().reshape(3, 3, 16, 2, 16, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(float(reconstruction_error(redrawn, seen)), ((redrawn.numpy() - pooled) ** 2).mean(),
                               rtol=1e-5)


def test_reconstructing_d_trains_its_decoder_on_real_images_and_is_dcgan_d_only(tmp_path, tiny_npy):
    trainer = Trainer(tiny_config(tmp_path / "r", "dcgan", tiny_npy, steps=2, d_recon_weight=1.0), progress=False)
    values = trainer.train_step()
    assert float(values["recon"]) > 0
    decoder = trainer.objective.discriminator.decoder
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in decoder.parameters())
    result = run_cli("paddle_gan_kit.train", "--data", tiny_npy, "--out", tmp_path / "bad", "--set",
                     "d_recon_weight=1", "--set", "d_arch=resnet")
    assert_one_line_error(result, "d_recon_weight must be >= 0 and needs the DCGAN D", "d_recon_weight=0")
    with pytest.raises(GanKitError, match="d_recon_weight must be >= 0"):
        TrainConfig(d_recon_weight=-1.0).resolve()


# --- residual nets -----------------------------------------------------------------------------

def _mean_pool(x):  # 2x2 average pooling from reshape and mean, whose double backward is plain autograd
    n, c, h, w = x.shape
    return x.reshape([n, c, h // 2, 2, w // 2, 2]).mean(axis=[3, 5])


def test_avg_pool2x_equals_numpy():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 4)).astype(np.float32)
    expected = x.reshape(2, 3, 3, 2, 2, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(avg_pool2x(paddle.to_tensor(x)).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_resnet_nets_have_a_block_per_doubling_and_the_dcgan_shapes(size, channels):
    cfg = TrainConfig(size=size, channels=channels, z_dim=8, g_channels=4, d_channels=4, max_channels=16,
                      g_arch="resnet", d_arch="resnet", d_mbstd=2).resolve()
    paddle.seed(7)
    G, D = build_generator(cfg), build_discriminator(cfg)
    _, doublings = parse_size(size)
    assert isinstance(G, ResNetGenerator) and isinstance(D, ResNetDiscriminator)
    assert len(G.blocks) == doublings and len(D.blocks) == doublings
    images = G(paddle.randn([4, 8]))
    assert images.shape == [4, channels, size, size] and float(images.abs().max()) <= 1.0
    assert D(images).shape == [4]
    assert D.score.weight.shape == [1, min(4 * 2 ** (doublings - 1), 16) + 1, 1, 1]  # widest stage + mbstd


def test_resnet_blocks_add_their_shortcut():
    """With the residual branch's last layer zeroed, a block is its shortcut alone: G's a 1x1 conv
    then nearest upsampling, D's a 1x1 conv then 2x2 average pooling (pooling first in the first block)."""
    paddle.seed(8)
    x = paddle.randn([2, 4, 8, 8])
    up = UpBlock(4, 6, "nearest")
    last = up.main[-1]
    last.weight.set_value(np.zeros(last.weight.shape, np.float32))
    last.bias.set_value(np.zeros(last.bias.shape, np.float32))
    np.testing.assert_allclose(up(x).numpy(), NearestUpsample2x()(up.shortcut(x)).numpy(), rtol=1e-6)
    for first in (True, False):
        down = DownBlock(4, 6, "none", first)
        last = down.main[-2]  # the second 3x3 conv (an identity "norm" follows)
        last.weight.set_value(np.zeros(last.weight.shape, np.float32))
        last.bias.set_value(np.zeros(last.bias.shape, np.float32))
        np.testing.assert_allclose(down(x).numpy(), _mean_pool(down.shortcut(x)).numpy(), rtol=1e-5, atol=1e-6)
        assert down(x).shape == [2, 6, 4, 4]


@pytest.mark.parametrize("model,d_norm", [("wgan_gp", "layer"), ("wgan_gp", "spectral"), ("dcgan", "batch")])
def test_resnet_critic_takes_the_gradient_penalty_and_r1(model, d_norm, monkeypatch):
    cfg = TrainConfig(model=model, size=16, channels=3, d_channels=4, max_channels=16, d_arch="resnet",
                      d_norm=d_norm).resolve()
    paddle.seed(9)
    D = build_discriminator(cfg)
    real, fake, other = (paddle.randn([4, 3, 16, 16]) for _ in range(3))
    convs = [layer.weight for layer in D.sublayers() if isinstance(layer, paddle.nn.Conv2D)]
    assert len(convs) == 2 * 3 + 1  # two 3x3 convs and a 1x1 shortcut in each of 2 blocks, and the score
    state = {k: v.numpy() for k, v in D.state_dict().items()}  # spectral norm's power iteration moves sn_u
    grads = []
    for pool in (resnet.avg_pool2x, _mean_pool):
        monkeypatch.setattr(resnet, "avg_pool2x", pool)
        D.set_state_dict(state)
        D.clear_gradients()
        paddle.seed(10)  # the same interpolation weights
        penalty = losses.gradient_penalty(D, real, fake) + losses.r1_penalty(D, other)
        penalty.backward()
        grads.append([w.grad.numpy() for w in convs])
    for ours, reference in zip(*grads):  # Paddle's pooling double-backward equals plain autograd's
        assert np.abs(ours).sum() > 0
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


ALL_ON = dict(augment="translation,cutout,color", augment_p=0.8, color_strength=0.5, d_norm="spectral", loss="hinge",
              r1_gamma=0.5, ema_decay=0.9, ema_rampup=0.05, g_upsample="nearest", g_skip=True, lr_d=4e-4, lr_g=1e-4,
              lecam_weight=0.3, cr_weight=10.0, cr_augment="translation,flip,color", d_recon_weight=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("model,extra", [("dcgan", ALL_ON), ("wgan_gp", dict(augment="translation,cutout,color",
                                                                             ema_decay=0.9, ema_rampup=0.05,
                                                                             g_upsample="nearest", r1_gamma=0.1,
                                                                             d_mbstd=2, cr_weight=1.0,
                                                                             g_self_modulation=True,
                                                                             g_attention=8, d_attention=4,
                                                                             g_coords=True, d_coords=True)),
                                         ("dcgan", dict(g_arch="resnet", d_arch="resnet", g_upsample="nearest",
                                                        augment="translation,color", ema_decay=0.9, ema_rampup=0.05,
                                                        r1_gamma=0.1, d_mbstd=2)),
                                         ("dcgan", dict(size=32, d_scales=2, g_coords=True, d_coords=True,
                                                        g_upsample="nearest", augment="color,hue,translation,scale",
                                                        ema_decay=0.9, ema_rampup=0.05, r1_gamma=0.1))])
def test_resume_is_bit_exact_with_every_option_on(tmp_path, tiny_npy, tiny_npy32, model, extra):
    common = dict(snapshot_every=100, sample_every=100, n_critic=2, **extra)
    tiny_npy = tiny_npy32 if extra.get("size") == 32 else tiny_npy
    paddle_gan_kit.train(tiny_config(tmp_path / "whole", model, tiny_npy, steps=6, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, tiny_npy, steps=3, **common), progress=False)
    paddle_gan_kit.train(tiny_config(tmp_path / "half", model, tiny_npy, steps=6, **common), resume=True,
                         progress=False)
    a, b = params_of(str(tmp_path / "whole"), 6), params_of(str(tmp_path / "half"), 6)
    parts = ["generator", "discriminator", "generator_ema", "opt_g", "opt_d"] + (["lecam"] if "lecam_weight" in extra
                                                                                 else [])
    for part in parts:
        assert a[part].keys() == b[part].keys()
        for key, value in a[part].items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, b[part][key]), (part, key)
    if extra.get("d_norm") == "spectral":
        assert any(k.endswith("sn_u") for k in a["discriminator"])


def test_bad_option_values_are_one_line():
    for key, value, fragment in (("loss", "lsgan", "nonsaturating, wasserstein, hinge"),
                                 ("d_norm", "group", "spectral"),
                                 ("g_upsample", "bicubic", "transposed, nearest, bilinear")):
        with pytest.raises(GanKitError, match=fragment):
            TrainConfig(**{key: value}).resolve()
    with pytest.raises(GanKitError, match="config key 'd_arch' is 'vgg'; allowed: dcgan, resnet"):
        TrainConfig(d_arch="vgg").resolve()
    with pytest.raises(GanKitError, match=r"lecam_weight must be >= 0 and lecam_decay in \[0, 1\), got -1.0"):
        TrainConfig(lecam_weight=-1.0).resolve()
    with pytest.raises(GanKitError, match=r"lecam_decay in \[0, 1\), got 0.3 and 1.0"):
        TrainConfig(lecam_weight=0.3, lecam_decay=1.0).resolve()
    with pytest.raises(GanKitError, match="g_skip adds skip outputs to the DCGAN generator only"):
        TrainConfig(g_skip=True, g_arch="resnet").resolve()
    with pytest.raises(GanKitError, match=r"d_mbstd must be >= 0 \(0 = off, else the group size"):
        TrainConfig(d_mbstd=-1).resolve()
    with pytest.raises(GanKitError, match=r"augment_p must be in \(0, 1\]"):
        TrainConfig(augment="color", augment_p=0.0).resolve()
    for strength in (0.0, 2.5):
        with pytest.raises(GanKitError, match=rf"color_strength must be in \(0, 2\], got {strength}; e.g. --set"):
            TrainConfig(augment="color", color_strength=strength).resolve()
