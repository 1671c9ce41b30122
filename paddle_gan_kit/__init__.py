"""paddle_gan_kit: DCGAN and WGAN-GP image generators on PaddlePaddle 2.6 and 3.x (dynamic graph).

Importing the package prepares the process before Paddle loads (CPU threads, the MKL path,
memory reuse, zlib; see ``runtime``) and fails with one line naming what to install when Paddle
is missing or of a version (or with a numpy) that cannot work.
"""
import sys as _sys

from paddle_gan_kit import runtime as _runtime

if "paddle" not in _sys.modules:
    _runtime.configure_cpu_threads()
    _runtime.bind_zlib()
else:
    _runtime.warn_if_zlib_is_exposed()
_runtime.keep_freed_memory()
_runtime.report_environment_problems_in_one_line()
_runtime.import_paddle()

from paddle_gan_kit.errors import GanKitError  # noqa: E402
from paddle_gan_kit.config import TrainConfig  # noqa: E402

__version__ = "0.3.0"


def load_generator(path, snapshot=None):
    """Load a trained generator: ``(generator in eval mode, TrainConfig)``.

    ``path`` is a run directory (its newest complete snapshot is used, or ``snapshot``: a
    step number, ``"best"`` or a file name) or one snapshot file. The generator maps
    ``z`` of shape (N, z_dim) float32 to images (N, C, H, W) float32 in [-1, 1]; it is the
    EMA generator when the run keeps one.
    """
    from paddle_gan_kit.run import load_generator as _load

    return _load(path, snapshot)


def train(config, resume=False, progress=True):
    """Train in-process from a ``TrainConfig``; returns the run directory (str)."""
    from paddle_gan_kit.trainer import Trainer

    trainer = Trainer(config, resume=resume, progress=progress)
    trainer.fit()
    return trainer.run.dir


__all__ = ["GanKitError", "TrainConfig", "load_generator", "train", "__version__"]
