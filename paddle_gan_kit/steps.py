"""The training step: nets, optimizers, loss scalers, autocast and the EMA generator, and what
one generator update does with them.

One class serves every objective, because DCGAN and WGAN-GP differ only in parts it composes:
the loss (``losses.LOSSES[cfg.loss]``), the penalties on D (``losses.REGULARISERS`` with a
weight above zero) and the number of D updates per G update. A new loss or penalty is a
function and a registry entry in ``losses.py``; the step and the training loop stay as they are.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import paddle

from paddle_gan_kit import losses
from paddle_gan_kit.augment import DiffAugment
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.latent import draw_latents, prior_tensor
from paddle_gan_kit.models import build_discriminator, build_generator, classes_of, load_weights, state_arrays


# --- optimizer state, made independent of Paddle's global parameter names --------------------
# Paddle keys optimizer state by parameter names such as "conv2d_3.w_0", which depend on how
# many layers the process built before; a snapshot keyed that way would silently fail to
# restore in a process that builds the models in another order. Keys are stored by the
# parameter's structural name in its model instead.

def portable_optimizer_state(state: dict, model: paddle.nn.Layer) -> dict:
    """Optimizer ``state_dict`` with parameter names replaced by structural names."""
    names = sorted(((p.name, key) for key, p in model.named_parameters()), key=lambda t: -len(t[0]))
    out = {}
    for key, value in state.items():
        new_key = key
        for pname, skey in names:
            if key.startswith(pname + "_"):
                new_key = "@" + skey + "@" + key[len(pname):]
                break
        out[new_key] = _to_numpy(value)
    return out


def restore_optimizer_state(state: dict, model: paddle.nn.Layer) -> dict:
    """Inverse of ``portable_optimizer_state`` for this process's parameter names."""
    by_struct = {key: p.name for key, p in model.named_parameters()}
    out = {}
    for key, value in state.items():
        if key.startswith("@"):
            skey, rest = key[1:].split("@", 1)
            if skey not in by_struct:
                raise GanKitError(f"the snapshot's optimizer state names parameter '{skey}', which the model "
                                  "lacks; use a snapshot of this run")
            key = by_struct[skey] + rest
        out[key] = paddle.to_tensor(value) if isinstance(value, np.ndarray) else value
    return out


def _to_numpy(value):
    if isinstance(value, paddle.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    return value


class AdversarialStep:
    """One generator update after ``n_critic`` discriminator/critic updates.

    Built from a resolved config: the nets (wrapped in ``paddle.DataParallel`` with several
    ranks), Adam for each, float16 loss scalers, the loss, the regularisers and the EMA copy of
    G. ``step(reals)`` takes ``batches_per_step`` real batches, float32 (B, C, H, W) in [-1, 1],
    one per D update, and returns the step's scalars as tensors on the device (read back only
    when logged).
    """

    def __init__(self, cfg, world_size: int = 1, label_pool=None):
        self.cfg = cfg
        self.loss = losses.LOSSES[cfg.loss]
        self.regularisers = [(name, reg) for name, reg in losses.REGULARISERS.items()
                             if getattr(cfg, reg.weight_key) > 0]
        self.batches_per_step = cfg.n_critic
        self.world_size = world_size
        self.augment = DiffAugment(cfg.augment)
        self.label_pool = label_pool  # a conditional run's training labels, int64 (N,) on the device
        self.updates = 0  # generator updates so far (the EMA's ramp-up counts them)
        self._condition_weight_set = None  # the condition_weight the nets hold, when this step set it
        # weights are seeded by cfg.seed, identical on every rank
        paddle.seed(cfg.seed)
        self.generator = build_generator(cfg)
        self.discriminator = build_discriminator(cfg)
        if cfg.sync_bn and world_size > 1:
            self.generator = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
            self.discriminator = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        self.generator_ema, self._calibrated_at = None, None
        if cfg.ema_decay > 0:
            self.generator_ema = build_generator(cfg)
            self.generator_ema.set_state_dict(self.generator.state_dict())
            self.generator_ema.eval()
        self._d_params = [p for p in self.discriminator.parameters() if not p.stop_gradient]
        self._g_trainable = [not p.stop_gradient for p in self.generator.parameters()]
        self.opt_g = self._adam(self.generator, cfg.lr_g)
        self.opt_d = self._adam(self.discriminator, cfg.lr_d)
        self._restored_optimizer_state = {}  # see _optimizer_state
        # float16 needs loss scaling (one scaler per optimizer); bfloat16 has float32's range
        self.scalers = {"g": paddle.amp.GradScaler(), "d": paddle.amp.GradScaler()} if cfg.amp == "float16" else None
        if world_size > 1:
            self.G, self.D = paddle.DataParallel(self.generator), paddle.DataParallel(self.discriminator)
        else:
            self.G, self.D = self.generator, self.discriminator

    def _adam(self, model, lr: float):
        # use_multi_tensor: one update over all of a net's parameters instead of one kernel per
        # tensor (like PyTorch's foreach Adam; docs/speed.md has what it saves). Its weights agree
        # with the per-tensor update's to float rounding, not bit for bit.
        params = [p for p in model.parameters() if not p.stop_gradient]
        return paddle.optimizer.Adam(learning_rate=lr, beta1=self.cfg.beta1, beta2=self.cfg.beta2, parameters=params,
                                     use_multi_tensor=True)

    @property
    def sampling_generator(self) -> paddle.nn.Layer:
        """The generator that samples, walks, evaluations and exports use: the EMA one when kept
        (call ``measure_ema_batchnorm`` first, so its BatchNorm statistics are its own)."""
        return self.generator if self.generator_ema is None else self.generator_ema

    def measure_ema_batchnorm(self) -> paddle.nn.Layer:
        """Measure the EMA generator's BatchNorm statistics on its own activations when its weights
        moved since the last time (``recalibrate_batchnorm``: 8 forward passes); returns the
        sampling generator."""
        if self.generator_ema is not None and self._calibrated_at != self.updates:
            recalibrate_batchnorm(self.generator_ema, self.cfg, batch_size=min(self.cfg.batch_size, 64))
            self._calibrated_at = self.updates
        return self.sampling_generator

    # ---- one step ----------------------------------------------------------------------------
    def noise(self, n: int):
        """Latent batch (n, z_dim) float32 from the configured prior, on the device."""
        return prior_tensor(n, self.cfg.z_dim, self.cfg.z_dist)

    def step(self, reals: list, labels: list | None = None) -> dict:
        """``n_critic`` D updates (one per batch in ``reals``; none on the steps between them
        with ``g_steps`` > 1, when ``reals`` is empty), then one G update. ``labels``: int64 (B,)
        tensors, one per real batch, for a conditional run (its fakes take the same labels)."""
        cfg, loss = self.cfg, self.loss
        labels = labels or [None] * len(reals)
        self._fade_condition()
        # with one D update per G update, the G update reuses its fakes (pytorch/examples
        # dcgan); with several, G's batch is drawn afresh (WGAN-GP, Algorithm 1)
        reuse = len(reals) == 1
        d_values = None
        for real, y in zip(reals, labels):
            if reuse:
                fake = self._view(self._g(self.noise(real.shape[0]), y))  # (B, C, H, W)
            else:
                with paddle.no_grad():
                    fake = self._view(self._g(self.noise(real.shape[0]), y))
            d_real = self._score(self._view(real), y)  # (B,) logits or scores of the augmented images
            d_fake = self._score(self._detached(fake), y)
            loss_d = loss.d_loss(d_real, d_fake, cfg.label_smoothing)
            terms = {}
            for name, reg in self.regularisers:
                # under float16 the penalty's inner backward is scaled like the loss, so small
                # input gradients do not underflow; the norm is taken in float32 after unscaling
                loss_scale = self.scalers["d"].scale(paddle.ones([])) if self.scalers else None
                critic = self._d if y is None else (lambda images, y=y: self._d(images, y))
                terms[name] = reg.term(critic, real, fake, loss_scale=loss_scale)
                loss_d = loss_d + getattr(cfg, reg.weight_key) * terms[name]
            self._update(self.opt_d, loss_d, "d")
            d_values = (loss_d, d_real, d_fake, terms)
        if reuse:
            y_g = labels[0]
        else:
            y_g = self.sample_labels(cfg.batch_size)
            fake = self._view(self._g(self.noise(cfg.batch_size), y_g))
        loss_g = self._generator_update(lambda: self._score(fake, y_g))
        return self._finish(loss_g, d_values)

    # what D scores: the images themselves here, the frozen network's features in ProjectedStep
    def _view(self, images):
        return images

    def _detached(self, view):
        return view.detach()

    def _score(self, view, labels=None):
        return self._d(view, labels)

    def condition_weight(self) -> float:
        """How much of the class this update's nets hear: 1, or with ``condition_fade_end`` the
        linear ramp from 0 at step ``condition_fade_start`` to 1 at ``condition_fade_end``."""
        start, end = self.cfg.condition_fade_start, self.cfg.condition_fade_end
        if end <= 0:
            return 1.0
        return min(max((self.updates - start) / (end - start), 0.0), 1.0)

    def _fade_condition(self) -> None:
        """Set the conditional nets' ``condition_weight`` for this update (the EMA G's too, so
        it samples as the G it averages)."""
        weight = self.condition_weight()
        if weight == self._condition_weight_set:  # kept on the host: no read-back from the device
            return
        with paddle.no_grad():
            for model in (self.generator, self.generator_ema, self.discriminator):
                buffer = getattr(model, "condition_weight", None)
                if buffer is not None:
                    buffer.set_value(paddle.full([1], weight, "float32"))
        self._condition_weight_set = weight

    def sample_labels(self, n: int):
        """int64 (n,) labels for a generated batch, drawn from the training labels (so from their
        class frequencies) with Paddle's RNG; None for an unconditional run."""
        if self.label_pool is None:
            return None
        return paddle.gather(self.label_pool, paddle.randint(0, self.label_pool.shape[0], [n]))

    def _finish(self, loss_g, d_values) -> dict:
        """What follows the G update (rank 0's BatchNorm statistics to every rank, the EMA), and
        the step's scalars (D's only on a step that updated D)."""
        if self.world_size > 1 and not self.cfg.sync_bn:
            self._broadcast_buffers()
        if self.generator_ema is not None:
            self._update_ema()
        self.updates += 1
        values = {"loss_g": loss_g.detach()}
        if d_values is not None:
            loss_d, d_real, d_fake, terms = d_values
            values[self.loss.d_name] = loss_d.detach()
            values.update({k: v.detach() for k, v in self.loss.report(d_real.detach(), d_fake.detach()).items()})
            values.update({k: v.detach() for k, v in terms.items()})
        return values

    def _autocast(self):
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, dtype=self.cfg.amp, level="O1")

    def _d(self, images, labels=None):
        """D/critic logits or scores (B,) float32 of the augmented images (of their classes
        ``labels`` for a conditional D); the network itself runs under autocast."""
        seen = self.augment(images)
        with self._autocast():
            out = self.D(seen) if labels is None else self.D(seen, labels)
        return out if self.cfg.amp == "off" else out.astype("float32")

    def _g(self, z, labels=None):
        """G(z) (of classes ``labels`` for a conditional G) as float32 images (B, C, H, W); the
        network itself runs under autocast."""
        with self._autocast():
            out = self.G(z) if labels is None else self.G(z, labels)
        return out if self.cfg.amp == "off" else out.astype("float32")

    def _update(self, optimizer, loss, part: str) -> None:
        optimizer.clear_grad(set_to_zero=False)  # None, not zeros: no memset of every gradient
        if self.scalers is None:
            loss.backward()
            optimizer.step()
        else:  # float16: scaled backward; the step is skipped (and the scale lowered) on inf/nan
            scaler = self.scalers[part]
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    def _generator_update(self, scores):
        """One G step on the loss of D's ``scores()`` of a generated batch; D's weights get no
        (wasted) gradients."""
        # Paddle's ``trainable`` is just ``not stop_gradient``, so the list of D's trainable
        # parameters is taken once at start: a flag read here would stay off after the first
        # G step.
        for p in self._d_params:
            p.stop_gradient = True
        loss = self.loss.g_loss(scores())
        self._update(self.opt_g, loss, "g")
        for p in self._d_params:
            p.stop_gradient = False
        return loss

    def _broadcast_buffers(self) -> None:
        """Copy rank 0's BatchNorm running statistics to every rank (as PyTorch DDP does).

        DataParallel keeps trainable weights equal through gradient all-reduce, but running
        statistics come from each rank's own batches; without this, ranks would sample with
        different generators in eval mode.
        """
        import paddle.distributed as dist

        trainable = {id(p) for p in self._d_params}
        with paddle.no_grad():
            for model in (self.generator, self.discriminator):
                for p in model.parameters():
                    if p.stop_gradient and id(p) not in trainable:
                        dist.broadcast(p, src=0)

    def ema_decay(self) -> float:
        """This update's EMA decay: ``ema_decay``, or with ``ema_rampup`` the decay whose
        half-life is at most ``ema_rampup`` x the steps so far (StyleGAN2-ADA's ramp-up), so
        the random initial weights fade from the average early."""
        decay = self.cfg.ema_decay
        if self.cfg.ema_rampup > 0:
            half_life = min(math.log(0.5) / math.log(decay), self.cfg.ema_rampup * (self.updates + 1))
            decay = 0.5 ** (1.0 / max(half_life, 1e-8))
        return decay

    def _update_ema(self) -> None:
        # BatchNorm's running statistics are not averaged: they are measured on the EMA
        # generator itself before it is used (``measure_ema_batchnorm``)
        decay = self.ema_decay()
        with paddle.no_grad():
            pairs = zip(self.generator_ema.parameters(), self.generator.parameters(), self._g_trainable)
            for p_ema, p, trainable in pairs:
                if trainable:
                    paddle.assign(p_ema * decay + p * (1.0 - decay), output=p_ema)

    # ---- snapshots -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything of the step a snapshot keeps, as numpy arrays and plain values; the EMA
        generator's BatchNorm statistics are measured first, so it is kept as it samples."""
        ema = self.measure_ema_batchnorm() if self.generator_ema is not None else None
        return {
            "generator": state_arrays(self.generator),
            "discriminator": state_arrays(self.discriminator),
            "generator_ema": state_arrays(ema) if ema is not None else None,
            "opt_g": self._optimizer_state("opt_g", self.opt_g, self.generator),
            "opt_d": self._optimizer_state("opt_d", self.opt_d, self.discriminator),
            "amp_scalers": {k: s.state_dict() for k, s in self.scalers.items()} if self.scalers else None,
        }

    def _optimizer_state(self, name: str, optimizer, model) -> dict:
        """The optimizer's portable state. Paddle 2.6 applies a restored state only as it creates
        its moments at the first update, and leaves them out of ``state_dict`` until then: the
        restored values stand in for them, so a snapshot written before that update loses nothing."""
        state = portable_optimizer_state(optimizer.state_dict(), model)
        restored = self._restored_optimizer_state.get(name)
        if restored is None:
            return state
        if restored.keys() <= state.keys():
            del self._restored_optimizer_state[name]
            return state
        return {**restored, **state}

    def set_state_dict(self, payload: dict, origin: str) -> None:
        """Restore what :meth:`state_dict` saved (``origin`` names the snapshot in errors)."""
        self._restored_optimizer_state = {"opt_g": payload["opt_g"], "opt_d": payload["opt_d"]}
        self.updates = int(payload["step"])
        self._condition_weight_set = None  # the snapshot's nets hold their own
        load_weights(self.generator, payload["generator"], origin)
        load_weights(self.discriminator, payload["discriminator"], origin)
        if self.generator_ema is not None and payload.get("generator_ema"):
            load_weights(self.generator_ema, payload["generator_ema"], origin)
            self._calibrated_at = None
        self.opt_g.set_state_dict(restore_optimizer_state(payload["opt_g"], self.generator))
        self.opt_d.set_state_dict(restore_optimizer_state(payload["opt_d"], self.discriminator))
        if self.scalers and payload.get("amp_scalers"):
            for key, scaler in self.scalers.items():
                scaler.load_state_dict(payload["amp_scalers"][key])


class ProjectedStep(AdversarialStep):
    """The step with the projected discriminator (``models/projected.py``), which is frozen
    features and trainable heads. The frozen features of a generated batch do not change when
    the heads learn, so with one D update per G update they are computed once, with their graph,
    and serve both: D's update reads them detached, G's update backpropagates through them (the
    same augmented fakes, as in the DCGAN step's reused batch). That saves one pass of the frozen
    network, a quarter of the step. Penalties on D are refused by the config."""

    def _view(self, images) -> list:
        """The frozen network's mixed features of the augmented images, with a graph only when
        the images carry one."""
        with self._autocast():
            return self.discriminator.mixed_features(self.augment(images))

    def _detached(self, view: list) -> list:
        return [f.detach() for f in view]

    def _score(self, features: list, labels=None):
        """The heads' logits (B * P,) float32 (through DataParallel, which syncs their gradients)."""
        with self._autocast():
            out = self.D(features=features, labels=labels)
        return out if self.cfg.amp == "off" else out.astype("float32")


def build_step(cfg, world_size: int = 1, label_pool=None) -> AdversarialStep:
    """The training step for a resolved config (``label_pool``: a conditional run's training labels,
    int64 (N,) on the device): ``ProjectedStep`` for the projected D."""
    return (ProjectedStep if cfg.d_arch == "projected" else AdversarialStep)(cfg, world_size, label_pool)


def recalibrate_batchnorm(generator: paddle.nn.Layer, cfg, batch_size: int = 64, batches: int = 8) -> None:
    """Set every BatchNorm's running statistics of ``generator`` to the mean and variance of its
    input over ``batches`` x ``batch_size`` latents ("standing statistics", Brock et al. 2019).

    An EMA generator's weights are an average, so the statistics of the live generator (or an
    average of them) do not describe its activations, and its eval-mode samples wash out. The
    latents come from a private RNG seeded by ``cfg.seed``: the result depends only on the
    weights, and no global RNG moves. The generator is left in eval mode.
    """
    norms = [layer for layer in generator.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]
    if not norms:
        generator.eval()
        return
    sums = {id(n): [0.0, 0.0, 0] for n in norms}  # sum of means, sum of E[x^2], count

    def measure(layer, inputs):
        x = inputs[0]
        mean = x.mean(axis=[0, 2, 3])
        entry = sums[id(layer)]
        entry[0] = entry[0] + mean
        entry[1] = entry[1] + (x * x).mean(axis=[0, 2, 3])
        entry[2] += 1

    hooks = [n.register_forward_pre_hook(measure) for n in norms]
    rng = np.random.default_rng([cfg.seed, 2])
    classes = classes_of(cfg)
    generator.train()
    try:
        with paddle.no_grad():
            for _ in range(batches):
                z = paddle.to_tensor(draw_latents(rng, batch_size, cfg.z_dim, cfg.z_dist))
                if classes:  # every class alike: the statistics of the whole conditional G
                    generator(z, paddle.to_tensor(rng.integers(0, classes, batch_size).astype(np.int64)))
                else:
                    generator(z)
    finally:
        for hook in hooks:
            hook.remove()
        generator.eval()
    for layer in norms:
        total_mean, total_square, count = sums[id(layer)]
        mean = total_mean / count
        variance = paddle.clip(total_square / count - mean * mean, min=0.0)
        state = layer.state_dict()
        state.update({key: value for key, value in zip(_running_keys(state), (mean, variance))})
        layer.set_state_dict(state)


def _running_keys(state: dict) -> tuple[str, str]:
    """The state-dict names of a BatchNorm's running mean and variance."""
    mean = next(k for k in state if k.endswith("mean"))
    variance = next(k for k in state if k.endswith("variance") or k.endswith("var"))
    return mean, variance
