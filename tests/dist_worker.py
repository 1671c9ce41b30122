"""Worker for the multi-process tests, started by ``paddle.distributed.launch`` (or plainly).

``python tests/dist_worker.py fit OUT DATA STEPS MODEL [KEY=VALUE ...]`` trains a tiny run and
saves each rank's parameters; ``... equiv OUT GLOBAL_BATCH`` makes one WGAN-GP critic update on fixed inputs,
each rank taking its slice of the global batch, and saves the critic's
parameters and gradients.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_gan_kit  # noqa: E402
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_gan_kit import losses  # noqa: E402
from paddle_gan_kit.config import TrainConfig, parse_set  # noqa: E402
from paddle_gan_kit.trainer import Trainer  # noqa: E402

TINY = dict(size=16, g_channels=8, d_channels=8, z_dim=16, n_samples=16, log_every=1,
            sample_every=2, snapshot_every=2)


def save_params(path, trainer):
    nets = trainer.objective
    arrays = {f"G.{k}": v.numpy() for k, v in nets.generator.state_dict().items()}
    arrays.update({f"D.{k}": v.numpy() for k, v in nets.discriminator.state_dict().items()})
    np.savez(path, **arrays)


def fit(out, data, steps, model, extra):
    cfg = TrainConfig(**{"model": model, "data": data, "out": out, "steps": int(steps), "batch_size": 4, "n_critic": 2,
                         **TINY, **extra})
    trainer = Trainer(cfg, resume=True, progress=False)
    trainer.fit()
    save_params(os.path.join(out, f"params_rank{trainer.rank}.npz"), trainer)


def equiv(out, global_batch):
    global_batch = int(global_batch)
    rng = np.random.default_rng(0)
    real_all = rng.uniform(-1, 1, (global_batch, 3, 16, 16)).astype("float32")
    z_all = rng.standard_normal((global_batch, 16)).astype("float32")
    eps_all = rng.random((global_batch, 1, 1, 1)).astype("float32")
    data = os.path.join(out, "data.npy")
    cfg = TrainConfig(model="wgan_gp", data=data, out=os.path.join(out, "run"), steps=1, n_critic=1,
                      batch_size=global_batch // int(os.environ.get("PADDLE_TRAINERS_NUM", "1")), **TINY)
    trainer = Trainer(cfg, progress=False)
    per_rank = global_batch // trainer.world_size
    rows = slice(trainer.rank * per_rank, (trainer.rank + 1) * per_rank)
    nets = trainer.objective
    nets.noise = lambda n: paddle.to_tensor(z_all[rows])
    penalty = losses.gradient_penalty
    losses.gradient_penalty = lambda c, r, f, epsilon=None, loss_scale=None: penalty(
        c, r, f, paddle.to_tensor(eps_all[rows]), loss_scale=loss_scale)
    nets.generator.eval()  # per-sample generator: fakes do not depend on the batch split
    nets.step([paddle.to_tensor(real_all[rows])])
    critic = {k: v.numpy() for k, v in nets.discriminator.state_dict().items()}
    # the critic step's gradients are still held (the G step does not touch the critic's);
    # Adam's first update is nearly scale-free, so gradients are what shows averaging
    critic.update({f"grad.{name}": p.grad.numpy() for name, p in nets.discriminator.named_parameters()
                   if p.grad is not None})
    np.savez(os.path.join(out, f"critic_world{trainer.world_size}_rank{trainer.rank}.npz"), **critic)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "fit":
        extra = parse_set(sys.argv[6:])  # typed as --set types them
        fit(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], extra)
    else:
        equiv(sys.argv[2], sys.argv[3])
