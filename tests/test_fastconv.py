"""oneDNN convolutions (fastconv): the same numbers as Paddle's own at every size the models use,
the gradient penalty's double backward through them, a full training step, and the fallback
when they cannot be built."""
import contextlib
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import paddle_gan_kit
from paddle_gan_kit import fastconv, losses
from paddle_gan_kit.config import COMMON_SIZES, CONV_BACKEND_ENV, TrainConfig
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import build_discriminator, build_generator, init_weights
from paddle_gan_kit.models.dcgan import Discriminator
from paddle_gan_kit.models.layers import LeakyReLU
from conftest import assert_one_line_error, conv_backend, run_cli, tiny_config

pytestmark = pytest.mark.skipif(os.environ.get(CONV_BACKEND_ENV) == "paddle",
                                reason="this run of the suite is the one on Paddle's convolutions only")


@pytest.fixture(scope="module")
def onednn():
    """This process on the oneDNN backend for the module (built once per test session)."""
    with conv_backend("onednn"):
        yield


def close(a, b, rtol=1e-5, floor=1e-12):
    """Equal up to ``rtol`` of the larger magnitude (at least ``floor``): float32 sums in another
    order."""
    scale = max(float(np.abs(b).max()), floor)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rtol * scale


def outputs_and_gradients(net, x, backend):
    with fastconv.using(backend):
        for p in net.parameters():
            p.clear_gradient(False)
        x = paddle.to_tensor(x, stop_gradient=False)
        y = net(x)
        # a fixed probe with a nonzero mean: with a zero-mean one every bias gradient is a sum of
        # up to 10^5 terms cancelling to 1e-5 of their size, which float rounding alone moves
        probe = paddle.to_tensor(0.5 + np.cos(np.arange(int(np.prod(y.shape)), dtype=np.float32)).reshape(y.shape))
        (y * probe).sum().backward()
        return [y.numpy(), x.grad.numpy()] + [p.grad.numpy() for p in net.parameters() if p.grad is not None]


@contextlib.contextmanager
def activations_pinned(net, x):
    """Inside this block every ReLU and LeakyReLU of ``net`` multiplies its input by the mask
    (1 where the input is positive, else the slope) that Paddle's own forward pass on ``x``
    gives, held fixed. The two backends' float32 results differ by about 1e-6 relative, and a
    pre-activation that close to zero (a 256 px generator has 10^5 of them in a layer) then
    falls on the other side of the kink on one of them: one path's gradient switches on or off
    and gradients upstream move by up to 1e-2 relative, a difference of the activation, not of
    the convolutions (``test_a_relu_mask_flip_moves_the_generators_gradients``). With the masks
    pinned both backends compute the same differentiable function, so the comparison tests the
    convolutions alone; the activations' own operator is compared in
    ``test_leaky_relu_and_its_derivatives_equal_paddles``."""
    activations = [layer for layer in net.sublayers() if isinstance(layer, LeakyReLU)]
    masks = {}

    def record(layer, inputs):
        v = inputs[0].numpy()
        masks[id(layer)] = paddle.to_tensor(np.where(v > 0, 1.0, layer.negative_slope).astype(np.float32))

    hooks = [layer.register_forward_pre_hook(record) for layer in activations]
    with fastconv.using("paddle"), paddle.no_grad():
        net(paddle.to_tensor(x))
    for hook in hooks:
        hook.remove()
    assert activations and len(masks) == len(activations)
    for layer in activations:
        layer.forward = lambda h, mask=masks[id(layer)]: h * mask
    try:
        yield
    finally:
        for layer in activations:
            del layer.forward


@pytest.mark.parametrize("size", COMMON_SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_critic_equal_paddles_at_every_size(onednn, size, channels):
    """Outputs, input gradients and every weight gradient of G and D, against Paddle's own
    convolutions with the same weights: every conv and transposed-conv geometry the models use
    (activation masks pinned, see ``activations_pinned``)."""
    cfg = TrainConfig(model="wgan_gp", size=size, channels=channels, z_dim=8, g_channels=4, d_channels=4,
                      max_channels=16, d_norm="none").resolve()
    paddle.seed(size)
    rng = np.random.default_rng(size)
    for net, x in ((build_generator(cfg), rng.standard_normal((2, 8)).astype(np.float32)),
                   (build_discriminator(cfg), rng.uniform(-1, 1, (2, channels, size, size)).astype(np.float32))):
        with activations_pinned(net, x):
            ours, reference = outputs_and_gradients(net, x, "onednn"), outputs_and_gradients(net, x, "paddle")
        assert len(ours) == len(reference) > 3
        # a gradient far smaller than the net's largest is a sum that nearly cancels, whose last
        # float32 bits depend on the summation order (the thread count): it is compared at 1e-2 of
        # the largest one's scale
        floor = 1e-2 * max(float(np.abs(b).max()) for b in reference[1:])
        for i, (a, b) in enumerate(zip(ours, reference)):
            assert close(a, b, 1e-5, floor if i > 0 else 1e-12), (
                type(net).__name__, size, channels, i, float(np.abs(a - b).max()))


def test_a_relu_mask_flip_moves_the_generators_gradients():
    """Why the masks are pinned above, on Paddle's backend alone: the 256 px grayscale generator
    of that test, with its pre-activation nearest to zero moved by 1e-6 (float32 rounding's
    size at that scale), gives gradients equal to float rounding when the value stays on its
    side of zero and more than 1e-4 relative apart when it crosses."""
    cfg = TrainConfig(model="wgan_gp", size=256, channels=1, z_dim=8, g_channels=4, d_channels=4,
                      max_channels=16, d_norm="none").resolve()
    paddle.seed(256)
    net = build_generator(cfg)
    x = np.random.default_rng(256).standard_normal((2, 8)).astype(np.float32)
    last = [layer for layer in net.sublayers() if isinstance(layer, LeakyReLU)][-1]
    seen = {}

    def record(layer, inputs):
        seen["v"] = inputs[0].numpy().ravel()

    hook = last.register_forward_pre_hook(record)
    with fastconv.using("paddle"), paddle.no_grad():
        net(paddle.to_tensor(x))
    hook.remove()
    k = int(np.argmin(np.abs(seen["v"])))  # the pre-activation nearest the kink
    side = 1.0 if seen["v"][k] > 0 else -1.0

    def gradients_with(value):
        def nudge(layer, inputs):
            flat = inputs[0].reshape([-1])
            delta = np.zeros(flat.shape, np.float32)
            delta[k] = value - float(flat[k])
            return (inputs[0] + paddle.to_tensor(delta).reshape(inputs[0].shape),)
        hook = last.register_forward_pre_hook(nudge)
        try:
            return outputs_and_gradients(net, x, "paddle")
        finally:
            hook.remove()

    def apart(a, b):
        return max(float(np.abs(u - v).max() / np.abs(v).max()) for u, v in zip(a[1:], b[1:]))

    reference = gradients_with(side * 1e-6)
    assert apart(gradients_with(side * 2e-6), reference) < 1e-5
    assert apart(gradients_with(-side * 1e-6), reference) > 1e-4


@pytest.mark.parametrize("channels", [1, 3, 4, 5])
@pytest.mark.parametrize("side,kernel,stride,pad", [(9, 4, 2, 1), (8, 4, 2, 1), (7, 3, 1, 1), (10, 5, 3, 2),
                                                    (6, 1, 1, 0), (11, 4, 2, 0), (5, 3, 2, 2)])
def test_input_gradients_into_few_channels_equal_paddles(onednn, channels, side, kernel, stride, pad):
    """A convolution's input gradient (a transposed convolution) into at most 4 channels runs on
    the operator's own kernel, not oneDNN's (5 channels: oneDNN's): any stride, padding and
    kernel, and input sides the stride does not divide (the gradient reaches every input pixel,
    also the ones no output uses), against Paddle's own."""
    rng = np.random.default_rng(side * 10 + channels)
    x_np = rng.standard_normal((3, channels, side, side + 1)).astype(np.float32)
    w_np = rng.standard_normal((6, channels, kernel, kernel)).astype(np.float32)
    results = []
    for backend in ("onednn", "paddle"):
        with fastconv.using(backend):
            x, w = paddle.to_tensor(x_np, stop_gradient=False), paddle.to_tensor(w_np)
            y = fastconv.conv2d(x, w, stride=stride, padding=pad)
            probe = paddle.to_tensor(np.cos(np.arange(int(np.prod(y.shape)), dtype=np.float32)).reshape(y.shape))
            (dx,) = paddle.grad((y * probe).sum(), [x])
            results.append(dx.numpy())
    assert close(*results), float(np.abs(results[0] - results[1]).max())
    assert np.abs(results[1]).max() > 0


def _dense(w, groups):
    """A grouped conv's weight (OC, IC/G, K, K) as the equal dense one (OC, IC, K, K), zero
    outside each output channel's group: sum over p of w[o, p] * S[o, p, i], S selecting input
    channel i = group(o) * IC/G + p, so gradients of every order reach ``w``."""
    oc, per, k, _ = w.shape
    select = np.zeros((oc, per, per * groups, 1, 1), np.float32)
    for o in range(oc):
        for p in range(per):
            select[o, p, (o // (oc // groups)) * per + p] = 1.0
    return (w.unsqueeze(2) * paddle.to_tensor(select)).sum(axis=1)


@pytest.mark.parametrize("channels,groups,side,kernel,stride,pads", [
    (96, 96, 16, 3, 2, (0, 1, 0, 1)),  # EfficientNet's depthwise convs with TensorFlow's "SAME" padding
    (24, 24, 9, 5, 2, (2, 2, 2, 2)), (40, 40, 8, 5, 1, (2, 2, 2, 2)), (16, 16, 2, 3, 1, (1, 1, 1, 1)),
    (8, 2, 7, 3, 2, (1, 0, 0, 1)),  # two groups, padding on other sides
    (6, 1, 6, 4, 2, (1, 2, 1, 2))])  # one group, asymmetric
def test_grouped_and_asymmetric_convolutions_equal_paddles_to_the_double_backward(onednn, channels, groups, side,
                                                                                 kernel, stride, pads):
    """Depthwise and grouped convolutions with padding that differs on each side: output, both
    gradients and the double backward to input and weight, against the equal dense convolution
    on Paddle's own (whose depthwise kernel has no double grad on the CPU), and the first order
    against Paddle's grouped one."""
    rng = np.random.default_rng(channels + side)
    x_np = rng.standard_normal((3, channels, side, side)).astype(np.float32)
    w_np = rng.standard_normal((channels, channels // groups, kernel, kernel)).astype(np.float32)
    results = []
    for backend in ("onednn", "paddle"):
        with fastconv.using(backend):
            x, w = paddle.to_tensor(x_np, stop_gradient=False), paddle.to_tensor(w_np, stop_gradient=False)
            if backend == "onednn":
                y = fastconv.conv2d(x, w, stride=stride, padding=pads, groups=groups)
            else:
                y = fastconv.conv2d(x, _dense(w, groups), stride=stride, padding=pads)
                with paddle.no_grad():
                    grouped = fastconv.conv2d(x, w, stride=stride, padding=pads, groups=groups)
                assert close(grouped.numpy(), y.numpy())
            probe = paddle.to_tensor(0.5 + np.cos(np.arange(int(np.prod(y.shape)), dtype=np.float32)).reshape(y.shape))
            dx, dw = paddle.grad((y * probe).sum(), [x, w], create_graph=True)
            ddx, ddw = paddle.grad((dx * dx).sum() + (dw * dw * dw).sum(), [x, w])
            results.append([y.numpy(), dx.numpy(), dw.numpy(), ddx.numpy(), ddw.numpy()])
    assert results[0][0].shape == (3, channels, -(-(side + pads[0] + pads[1] - kernel + 1) // stride),
                                   -(-(side + pads[2] + pads[3] - kernel + 1) // stride))
    for i, (a, b) in enumerate(zip(*results)):
        assert np.abs(b).max() > 0 and close(a, b, 1e-5), (i, float(np.abs(a - b).max()))


@pytest.mark.parametrize("norm", ["layer", "instance", "none"])
def test_gradient_penalty_double_backward_equals_paddles(onednn, norm):
    paddle.seed(3)
    critic = init_weights(Discriminator(32, 3, 8, 32, norm))
    real, fake = paddle.randn([4, 3, 32, 32]), paddle.randn([4, 3, 32, 32])
    eps = paddle.rand([4, 1, 1, 1])
    results = []
    for backend in ("onednn", "paddle"):
        with fastconv.using(backend):
            for p in critic.parameters():
                p.clear_gradient(False)
            gp = losses.gradient_penalty(critic, real, fake, eps)
            gp.backward()
            results.append([float(gp)] + [p.grad.numpy() for p in critic.parameters() if p.grad is not None])
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert len(results[0]) == len(results[1]) > 4
    for a, b in zip(results[0][1:], results[1][1:]):
        assert close(a, b, rtol=1e-5)


@pytest.mark.parametrize("norm", ["layer", "instance"])
def test_the_gradient_penalty_frees_its_graph(onednn, norm):
    """After a penalty step nothing of its graph stays alive: the critic's activations are freed
    once the step's tensors go out of scope. A PyLayer that keeps its own output on its context
    (outside save_for_backward) makes a cycle through Paddle's C++ graph that no garbage
    collector sees; the layer norm once did, and WGAN-GP then leaked every step's activations
    (57-60 MB a generator step of wgan_gp_96 in bench_train.py, until the process ran out of
    memory)."""
    import gc
    import weakref

    from paddle_gan_kit.models.layers import SampleLayerNorm

    paddle.seed(4)
    critic = init_weights(Discriminator(32, 3, 8, 32, norm))
    kind = SampleLayerNorm if norm == "layer" else paddle.nn.InstanceNorm2D
    layers = [layer for layer in critic.sublayers() if isinstance(layer, kind)]
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda layer, inputs: seen.append(weakref.ref(inputs[0])))
             for layer in layers]
    gp = losses.gradient_penalty(critic, paddle.randn([4, 3, 32, 32]), paddle.randn([4, 3, 32, 32]))
    gp.backward()
    for hook in hooks:
        hook.remove()
    del gp
    gc.collect()
    assert layers and len(seen) == len(layers)
    assert [ref() is None for ref in seen] == [True] * len(seen)


@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_leaky_relu_and_its_derivatives_equal_paddles(onednn, slope):
    """fastconv.leaky_relu (oneDNN's kernel) against F.leaky_relu / F.relu: the output, the
    input gradient and the double backward's. At exactly 0 the gradient is the slope (oneDNN's
    convention; Paddle's leaky_relu takes 1 there, its relu 0)."""
    rng = np.random.default_rng(7)
    x_np = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    probe = paddle.to_tensor(rng.standard_normal(x_np.shape).astype(np.float32))
    results = []
    for backend in ("onednn", "paddle"):
        with fastconv.using(backend):
            x = paddle.to_tensor(x_np, stop_gradient=False)
            y = fastconv.leaky_relu(x, slope)
            (linear,) = paddle.grad((y * probe).sum(), [x], create_graph=True)
            (g,) = paddle.grad((y * y * probe).sum(), [x], create_graph=True)
            (g * g).sum().backward()
            results.append([y.numpy(), linear.numpy(), g.numpy(), x.grad.numpy()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    x = paddle.zeros([2, 3], dtype="float32")
    x.stop_gradient = False
    (at_zero,) = paddle.grad(fastconv.leaky_relu(x, slope).sum(), [x])
    np.testing.assert_array_equal(at_zero.numpy(), np.full((2, 3), slope, np.float32))


@pytest.mark.parametrize("slope", [0.2, 0.0])
def test_the_inference_affine_activation_equals_its_definition(onednn, slope):
    """fastconv.affine_activation: x * scale[c] + shift[c], then leaky ReLU, in float32."""
    rng = np.random.default_rng(11)
    x, scale, shift = (rng.standard_normal(shape).astype(np.float32) for shape in ((3, 5, 4, 6), (5,), (5,)))
    v = x * scale.reshape(1, 5, 1, 1) + shift.reshape(1, 5, 1, 1)
    expected = np.where(v > 0, v, v * np.float32(slope))
    out = fastconv.affine_activation(paddle.to_tensor(x), paddle.to_tensor(scale), paddle.to_tensor(shift), slope)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert (out.numpy() >= 0).all() if slope == 0 else (out.numpy() < 0).any()
    with fastconv.using("paddle"):
        assert fastconv.affine_activation(paddle.to_tensor(x), paddle.to_tensor(scale), paddle.to_tensor(shift),
                                          slope) is None


@pytest.mark.parametrize("size,upsample", [(32, "transposed"), (96, "transposed"), (64, "nearest")])
def test_sampling_fuses_each_batchnorm_with_its_activation(onednn, monkeypatch, size, upsample):
    """In inference (eval mode, no gradients) the generator runs each BatchNorm and the ReLU
    after it as one pass, and its images equal Paddle's layer-by-layer ones; with gradients
    recorded, or in training mode, nothing is fused."""
    cfg = TrainConfig(model="dcgan", size=size, channels=3, z_dim=8, g_channels=4, max_channels=16,
                      g_upsample=upsample).resolve()
    paddle.seed(size)
    generator = build_generator(cfg)
    with paddle.no_grad():  # running statistics far from the initial 0 and 1
        for _ in range(3):
            generator(paddle.randn([6, 8]) * 3.0)
    generator.eval()
    norms = [layer for layer in generator.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    calls = []
    real = fastconv.affine_activation
    monkeypatch.setattr(fastconv, "affine_activation", lambda *args: calls.append(1) or real(*args))
    z = paddle.to_tensor(np.random.default_rng(size).standard_normal((5, 8)).astype(np.float32))
    with paddle.no_grad():
        fused = generator(z).numpy()
    assert len(calls) == len(norms) > 0
    with fastconv.using("paddle"), paddle.no_grad():
        reference = generator(z).numpy()
    assert close(fused, reference, 1e-5), float(np.abs(fused - reference).max())
    calls.clear()
    generator(z)
    generator.train()
    with paddle.no_grad():
        generator(z)
    assert calls == []


@pytest.mark.parametrize("shape", [(3, 8, 16, 16), (3, 16, 8, 8), (3, 32, 4, 4), (2, 5, 3, 7)])
def test_layer_norm_and_its_second_derivatives_equal_paddles(onednn, shape):
    """The critic's layer norm on the fused operators (oneDNN backend) against its composition
    from Paddle's operators: the output, the input gradient taken with create_graph (the
    penalty's inner gradient) and a double backward through it to the input, scale and shift."""
    from paddle_gan_kit.models.layers import SampleLayerNorm

    rng = np.random.default_rng(sum(shape))
    x_np = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    scale_np, shift_np = (rng.standard_normal((1, shape[1], 1, 1)).astype(np.float32) for _ in range(2))
    probe, probe2 = (paddle.to_tensor(rng.standard_normal(shape).astype(np.float32)) for _ in range(2))
    results = []
    for backend in ("onednn", "paddle"):
        norm = SampleLayerNorm(shape[1])
        norm.weight.set_value(paddle.to_tensor(scale_np))
        norm.bias.set_value(paddle.to_tensor(shift_np))
        with fastconv.using(backend):
            x = paddle.to_tensor(x_np, stop_gradient=False)
            y = norm(x)
            with fastconv.input_gradients_only():
                (gx,) = paddle.grad((y * probe).sum(), [x], create_graph=True)
            ((gx * gx * probe2).sum() + (y * y).sum()).backward()
            results.append([y.numpy(), gx.numpy(), x.grad.numpy(), norm.weight.grad.numpy(), norm.bias.grad.numpy()])
    for i, (a, b) in enumerate(zip(*results)):
        assert close(a, b), (shape, i, float(np.abs(a - b).max()))


_ONE_POOL = """
import os
import numpy as np, paddle
import paddle_gan_kit
from paddle_gan_kit import fastconv
from paddle_gan_kit.models.layers import SampleLayerNorm
fastconv.configure("onednn", "cpu")
x = paddle.to_tensor(np.random.default_rng(0).standard_normal((8, 32, 16, 16)).astype(np.float32))
with fastconv.using("onednn"):
    fastconv.conv2d(x, paddle.ones([32, 32, 3, 3]), 1, 1)            # oneDNN starts its threads
    before = set(os.listdir("/proc/self/task"))
    for _ in range(3):
        SampleLayerNorm(32)(x)                                       # the operators' own OpenMP loops
    print(len(before), len(set(os.listdir("/proc/self/task")) - before))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_the_operators_loops_share_onednns_threads(onednn):
    """The operators' OpenMP loops (the layer norm and the channel scale and shift) run on the
    OpenMP runtime the wheel's oneDNN uses: no second pool of threads, whose idle workers spun
    beside oneDNN's on the same cores and made a WGAN-GP-64 step 6-16% slower. A fresh process,
    2 threads."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", _ONE_POOL], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    threads, added = map(int, result.stdout.split()[-2:])
    assert threads >= 2 and added == 0, result.stdout


_SCRATCHPADS = """
import numpy as np, paddle
import paddle_gan_kit
from paddle_gan_kit import fastconv
fastconv.configure("onednn", "cpu")
x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 8, 8, 8)).astype(np.float32))
x.stop_gradient = False
w = paddle.to_tensor(np.random.default_rng(1).standard_normal((16, 8, 4, 4)).astype(np.float32))
w.stop_gradient = False
with fastconv.using("onednn"):
    fastconv.conv2d(x, w, 2, 1).sum().backward()
"""


def test_every_convolution_runs_on_its_own_kept_scratchpad(onednn):
    """Forward, backward-data and backward-weights each run with a scratchpad the operator keeps
    (oneDNN's "user" mode, as PyTorch passes its own): in the default mode the same kernels ran
    10-17% slower per call in one measurement (AVX-512 Xeon, DCGAN-32). Read from oneDNN's own log."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "ONEDNN_VERBOSE": "1"}
    result = subprocess.run([sys.executable, "-c", _SCRATCHPADS], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [line for line in result.stdout.splitlines() if ",exec," in line and ",convolution," in line
            and "mb4_ic8oc16" in line]
    kinds = {kind for kind in ("forward_training", "backward_data", "backward_weights") for line in runs if kind in line}
    assert kinds == {"forward_training", "backward_data", "backward_weights"}, result.stdout[-2000:]
    assert all("attr-scratchpad:user" in line for line in runs), runs


def test_the_openmp_runtime_linked_is_the_wheels(tmp_path):
    from paddle_gan_kit.fastconv.builder import openmp_link_flag

    assert openmp_link_flag(str(tmp_path)) == "-fopenmp"
    (tmp_path / "libiomp5.so").write_bytes(b"")
    assert openmp_link_flag(str(tmp_path)) == "-l:libiomp5.so"


def first_step_gradients(cfg):
    """Every parameter gradient the optimizers see in the first training step."""
    from paddle_gan_kit.trainer import Trainer

    trainer = Trainer(cfg, progress=False)
    grads = {}
    nets = trainer.objective
    for name, opt, model in (("d", nets.opt_d, nets.discriminator), ("g", nets.opt_g, nets.generator)):
        def step(original=opt.step, name=name, model=model):
            grads.setdefault(name, [p.grad.numpy().copy() for p in model.parameters() if p.grad is not None])
            original()
        opt.step = step
    values = {k: float(v) for k, v in trainer.train_step().items()}
    return grads, values, fastconv.backend()


@pytest.mark.parametrize("model", ["dcgan", "wgan_gp"])
def test_a_training_step_equals_paddles(onednn, tmp_path, tiny_npy, model):
    runs = [first_step_gradients(tiny_config(tmp_path / backend, model, tiny_npy, n_critic=2, conv_backend=backend))
            for backend in ("onednn", "paddle")]
    (grads_a, values_a, backend_a), (grads_b, values_b, backend_b) = runs
    assert (backend_a, backend_b) == ("onednn", "paddle")
    for key in values_b:
        assert values_a[key] == pytest.approx(values_b[key], rel=1e-4, abs=1e-6), key
    for part in ("d", "g"):
        assert len(grads_a[part]) == len(grads_b[part]) > 2
        for a, b in zip(grads_a[part], grads_b[part]):
            assert close(a, b, rtol=1e-4)


def test_a_failed_build_falls_back_to_paddle_and_says_why(tmp_path, tiny_npy, monkeypatch):
    def no_compiler(progress=None):
        raise fastconv.BuildError("g++ was not found")

    monkeypatch.setattr(fastconv, "build", no_compiler)
    monkeypatch.setitem(fastconv._state, "ops", None)
    assert fastconv.configure("auto", "cpu") == "convolutions: Paddle's own, because g++ was not found"
    assert fastconv.backend() == "paddle"
    with pytest.raises(GanKitError, match="--conv-backend onednn: g.. was not found; use --conv-backend auto or paddle"):
        fastconv.configure("onednn", "cpu")
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=2, conv_backend="auto"), progress=False)
    assert "convolutions: Paddle's own, because g++ was not found" in (out / "train.log").read_text()
    assert "are for the CPU and this run is on gpu:0" in fastconv.configure("auto", "gpu:0")


def test_missing_headers_from_the_command_line(tmp_path, tiny_npy):
    """Without oneDNN's headers: auto trains on Paddle's convolutions and says why; onednn is
    one line (a fresh cache, so nothing built earlier is reused)."""
    env = {"PADDLE_GAN_KIT_ONEDNN_INCLUDE": str(tmp_path / "nowhere"), "PADDLE_GAN_KIT_CACHE": str(tmp_path / "cache")}
    base = ["--data", tiny_npy, "--steps", 1, "--size", 16, "--batch-size", 8, "--set", "g_channels=8",
            "--set", "d_channels=8", "--no-progress"]
    result = run_cli("paddle_gan_kit.train", *base, "--out", tmp_path / "a", "--conv-backend", "onednn", env=env)
    assert_one_line_error(result, "--conv-backend onednn:", "holds no oneapi/dnnl/dnnl.hpp", "use --conv-backend auto")
    result = run_cli("paddle_gan_kit.train", *base, "--out", tmp_path / "b", env=env)
    assert result.returncode == 0, result.stderr
    assert "convolutions: Paddle's own, because PADDLE_GAN_KIT_ONEDNN_INCLUDE=" in result.stderr


def test_a_run_moved_between_backends_continues_and_says_so(onednn, tmp_path, tiny_npy):
    out = tmp_path / "run"
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=2, conv_backend="paddle"), progress=False)
    paddle_gan_kit.train(tiny_config(out, "dcgan", tiny_npy, steps=4, conv_backend="onednn"), resume=True,
                         progress=False)
    log = (out / "train.log").read_text()
    assert "with changed settings: steps 2 -> 4; conv_backend 'paddle' -> 'onednn'" in log
    assert "written with paddle convolutions and training goes on with onednn's: it continues within float" in log
