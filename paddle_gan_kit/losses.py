"""GAN losses as functions of logits/scores, the penalties on D, and their registries.

A training objective is composed of one entry of :data:`LOSSES` (what D and G minimise, and
which scalars show how the game goes) and any entries of :data:`REGULARISERS` whose weight in
the config is above zero. ``steps.AdversarialStep`` composes them; adding a loss or a penalty
is one function here plus one registry entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import paddle
import paddle.nn.functional as F

from paddle_gan_kit import fastconv
from paddle_gan_kit.models.layers import differentiable_twice

_HALF = (paddle.float16, paddle.bfloat16)  # autocast dtypes; the penalty's norm is taken in float32


def d_loss_nonsaturating(real_logits, fake_logits, label_smoothing: float = 0.0):
    """DCGAN discriminator loss on logits (N,): BCE(real, 1 - smoothing) + BCE(fake, 0).

    One-sided label smoothing (Salimans et al. 2016) softens only the real target.
    ``binary_cross_entropy_with_logits`` is used, never sigmoid + BCE, for stability.
    """
    real_target = paddle.full_like(real_logits, 1.0 - label_smoothing)
    fake_target = paddle.zeros_like(fake_logits)
    return (F.binary_cross_entropy_with_logits(real_logits, real_target)
            + F.binary_cross_entropy_with_logits(fake_logits, fake_target))


def g_loss_nonsaturating(fake_logits):
    """Non-saturating generator loss: BCE(D(G(z)), 1) = -log sigmoid(logit), mean over N."""
    return F.binary_cross_entropy_with_logits(fake_logits, paddle.ones_like(fake_logits))


def critic_loss_wasserstein(real_scores, fake_scores, label_smoothing: float = 0.0):
    """Critic loss E[C(fake)] - E[C(real)]; its negative is the Wasserstein estimate.
    (Label smoothing has no meaning for scores and is ignored.)"""
    return fake_scores.mean() - real_scores.mean()


def g_loss_wasserstein(fake_scores):
    """Generator loss -E[C(G(z))]."""
    return -fake_scores.mean()


def d_loss_hinge(real_scores, fake_scores, label_smoothing: float = 0.0):
    """Hinge loss of D (Lim & Ye 2017; SNGAN, Miyato et al. 2018): E[relu(1 - D(x))] +
    E[relu(1 + D(G(z)))]. (Label smoothing has no meaning for margins and is ignored.)"""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def g_loss_hinge(fake_scores):
    """G's loss with the hinge D loss: -E[D(G(z))]."""
    return -fake_scores.mean()


def report_scores(real_scores, fake_scores) -> dict:
    """Mean raw D scores of each side (a margin-based D has no probabilities)."""
    return {"d_real": real_scores.mean(), "d_fake": fake_scores.mean()}


def report_probabilities(real_logits, fake_logits) -> dict:
    """Mean D(x) and D(G(z)) as probabilities: how sure D is of each side."""
    return {"d_real": F.sigmoid(real_logits).mean(), "d_fake": F.sigmoid(fake_logits).mean()}


def report_wasserstein(real_scores, fake_scores) -> dict:
    """The critic's Wasserstein estimate E[C(real)] - E[C(fake)]."""
    return {"wasserstein": real_scores.mean() - fake_scores.mean()}


@dataclass(frozen=True)
class Loss:
    """What D and G minimise, on D's outputs (N,), and the scalars that show the game."""

    d_loss: Callable  # (real_out, fake_out, label_smoothing) -> scalar
    g_loss: Callable  # (fake_out) -> scalar
    report: Callable  # (real_out, fake_out) -> {name: scalar}
    d_name: str  # the name D's loss is logged under: "loss_d", or "loss_critic" for a critic


LOSSES: dict[str, Loss] = {
    "nonsaturating": Loss(d_loss_nonsaturating, g_loss_nonsaturating, report_probabilities, "loss_d"),
    "wasserstein": Loss(critic_loss_wasserstein, g_loss_wasserstein, report_wasserstein, "loss_critic"),
    "hinge": Loss(d_loss_hinge, g_loss_hinge, report_scores, "loss_d"),
}


def gradient_penalty(critic, real, fake, epsilon=None, loss_scale=None):
    """WGAN-GP penalty E[(||grad_x C(x_hat)||_2 - 1)^2] on x_hat = eps*real + (1-eps)*fake.

    ``real``/``fake``: (N, C, H, W); ``epsilon``: (N, 1, 1, 1) in [0, 1], drawn U(0, 1) per
    sample when None (Gulrajani et al. 2017, Algorithm 1). The graph is kept
    (``create_graph=True``) so the penalty trains the critic's parameters.

    ``loss_scale`` (a scalar tensor, float16 training): the inner backward runs on
    ``scores * loss_scale`` so small gradients survive float16, and the gradients are divided
    by it again, in float32, before the norm; an overflow gives inf, which the grad scaler
    then skips. The penalty's value does not depend on it.
    """
    n = real.shape[0]
    if epsilon is None:
        epsilon = paddle.rand([n, 1, 1, 1], dtype=real.dtype)
    x_hat = epsilon * real.detach() + (1.0 - epsilon) * fake.detach()
    x_hat.stop_gradient = False
    grads = input_gradients(critic, x_hat, loss_scale)
    # the small offset keeps sqrt differentiable should a gradient be exactly zero
    flat = grads.reshape([n, -1])
    # squares as products: Paddle's CPU pow and its gradient are several times slower than multiply
    norms = paddle.sqrt(paddle.sum(flat * flat, axis=1) + 1e-12)  # (N,)
    return paddle.mean((norms - 1.0) * (norms - 1.0))


def input_gradients(critic, x, loss_scale=None):
    """grad_x sum(critic(x)) with the graph kept, float32, unscaled; see ``gradient_penalty``
    for ``loss_scale``. Taken for ``x`` alone: the oneDNN convolutions skip the weight
    gradients this pass does not need (``fastconv.input_gradients_only``)."""
    with differentiable_twice():  # batch norm through primitives (its fused double grad is slow)
        scores = critic(x)
    total = (scores.astype("float32") if scores.dtype in _HALF else scores).sum()
    if loss_scale is not None:
        total = total * loss_scale
    with fastconv.input_gradients_only():
        grads = paddle.grad(outputs=total, inputs=[x], create_graph=True)[0]
    if grads.dtype in _HALF:
        grads = grads.astype("float32")
    return grads / loss_scale if loss_scale is not None else grads


def r1_penalty(critic, real, loss_scale=None):
    """R1 (Mescheder et al. 2018): 0.5 E[|grad_x D(x)|^2] on real images (N, C, H, W); times
    gamma it is the paper's gamma/2 E|grad|^2. Differentiable, like the gradient penalty."""
    x = real.detach()
    x.stop_gradient = False
    grads = input_gradients(critic, x, loss_scale)
    flat = grads.reshape([x.shape[0], -1])
    return 0.5 * paddle.mean(paddle.sum(flat * flat, axis=1))


def gp_term(critic, real, fake, loss_scale=None):
    """The gradient penalty as a regulariser (the registry's calling convention)."""
    return gradient_penalty(critic, real, fake, loss_scale=loss_scale)


def r1_term(critic, real, fake, loss_scale=None):
    """R1 as a regulariser (the registry's calling convention; ``fake`` is not used)."""
    return r1_penalty(critic, real, loss_scale=loss_scale)


@dataclass(frozen=True)
class Regulariser:
    """A penalty on D added to its loss as ``weight * term``; ``weight_key`` names its weight
    in the config (0 turns it off)."""

    term: Callable  # (critic, real, fake, loss_scale) -> scalar; see gradient_penalty
    weight_key: str


REGULARISERS: dict[str, Regulariser] = {
    "gp": Regulariser(gp_term, "gp_weight"),
    "r1": Regulariser(r1_term, "r1_gamma"),
}
