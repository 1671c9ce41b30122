"""paddle_gan_kit: DCGAN and WGAN-GP image generators on PaddlePaddle 3.x (dynamic graph).

Importing the package sets the CPU thread variables before Paddle loads (see ``runtime``) and
fails with one line naming the package to install when Paddle is missing.
"""
import sys as _sys

from paddle_gan_kit.runtime import configure_cpu_threads as _configure_cpu_threads
from paddle_gan_kit.runtime import keep_freed_memory as _keep_freed_memory

if "paddle" not in _sys.modules:
    _configure_cpu_threads()
_keep_freed_memory()

import contextlib as _contextlib
import io as _io
import warnings as _warnings

_import_noise = _io.StringIO()
try:
    with _warnings.catch_warnings(), _contextlib.redirect_stderr(_import_noise):
        # Paddle warns at import about ccache (a compiler cache for custom ops, unused here)
        # and prints a warning when OMP_NUM_THREADS > 1, which runtime.py sets on purpose.
        _warnings.filterwarnings("ignore", message=".*ccache.*")
        import paddle as _paddle  # noqa: F401
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "paddle_gan_kit needs PaddlePaddle 3.x: on a CPU machine run "
        "`pip install paddlepaddle` (or `pip install -e \".[cpu]\"`); on a GPU machine install "
        "paddlepaddle-gpu as described at paddlepaddle.org.cn/install"
    ) from None

finally:
    for _line in _import_noise.getvalue().splitlines():
        if "OMP_NUM_THREADS" not in _line:
            print(_line, file=_sys.stderr)

from paddle_gan_kit.errors import GanKitError  # noqa: E402
from paddle_gan_kit.config import TrainConfig  # noqa: E402

__version__ = "0.1.0"


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
