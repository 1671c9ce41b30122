"""Model shapes for every size and channel count, initialisation, losses, gradient penalty."""
import numpy as np
import paddle
import pytest

import paddle_gan_kit  # noqa: F401
from paddle_gan_kit import losses
from paddle_gan_kit.config import TrainConfig
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_discriminator, build_generator, init_weights
from paddle_gan_kit.models.dcgan import Discriminator, Generator


@pytest.mark.parametrize("size", [28, 32, 64, 96, 128, 256])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_shapes_every_size_and_channel_count(size, channels, model):
    cfg = TrainConfig(model=model, size=size, channels=channels, z_dim=8,
                      g_channels=4, d_channels=4, max_channels=16).resolve()
    generator, critic = build_generator(cfg), build_discriminator(cfg)
    images = generator(paddle.randn([2, 8]))
    assert images.shape == [2, channels, size, size]
    values = images.numpy()
    assert values.min() >= -1.0 and values.max() <= 1.0  # tanh output
    assert critic(images).shape == [2]


def test_dcgan_64_matches_the_paper_layout():
    generator = Generator(64, 3, 100, 64, 512)
    convs = [m for m in generator.sublayers() if isinstance(m, paddle.nn.Conv2DTranspose)]
    # z -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 -> 3x64x64 (pytorch/examples dcgan)
    assert [c.weight.shape[1] for c in convs] == [512, 256, 128, 64, 3]
    d = Discriminator(64, 3, 64, 512, "batch")
    norms = [m for m in d.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert len(norms) == 3  # after every conv but the first and the last
    critic = build_discriminator(TrainConfig(model="wgan_gp", channels=3).resolve())
    assert not any(isinstance(m, paddle.nn.BatchNorm2D) for m in critic.sublayers())


@pytest.mark.parametrize("size", [36, 100, 8, 513, 0])
def test_unsupported_sizes_are_refused(size):
    with pytest.raises(GanKitError, match="unsupported size"):
        TrainConfig(size=size).resolve()


def test_initialisation_statistics():
    paddle.seed(0)
    g = init_weights(Generator(64, 3, 100, 64, 512))
    d = init_weights(Discriminator(64, 3, 64, 512, "batch"))
    for model in (g, d):
        for layer in model.sublayers():
            if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Conv2DTranspose)):
                w = layer.weight.numpy()
                if w.size > 10000:
                    assert abs(w.mean()) < 0.002 and abs(w.std() - 0.02) < 0.002
                if layer.bias is not None:
                    assert np.all(layer.bias.numpy() == 0)
            if isinstance(layer, paddle.nn.BatchNorm2D):
                scale = layer.weight.numpy()
                if scale.size >= 256:
                    assert abs(scale.mean() - 1.0) < 0.005 and abs(scale.std() - 0.02) < 0.005
                assert np.all(layer.bias.numpy() == 0)


def test_nonsaturating_losses_on_logits():
    real = paddle.to_tensor([2.0, -1.0, 0.5])
    fake = paddle.to_tensor([-3.0, 0.0, 1.0])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_d = -np.mean(np.log(sig(real.numpy()))) - np.mean(np.log(1 - sig(fake.numpy())))
    assert float(losses.d_loss_nonsaturating(real, fake)) == pytest.approx(expected_d, rel=1e-5)
    expected_g = -np.mean(np.log(sig(fake.numpy())))
    assert float(losses.g_loss_nonsaturating(fake)) == pytest.approx(expected_g, rel=1e-5)
    # one-sided smoothing: real target 0.9, fake target stays 0
    r = real.numpy()
    smoothed = -np.mean(0.9 * np.log(sig(r)) + 0.1 * np.log(1 - sig(r))) - np.mean(np.log(1 - sig(fake.numpy())))
    assert float(losses.d_loss_nonsaturating(real, fake, 0.1)) == pytest.approx(smoothed, rel=1e-5)
    # huge logits stay finite (sigmoid + BCE would give inf/NaN here)
    assert np.isfinite(float(losses.d_loss_nonsaturating(paddle.to_tensor([-200.0]), paddle.to_tensor([200.0]))))


def test_gradient_penalty_uses_real_fake_interpolates():
    # C(x) = 0.5 * ||x||^2 has gradient x, so the penalty is mean((||x_hat|| - 1)^2)
    class Quadratic(paddle.nn.Layer):
        def forward(self, x):
            return 0.5 * (x * x).reshape([x.shape[0], -1]).sum(axis=1)

    real = paddle.randn([4, 1, 3, 3])
    fake = paddle.randn([4, 1, 3, 3])
    eps = paddle.to_tensor([0.0, 0.25, 0.5, 1.0]).reshape([4, 1, 1, 1])
    x_hat = (eps * real + (1 - eps) * fake).numpy().reshape(4, -1)
    expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1) ** 2)
    assert float(losses.gradient_penalty(Quadratic(), real, fake, eps)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("norm", ["layer", "instance", "none", "batch"])
def test_gradient_penalty_parameter_gradients_match_finite_differences(norm):
    paddle.set_default_dtype("float64")
    try:
        paddle.seed(1)
        critic = init_weights(Discriminator(16, 1, 4, 16, norm))
        real = paddle.randn([3, 1, 16, 16], dtype="float64")
        fake = paddle.randn([3, 1, 16, 16], dtype="float64")
        eps = paddle.rand([3, 1, 1, 1], dtype="float64")
        losses.gradient_penalty(critic, real, fake, eps).backward()
        for param in (critic.parameters()[0], critic.parameters()[-2]):
            analytic = param.grad.numpy().copy()
            base = param.numpy().copy()
            flat = [np.unravel_index(i, base.shape) for i in (0, base.size // 2, base.size - 1)]
            for idx in flat:
                h = 1e-6
                values = []
                for sign in (1, -1):
                    shifted = base.copy()
                    shifted[idx] += sign * h
                    param.set_value(shifted)
                    values.append(float(losses.gradient_penalty(critic, real, fake, eps)))
                param.set_value(base)
                numeric = (values[0] - values[1]) / (2 * h)
                assert numeric == pytest.approx(analytic[idx], rel=1e-5, abs=1e-8)
    finally:
        paddle.set_default_dtype("float32")


def test_sample_layer_norm_matches_the_formula():
    from paddle_gan_kit.models.layers import SampleLayerNorm

    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (4, 5, 3, 3)).astype("float32")  # a large mean: no cancellation
    norm = SampleLayerNorm(5)
    weight = rng.normal(1, 0.1, (1, 5, 1, 1)).astype("float32")
    bias = rng.normal(0, 0.1, (1, 5, 1, 1)).astype("float32")
    norm.weight.set_value(weight)
    norm.bias.set_value(bias)
    flat = x.reshape(4, -1).astype(np.float64)
    mean = flat.mean(1).reshape(4, 1, 1, 1)
    var = flat.var(1).reshape(4, 1, 1, 1)
    expected = (x - mean) / np.sqrt(var + 1e-5) * weight + bias
    np.testing.assert_allclose(norm(paddle.to_tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_batch_norm_differentiated_twice_equals_paddles_kernel():
    """Inside ``differentiable_twice`` the discriminator's BatchNorm2D runs on primitives (Paddle's
    double-grad kernel is quadratic in the channels): the output, the input gradient and the
    double backward's parameter and input gradients equal nn.BatchNorm2D's, and the running
    statistics stay as they were; outside the block it is Paddle's kernel, bit for bit."""
    from paddle_gan_kit.models.layers import BatchNorm2D, differentiable_twice

    rng = np.random.default_rng(0)
    ours, reference = BatchNorm2D(3), paddle.nn.BatchNorm2D(3)
    ours.weight.set_value(rng.normal(1, 0.3, [3]).astype("float32"))
    ours.bias.set_value(rng.normal(0, 0.3, [3]).astype("float32"))
    reference.set_state_dict(ours.state_dict())
    x = paddle.to_tensor(rng.normal(2.0, 1.5, (5, 3, 4, 4)).astype("float32"), stop_gradient=False)
    weight_out = paddle.to_tensor(rng.normal(0, 1, (5, 3, 4, 4)).astype("float32"))

    def twice(layer):
        y = layer(x)
        (dx,) = paddle.grad((y * weight_out).sum(), [x], create_graph=True)
        outer = paddle.grad((dx * dx).sum(), [x, layer.weight, layer.bias])
        return [t.numpy() for t in (y, dx, *outer)]

    with differentiable_twice():
        results = twice(ours)
    assert np.array_equal(ours._mean.numpy(), np.zeros(3)) and np.array_equal(ours._variance.numpy(), np.ones(3))
    for got, want in zip(results, twice(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(results[-2]).max() > 1e-3  # the weight's double-backward gradient is not trivially zero
    ours.set_state_dict(reference.state_dict())
    np.testing.assert_array_equal(ours(x).numpy(), reference(x).numpy())
    np.testing.assert_array_equal(ours._mean.numpy(), reference._mean.numpy())


@pytest.mark.parametrize("transpose", [False, True])
def test_fast_bias_convs_equal_paddles_own(transpose):
    """The models' Conv2D/Conv2DTranspose add the bias through a (N, C, H*W) view (faster on the
    CPU); outputs and gradients must equal nn.Conv2D/nn.Conv2DTranspose with the same weights."""
    from paddle_gan_kit.models import layers

    ours_cls, paddle_cls = ((layers.Conv2DTranspose, paddle.nn.Conv2DTranspose) if transpose
                            else (layers.Conv2D, paddle.nn.Conv2D))
    ours, reference = ours_cls(6, 5, 4, 2, 1), paddle_cls(6, 5, 4, stride=2, padding=1)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in reference.parameters()]
    reference.set_state_dict(ours.state_dict())
    rng = np.random.default_rng(0)
    ours.bias.set_value(rng.normal(0, 1, [5]).astype("float32"))
    reference.bias.set_value(ours.bias.numpy())
    x = paddle.to_tensor(rng.normal(0, 1, (3, 6, 8, 8)).astype("float32"), stop_gradient=False)
    weight_out = paddle.to_tensor(rng.normal(0, 1, ours(x).shape).astype("float32"))
    results = []
    for layer in (ours, reference):
        y = layer(x)
        grads = paddle.grad((y * weight_out).sum(), [x, layer.weight, layer.bias])
        results.append([y.numpy()] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
