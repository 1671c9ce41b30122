"""``compile: true``: run G and D through ``paddle.jit.to_static``, but only where it is correct.

No model is compiled on trust. Each compiled copy must first go through the trainer's own call
pattern (sampling in eval mode and fakes in train mode, both without gradients, then the D/critic
loss with the penalty and the G loss with D's parameters frozen) and give the dynamic graph's
parameter gradients; a model that fails keeps the dynamic graph, with the reason in the log.

Two silent failures of Paddle 3.3.1's to_static, both measured here, make that necessary:
- the gradient penalty's gradients with respect to the critic's parameters are lost (None
  with PIR here, all zero in the brief's run) while the step runs and prints a loss;
- a compiled layer first called under ``paddle.no_grad()`` reuses that program afterwards and
  returns no parameter gradients at all.
The trainer samples before its first step, so with Paddle 3.3.1 every model falls back (the
log says so). Where the check passed (DCGAN-64 with sampling skipped) the compiled step was
not faster on this 2-core CPU: 4.8-5.1 s against 4.5-4.8 s dynamic. ``compile`` stays off by
default and exists for Paddle releases and GPUs where it checks out.
"""
from __future__ import annotations

import numpy as np
import paddle

from paddle_gan_kit import losses, snapshot
from paddle_gan_kit.data import to_tensor_batch

RTOL, ATOL = 1e-4, 1e-6


def _gradients(params) -> list:
    return [None if p.grad is None else p.grad.numpy().copy() for p in params]


def _compare(dynamic: list, static: list, what: str) -> str | None:
    """None when the two gradient lists agree, else the reason they do not."""
    missing = sum(g is None for g in static) - sum(g is None for g in dynamic)
    if missing > 0:
        return f"{what}: {missing} of {len(static)} parameter gradients are missing under to_static"
    for i, (a, b) in enumerate(zip(dynamic, static)):
        if a is None:
            continue
        if np.any(a != 0) and not np.any(b != 0):
            return f"{what}: the gradient of parameter {i} is all zero under to_static"
        if not np.allclose(a, b, rtol=RTOL, atol=ATOL):
            return (f"{what}: parameter {i}'s gradient differs from the dynamic graph's "
                    f"(max abs difference {float(np.abs(a - b).max()):.3g})")
    return None


def _loss(spec_loss: str, gp_weight: float, generator, discriminator, real, z, epsilon, part: str):
    fake = generator(z)
    if part == "d":
        fake = fake.detach()
        if spec_loss == "nonsaturating":
            return losses.d_loss_nonsaturating(discriminator(real), discriminator(fake))
        return (losses.critic_loss_wasserstein(discriminator(real), discriminator(fake))
                + gp_weight * losses.gradient_penalty(discriminator, real, fake, epsilon))
    if spec_loss == "nonsaturating":
        return losses.g_loss_nonsaturating(discriminator(fake))
    return losses.g_loss_wasserstein(discriminator(fake))


def check(trainer, part: str) -> str | None:
    """Compile a copy of G (``part="g"``) or D (``"d"``) and compare one loss's gradients.

    Returns None when the compiled copy matches the dynamic graph, else the reason it does not
    (including a to_static conversion error). The trainer's models and RNG streams are left as
    they were, so a checked run trains exactly like one without the check.
    """
    states = snapshot.rng_states()
    try:
        return _check(trainer, part)
    finally:
        snapshot.set_rng_states(states)


def _check(trainer, part: str) -> str | None:
    cfg, spec = trainer.cfg, trainer.spec
    copies = {}
    for name, build, source in (("g", spec.build_generator, trainer.generator),
                                ("d", spec.build_discriminator, trainer.discriminator)):
        pair = []
        for _ in range(2):
            model = build(cfg)
            model.set_state_dict(source.state_dict())
            model.train()
            pair.append(model)
        copies[name] = pair
    rng = np.random.default_rng(cfg.seed)
    n = min(4, len(trainer.data))
    real = to_tensor_batch(trainer.data.images[:n], cfg.channels)
    z = paddle.to_tensor(rng.standard_normal((n, cfg.z_dim)).astype(np.float32))
    epsilon = paddle.to_tensor(rng.uniform(size=(n, 1, 1, 1)).astype(np.float32))
    results = []
    for compiled in (False, True):
        g, d = copies["g"][int(compiled)], copies["d"][int(compiled)]
        if compiled:
            try:
                if part == "g":
                    g = paddle.jit.to_static(g, full_graph=True)
                else:
                    d = paddle.jit.to_static(d, full_graph=True)
            except Exception as exc:  # noqa: BLE001 - any conversion failure means "do not compile"
                return f"to_static failed: {str(exc).splitlines()[0][:200]}"
        target, inputs = (g, z) if part == "g" else (d, real)
        try:
            # the trainer's calls without gradients come first (sampling in eval mode, WGAN-GP's
            # fake batches in train mode): Paddle 3.3 caches the program of a to_static layer
            # first called under no_grad and then returns no parameter gradients at all
            with paddle.no_grad():
                target.eval()
                target(inputs)
                target.train()
                target(inputs)
            _loss(spec.loss, cfg.gp_weight, g, d, real, z, epsilon, part).backward()
            grads = _gradients([p for p in copies[part][int(compiled)].parameters() if not p.stop_gradient])
            if part == "d":  # the G step runs D with its parameters frozen
                d_params = [p for p in copies["d"][int(compiled)].parameters() if not p.stop_gradient]
                for p in d_params:
                    p.stop_gradient = True
                _loss(spec.loss, cfg.gp_weight, g, d, real, z, epsilon, "g").backward()
                for p in d_params:
                    p.stop_gradient = False
                grads += _gradients([p for p in copies["g"][int(compiled)].parameters() if not p.stop_gradient])
        except Exception as exc:  # noqa: BLE001
            return f"the compiled step failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        results.append(grads)
    what = "generator" if part == "g" else ("critic loss with gradient penalty" if spec.loss != "nonsaturating"
                                              else "discriminator loss")
    return _compare(results[0], results[1], what)


def compile_models(trainer) -> list[str]:
    """Compile the trainer's G and D where the check passes; returns one log line per model."""
    notes = []
    for part, name in (("g", "generator"), ("d", "discriminator")):
        reason = check(trainer, part)
        if reason is None:
            model = trainer.generator if part == "g" else trainer.discriminator
            compiled = paddle.jit.to_static(model, full_graph=True)
            if part == "g":
                trainer.G = compiled
            else:
                trainer.D = compiled
            notes.append(f"compile: {name} runs under paddle.jit.to_static (gradients checked against dynamic graph)")
        else:
            notes.append(f"compile: {name} stays in dynamic graph: {reason}")
    return notes
