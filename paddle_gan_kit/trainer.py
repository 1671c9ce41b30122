"""The training loop: models, losses, optimizers, device, snapshots, resume, signals, logging.

One class with small methods. A "step" is one generator update; for WGAN-GP each step first
makes ``n_critic`` critic updates, each on a fresh real batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import threading
import time
import warnings

import numpy as np
import paddle

from paddle_gan_kit import losses, monitor, snapshot
from paddle_gan_kit.config import RESUMABLE_KEYS, TrainConfig, build_config, load_yaml, save_yaml
from paddle_gan_kit.data import BatchOrder, load_images, to_tensor_batch
from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.models import MODELS, count_parameters

# Paddle warns on every BatchNorm forward in train mode that running statistics are tracked,
# which is what DCGAN wants; the warning says nothing to a user.
warnings.filterwarnings("ignore", message="When training, we now always track global mean")


def run_exists(run_dir: str) -> bool:
    """True when ``run_dir`` holds a run (its config.yaml or any snapshot)."""
    return os.path.isfile(os.path.join(run_dir, "config.yaml")) or bool(
        snapshot.list_snapshots(os.path.join(run_dir, "snapshots"))
    )


def saved_config(run_dir: str) -> TrainConfig | None:
    """The config of the run in ``run_dir``: from its newest readable snapshot, else config.yaml."""
    try:
        found = snapshot.load_newest(os.path.join(run_dir, "snapshots"))
    except GanKitError:
        found = None
    if found is not None:
        return snapshot.config_of(found.payload)
    path = os.path.join(run_dir, "config.yaml")
    if os.path.isfile(path):
        return build_config(load_yaml(path))
    return None


def select_device(choice: str) -> tuple[str, str | None]:
    """Paddle device string for ``auto|gpu|cpu`` and a notice to print (or None)."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if choice == "gpu" and not has_gpu:
        reason = "this Paddle build has no CUDA" if not paddle.device.is_compiled_with_cuda() else "no GPU is visible"
        raise GanKitError(f"--device gpu: {reason}; install paddlepaddle-gpu on a GPU machine or use --device cpu")
    if choice in ("gpu", "auto") and has_gpu:
        # under paddle.distributed.launch each rank is given its own GPU
        return f"gpu:{int(os.environ.get('FLAGS_selected_gpus', '0').split(',')[0] or 0)}", None
    if choice == "auto":
        threads = os.environ.get("OMP_NUM_THREADS", "?")
        return "cpu", f"no GPU found: training on the CPU with {threads} threads (set OMP_NUM_THREADS to change)"
    return "cpu", None


def check_amp(amp: str, device: str) -> None:
    """Refuse mixed precision where it cannot work, in one line naming the fix."""
    if amp == "off":
        return
    if not device.startswith("gpu"):
        raise GanKitError(
            f"--amp {amp}: mixed precision needs a GPU (Paddle's autocast does nothing on the CPU); "
            "drop --amp or train on a GPU"
        )
    supported = paddle.amp.is_bfloat16_supported() if amp == "bfloat16" else paddle.amp.is_float16_supported()
    if not supported:
        raise GanKitError(f"--amp {amp}: this GPU has no {amp} support; use --amp float16 or drop --amp")


class Trainer:
    """Trains one run directory from a ``TrainConfig``; ``fit()`` runs up to ``config.steps``.

    ``resume=True`` continues the run already in ``config.out`` from its newest complete
    snapshot; without it an existing run is refused, never overwritten or mixed.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True):
        self.progress = progress
        self.rank, self.world_size = self._parallel_env()
        cfg = config.resolve()
        self.run_dir = cfg.out
        self.snap_dir = os.path.join(self.run_dir, "snapshots")
        existing = run_exists(self.run_dir)
        if existing and not resume:
            raise GanKitError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        found = snapshot.load_newest(self.snap_dir) if existing else None
        previous = snapshot.config_of(found.payload) if found else (saved_config(self.run_dir) if existing else None)
        if previous is not None:
            cfg = self._check_compatible(previous, cfg)
        self.device, notice = select_device(cfg.device)
        check_amp(cfg.amp, self.device)
        paddle.set_device(self.device)

        self.data = load_images(
            cfg.data, cfg.size, fit=cfg.fit, gems_count=cfg.gems_count,
            prepare_root=os.path.join(os.path.dirname(os.path.abspath(self.run_dir)), ".prepared"),
            progress=progress and self.rank == 0,
        )

        self.order = BatchOrder(len(self.data), cfg.batch_size, cfg.seed, self.rank, self.world_size)
        if self.rank == 0:
            os.makedirs(os.path.join(self.run_dir, "samples"), exist_ok=True)
            os.makedirs(self.snap_dir, exist_ok=True)
        self.log = monitor.make_logger(self.run_dir if self.rank == 0 else None)
        if notice and self.rank == 0:
            self.log.info(notice)
        for path in (found.skipped if found else []):
            self.log.info(f"snapshot {path} is corrupt or incomplete; resuming from the previous complete one")
        if cfg.channels is None:
            cfg = dataclasses.replace(cfg, channels=self.data.channels)
        self.cfg = cfg
        self.spec = MODELS[cfg.model]

        # weights: identical on every rank (seeded by cfg.seed); noise: different per rank
        paddle.seed(cfg.seed)
        self.generator = self.spec.build_generator(cfg)
        self.discriminator = self.spec.build_discriminator(cfg)
        if cfg.sync_bn and self.world_size > 1:
            if not self.device.startswith("gpu"):
                raise GanKitError(
                    "--sync-bn: Paddle's SyncBatchNorm has no CPU kernel; use it with GPU ranks or drop it "
                    "(without it, rank 0's BatchNorm statistics are copied to every rank each step)"
                )
            self.generator = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.generator)
            self.discriminator = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.discriminator)
        self.generator_ema = None
        if cfg.ema_decay > 0:
            self.generator_ema = self.spec.build_generator(cfg)
            self.generator_ema.set_state_dict(self.generator.state_dict())
            self.generator_ema.eval()
        self._d_params = [p for p in self.discriminator.parameters() if not p.stop_gradient]
        self._d_params_set = {id(p) for p in self._d_params}
        self._g_trainable = [not p.stop_gradient for p in self.generator.parameters()]
        self.opt_g = self._adam(self.generator, cfg.lr_g)
        self.opt_d = self._adam(self.discriminator, cfg.lr_d)
        # float16 needs loss scaling (one scaler per optimizer); bfloat16 has float32's range
        self.scalers = None
        if cfg.amp == "float16":
            self.scalers = {"g": paddle.amp.GradScaler(), "d": paddle.amp.GradScaler()}
        rng = np.random.default_rng([cfg.seed, 1])
        self.fixed_noise = self._draw_noise_numpy(rng, cfg.n_samples)
        self.step, self.history = 0, []
        self.best: dict | None = None  # {"step": ..., <primary metric>: ...} of snapshots/best
        self.evaluator = None
        if cfg.eval_every > 0 and self.rank == 0:
            from paddle_gan_kit.evaluate import Evaluator

            self.evaluator = Evaluator(self.data.images, self.data.labels, cfg.eval_extractor, cfg.eval_n,
                                       cfg.eval_weights, seed=cfg.seed)
            self.log.info(f"evaluating every {cfg.eval_every} steps: {self.evaluator.describe()}")
        self._seed_training_rngs(cfg.seed)
        if found is not None:
            self._restore(found)
        elif self.rank == 0:
            save_yaml(self.cfg, os.path.join(self.run_dir, "config.yaml"))
        self.G, self.D = self._wrap_parallel()
        if cfg.compile:
            self._compile()
        self.stop_signal: int | None = None
        self._sums: dict = {}
        self._sum_count = 0

    # ---- set-up ---------------------------------------------------------------------------
    @staticmethod
    def _parallel_env() -> tuple[int, int]:
        world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
        if world > 1:
            import paddle.distributed as dist

            if not dist.is_initialized():
                dist.init_parallel_env()
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _wrap_parallel(self):
        if self.world_size == 1:
            return self.generator, self.discriminator
        return paddle.DataParallel(self.generator), paddle.DataParallel(self.discriminator)

    def _broadcast_buffers(self) -> None:
        """Copy rank 0's BatchNorm running statistics to every rank (as PyTorch DDP does).

        DataParallel keeps trainable weights equal through gradient all-reduce, but running
        statistics come from each rank's own batches; without this, ranks would sample with
        different generators in eval mode.
        """
        import paddle.distributed as dist

        with paddle.no_grad():
            for model in (self.generator, self.discriminator):
                for p in model.parameters():
                    if p.stop_gradient and id(p) not in self._d_params_set:
                        dist.broadcast(p, src=0)

    def _compile(self) -> None:
        if self.world_size > 1:
            notes = ["compile: not used with several ranks (DataParallel); training in dynamic graph"]
        else:
            from paddle_gan_kit import static_graph

            notes = static_graph.compile_models(self)
        for note in notes:
            if self.rank == 0:
                self.log.info(note)

    def _check_compatible(self, previous: TrainConfig, new: TrainConfig) -> TrainConfig:
        """Merge a resumed run's config with the new one, refusing changed hyper-parameters."""
        merged = {}
        changed = []
        for key, old_value in previous.to_dict().items():
            new_value = getattr(new, key)
            if key == "channels" and new_value is None:
                new_value = old_value
            if new_value != old_value and key not in RESUMABLE_KEYS:
                changed.append(f"{key}: run has {old_value!r}, now {new_value!r}")
            merged[key] = new_value
        if changed:
            raise GanKitError(
                f"cannot resume {self.run_dir} with changed settings ({'; '.join(changed)}); "
                "drop those flags or start a new run with another --out"
            )
        return TrainConfig(**merged)

    def _adam(self, model, lr: float):
        params = [p for p in model.parameters() if not p.stop_gradient]
        return paddle.optimizer.Adam(
            learning_rate=lr, beta1=self.cfg.beta1, beta2=self.cfg.beta2, parameters=params
        )

    def _draw_noise_numpy(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.cfg.z_dist == "uniform":
            return rng.uniform(-1.0, 1.0, size=(n, self.cfg.z_dim)).astype(np.float32)
        return rng.standard_normal((n, self.cfg.z_dim)).astype(np.float32)

    def _seed_training_rngs(self, seed: int) -> None:
        # per-rank streams for training noise: reproducible, and different on every rank
        paddle.seed(seed * 1000 + 17 + self.rank)
        np.random.seed((seed * 1000 + 17 + self.rank) % 2**32)
        random.seed(seed * 1000 + 17 + self.rank)

    def noise(self, n: int):
        """Latent batch (n, z_dim) float32 from the configured prior, on the device."""
        if self.cfg.z_dist == "uniform":
            return paddle.rand([n, self.cfg.z_dim]) * 2.0 - 1.0
        return paddle.randn([n, self.cfg.z_dim])

    def real_batch(self):
        """Next real batch, float32 (B, C, H, W) in [-1, 1]."""
        return to_tensor_batch(self.data.images[self.order.next_indices()], self.cfg.channels)

    # ---- snapshots ------------------------------------------------------------------------
    def _payload(self) -> dict:
        return {
            "format": snapshot.FORMAT_VERSION,
            "step": self.step,
            "data_order": self.order.state_dict(),
            "generator": snapshot.model_state(self.generator),
            "discriminator": snapshot.model_state(self.discriminator),
            "generator_ema": snapshot.model_state(self.generator_ema) if self.generator_ema else None,
            "opt_g": snapshot.portable_optimizer_state(self.opt_g.state_dict(), self.generator),
            "opt_d": snapshot.portable_optimizer_state(self.opt_d.state_dict(), self.discriminator),
            "rng": snapshot.rng_states(),
            "amp_scalers": {k: s.state_dict() for k, s in self.scalers.items()} if self.scalers else None,
            "fixed_noise": self.fixed_noise,
            "history": list(self.history),
            "best": self.best,
            "config": self.cfg.to_dict(),
            "world_size": self.world_size,
            "paddle_version": paddle.__version__,
        }

    def save_snapshot(self) -> str | None:
        """Write the snapshot for the current step (rank 0 only) and prune old ones."""
        if self.rank != 0:
            return None
        path = os.path.join(self.snap_dir, snapshot.snapshot_name(self.step))
        snapshot.write_atomic(self._payload(), path)
        snapshot.prune(self.snap_dir, self.cfg.keep_snapshots)
        return path

    def _restore(self, found: snapshot.Found) -> None:
        payload = found.payload
        self.generator.set_state_dict(payload["generator"])
        self.discriminator.set_state_dict(payload["discriminator"])
        if self.generator_ema is not None and payload.get("generator_ema"):
            self.generator_ema.set_state_dict(payload["generator_ema"])
        self.opt_g.set_state_dict(snapshot.restore_optimizer_state(payload["opt_g"], self.generator))
        self.opt_d.set_state_dict(snapshot.restore_optimizer_state(payload["opt_d"], self.discriminator))
        if self.scalers and payload.get("amp_scalers"):
            for key, scaler in self.scalers.items():
                scaler.load_state_dict(payload["amp_scalers"][key])
        self.step = int(payload["step"])
        self.fixed_noise = payload["fixed_noise"]
        self.history = list(payload["history"])
        self.best = payload.get("best")
        saved_world = int(payload.get("world_size", 1))
        if saved_world == self.world_size:
            self.order.set_state_dict(payload["data_order"])
            snapshot.set_rng_states(payload["rng"])
        else:
            # another number of ranks: the batch order restarts at the saved epoch boundary and
            # noise streams are re-seeded from (seed, step), reproducibly
            epoch = payload["data_order"]["epoch"] + 1
            self.order.set_state_dict({"epoch": epoch, "position": 0})
            self._seed_training_rngs(self.cfg.seed + self.step)
            self.log.info(
                f"the snapshot was written by {saved_world} ranks, now {self.world_size}: global batch "
                f"{self.cfg.batch_size * saved_world} -> {self.cfg.batch_size * self.world_size}, data order "
                f"restarts at epoch {epoch}, noise re-seeded from the step"
            )
        self.log.info(f"resumed {self.run_dir} from {os.path.basename(found.path)} (step {self.step})")

    # ---- one step -------------------------------------------------------------------------
    def _set_d_trainable(self, flag: bool) -> None:
        # Paddle's ``trainable`` is just ``not stop_gradient``, so the list of D's trainable
        # parameters is taken once at start: a flag read here would stay off after the first
        # G step (a bug the bit-exact resume test caught).
        for p in self._d_params:
            p.stop_gradient = not flag

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

    def _autocast(self):
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(enable=True, dtype=self.cfg.amp, level="O1")

    def _d(self, images):
        """D/critic logits or scores (B,) float32; the network itself runs under autocast."""
        with self._autocast():
            out = self.D(images)
        return out if self.cfg.amp == "off" else out.astype("float32")

    def _g(self, z):
        """G(z) as float32 images (B, C, H, W); the network itself runs under autocast."""
        with self._autocast():
            out = self.G(z)
        return out if self.cfg.amp == "off" else out.astype("float32")

    def _generator_update(self, fake, loss_fn):
        """One G step on ``loss_fn(D(fake))``; D's weights get no (wasted) gradients."""
        self._set_d_trainable(False)
        loss = loss_fn(self._d(fake))
        self._update(self.opt_g, loss, "g")
        self._set_d_trainable(True)
        return loss

    def train_step(self) -> dict:
        """One generator update (after ``n_critic`` D/critic updates); returns loss tensors."""
        if self.spec.loss == "nonsaturating":
            return self._dcgan_step()
        return self._wgan_gp_step()

    def _dcgan_step(self) -> dict:
        cfg = self.cfg
        real = self.real_batch()  # (B, C, H, W)
        fake = self._g(self.noise(real.shape[0]))  # (B, C, H, W)
        d_real = self._d(real)  # (B,) logits
        d_fake = self._d(fake.detach())
        loss_d = losses.d_loss_nonsaturating(d_real, d_fake, cfg.label_smoothing)
        self._update(self.opt_d, loss_d, "d")
        loss_g = self._generator_update(fake, losses.g_loss_nonsaturating)
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "d_real": paddle.nn.functional.sigmoid(d_real.detach()).mean(),
            "d_fake": paddle.nn.functional.sigmoid(d_fake.detach()).mean(),
        }

    def _wgan_gp_step(self) -> dict:
        cfg = self.cfg
        for _ in range(cfg.n_critic):
            real = self.real_batch()
            with paddle.no_grad():
                fake = self._g(self.noise(real.shape[0]))
            c_real = self._d(real).mean()
            c_fake = self._d(fake).mean()
            # under float16 the penalty's inner backward is scaled like the loss, so small input
            # gradients do not underflow; the norm is taken in float32 after unscaling
            loss_scale = self.scalers["d"].scale(paddle.ones([])) if self.scalers else None
            gp = losses.gradient_penalty(self._d, real, fake, loss_scale=loss_scale)
            loss_c = c_fake - c_real + cfg.gp_weight * gp
            self._update(self.opt_d, loss_c, "d")
        loss_g = self._generator_update(self._g(self.noise(cfg.batch_size)), losses.g_loss_wasserstein)
        return {
            "loss_g": loss_g.detach(),
            "loss_critic": loss_c.detach(),
            "wasserstein": (c_real - c_fake).detach(),
            "gp": gp.detach(),
        }

    def _update_ema(self) -> None:
        decay = self.cfg.ema_decay
        with paddle.no_grad():
            pairs = zip(self.generator_ema.parameters(), self.generator.parameters(), self._g_trainable)
            for p_ema, p, trainable in pairs:
                if trainable:
                    paddle.assign(p_ema * decay + p * (1.0 - decay), output=p_ema)
                else:  # BatchNorm running statistics are copied, as in StyleGAN2-ADA
                    paddle.assign(p, output=p_ema)

    # ---- outputs --------------------------------------------------------------------------
    def sample_grid(self) -> np.ndarray:
        """uint8 (H, W, C) grid of G(fixed_noise), generator in eval mode (EMA one if kept)."""
        model = self.generator_ema if self.generator_ema is not None else self.generator
        was_training = model.training
        model.eval()
        with paddle.no_grad():
            images = model(paddle.to_tensor(self.fixed_noise))
        if was_training:
            model.train()
        return monitor.make_grid(monitor.to_uint8_images(images))

    def write_samples(self) -> None:
        if self.rank != 0:
            return
        grid = self.sample_grid()
        monitor.write_png(os.path.join(self.run_dir, "samples", f"step_{self.step:08d}.png"), grid)
        self.vdl.image("samples", grid, self.step)
        monitor.plot_losses(self.history, os.path.join(self.run_dir, "losses.png"),
                            f"{self.cfg.model} {self.cfg.size}px")

    def evaluate(self) -> dict:
        """Score the sampling generator, log it, and write snapshots/best when it improves."""
        model = self.generator_ema if self.generator_ema is not None else self.generator
        result = self.evaluator(model, self.cfg.z_dim, self.cfg.z_dist)
        primary = self.evaluator.primary
        scores = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and not k.startswith("n_")}
        self.vdl.scalars(scores, self.step, prefix="eval/")
        improved = self.best is None or result[primary] < self.best[primary]
        if improved:
            self.best = {"step": self.step, primary: float(result[primary])}
            snapshot.write_atomic(self._payload(), os.path.join(self.snap_dir, snapshot.BEST_NAME))
        self.log.info(
            f"eval step {self.step}: " + " ".join(f"{k} {v:.4g}" for k, v in scores.items())
            + f" (n_real {result.get('n_real')}, n_fake {result.get('n_fake')}, {result.get('extractor')})"
            + (" - new best, snapshots/best.pdckpt written" if improved else f" - best {self.best[primary]:.4g} at step {self.best['step']}")
        )
        return result

    def _accumulate(self, values: dict) -> None:
        for key, value in values.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self._sum_count += 1

    def _log_record(self, elapsed: float, images: int) -> dict:
        """Read the accumulated losses back (the only host sync) as a history record."""
        record = {"step": self.step}
        for key, total in self._sums.items():
            record[key] = float(total) / self._sum_count
        record["lr_g"] = float(self.opt_g.get_lr())
        record["lr_d"] = float(self.opt_d.get_lr())
        record["images_per_s"] = images / elapsed if elapsed > 0 else float("nan")
        self._sums, self._sum_count = {}, 0
        bad = [k for k, v in record.items() if not np.isfinite(v)]
        if bad:
            raise GanKitError(
                f"training diverged at step {self.step} ({', '.join(bad)} not finite); "
                f"resume from the last snapshot with lower learning rates (--set lr_d=..., lr_g=...)"
            )
        return record

    # ---- the loop -------------------------------------------------------------------------
    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            self.stop_signal = signum

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def fit(self) -> str:
        """Train up to ``cfg.steps``; returns "completed" or "interrupted" (snapshot written)."""
        from tqdm import tqdm

        cfg = self.cfg
        if self.step >= cfg.steps:
            # rerunning the same command after a run finished (the AI Studio habit) changes nothing
            self.log.info(f"{self.run_dir} is already at step {self.step} of {cfg.steps}; "
                          "nothing to do (raise --steps to train longer)")
            monitor.close_logger(self.log)
            self.status = "completed"
            return self.status
        if self.rank == 0:
            moved = monitor.supersede_records_after(os.path.join(self.run_dir, "vdl"), self.step,
                                                    os.path.join(self.run_dir, "vdl_superseded"))
            if moved:
                self.log.info(f"VisualDL: {moved} records an interrupted session wrote after step {self.step} "
                              f"moved to {self.run_dir}/vdl_superseded (this run logs those steps again)")
        self.vdl = monitor.VisualDLWriter(os.path.join(self.run_dir, "vdl")) if self.rank == 0 else None
        if self.rank == 0:
            self.log.info(
                f"{cfg.model} {cfg.size}px x{cfg.channels} on {self.device}: {self.data.description}; "
                f"G {count_parameters(self.generator):,} params, D {count_parameters(self.discriminator):,}; "
                f"steps {self.step} -> {cfg.steps}, batch {cfg.batch_size}"
                + (f" x {self.world_size} ranks" if self.world_size > 1 else "")
            )
            if self.step == 0:
                self.write_samples()
        old_handlers = self._install_signal_handlers()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress or self.rank != 0,
                   unit="step", dynamic_ncols=True, mininterval=1.0)
        status = "completed"
        images_per_step = cfg.batch_size * cfg.n_critic * self.world_size
        t_last, images = time.perf_counter(), 0
        try:
            while self.step < cfg.steps:
                values = self.train_step()
                if self.world_size > 1 and not cfg.sync_bn:
                    self._broadcast_buffers()
                if self.generator_ema is not None:
                    self._update_ema()
                self.step += 1
                images += images_per_step
                self._accumulate(values)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    record = self._log_record(now - t_last, images)
                    t_last, images = now, 0
                    self.history.append(record)
                    if self.rank == 0:
                        self.vdl.scalars({k: v for k, v in record.items() if k not in ("lr_g", "lr_d", "images_per_s")},
                                         self.step, prefix="train/")
                        self.vdl.scalars({"lr_g": record["lr_g"], "lr_d": record["lr_d"]}, self.step, prefix="lr/")
                        self.vdl.scalars({"images_per_s": record["images_per_s"]}, self.step, prefix="speed/")
                        shown = {k: v for k, v in record.items() if k not in ("step", "lr_g", "lr_d")}
                        bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
                        self.log.info(f"step {self.step}/{cfg.steps} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items()))
                if self.step % cfg.sample_every == 0:
                    self.write_samples()
                if self.evaluator is not None and self.step % cfg.eval_every == 0:
                    self.evaluate()
                if self.stop_signal is not None:
                    status = "interrupted"
                    break
                if self.step % cfg.snapshot_every == 0 and self.step < cfg.steps:
                    self.save_snapshot()
            if self._sum_count:  # interrupted between log steps: record what was accumulated
                self.history.append(self._log_record(time.perf_counter() - t_last, images))
            if self.step % cfg.sample_every != 0:
                self.write_samples()
            path = self.save_snapshot()
            if self.rank == 0:
                if status == "interrupted":
                    name = signal.Signals(self.stop_signal).name
                    self.log.info(f"{name}: stopped at step {self.step}; snapshot {path} written; "
                                  f"continue with --resume --out {self.run_dir}")
                else:
                    self.log.info(f"done: step {self.step}; snapshot {path}; samples in {self.run_dir}/samples")
        finally:
            bar.close()
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
            if self.vdl is not None:
                self.vdl.close()
            monitor.close_logger(self.log)
        self.status = status
        return status
