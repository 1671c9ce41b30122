"""Process set-up that must happen before Paddle is imported, and the import itself.

- CPU threads and the MKL path: Paddle sets ``OMP_NUM_THREADS=1`` at import when it is unset,
  so a CPU run uses one core unless the variable is set first; on AMD CPUs, MKL takes a slow
  generic path unless ``MKL_DEBUG_CPU_TYPE=5`` is set before it loads (docs/speed.md has
  the numbers). Users override either by exporting the variable themselves.
- zlib: Paddle 2.6's ``libpaddle.so`` exports its own copy of zlib's functions, and once it is
  loaded, the system zlib's internal calls (``deflateInit2_`` calling ``deflateReset``) bind to
  that copy, of another version: OpenCV's and Pillow's PNG writers then crash in
  ``deflateReset``/``inflateReset2``. Compressing once before Paddle loads binds those calls
  inside the system zlib for good (``bind_zlib``).
- Versions: Paddle 2.6 or 3.x, with the numpy it was built for; anything else is one line that
  says what to install (``import_paddle``).
"""
from __future__ import annotations

import os
import sys


def physical_cores() -> int:
    """Number of physical cores available to this process (falls back to logical CPUs)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        try:
            with open(f"{base}/core_id") as f:
                core = f.read().strip()
            with open(f"{base}/physical_package_id") as f:
                package = f.read().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for reuse instead of returning it to the system.

    Paddle's CPU allocator asks malloc for every large tensor, and glibc serves a block above
    its mmap threshold with a fresh ``mmap`` (and trims the heap after frees), so every
    activation of a training step is a new mapping whose pages fault in one by one as they are
    first written. Raising both thresholds makes freed blocks reusable: a step's tensors come
    from memory that is already mapped. The cost is that the process keeps its peak memory.
    Skipped when the user set glibc's own MALLOC_* variables or PADDLE_GAN_KIT_MALLOC=default.
    """
    if os.environ.get("PADDLE_GAN_KIT_MALLOC") == "default" or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameter numbers
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


def configure_cpu_threads() -> None:
    """Set thread and MKL variables (unless the user set them) before Paddle loads."""
    threads = str(physical_cores())
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")


def bind_zlib() -> None:
    """Run the system zlib's compression and decompression once, so that its internal calls are
    bound to itself before a library that exports another zlib (Paddle 2.6) is loaded."""
    import zlib

    zlib.decompress(zlib.compress(b"paddle_gan_kit" * 64, 6))
    stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    zlib.decompressobj(-15).decompress(stream.compress(b"png" * 64) + stream.flush())


def warn_if_zlib_is_exposed() -> None:
    """Paddle was imported before us: on Paddle 2.x, say that PNG writing may crash (bind_zlib)."""
    import warnings

    version = _version("paddlepaddle") or _version("paddlepaddle-gpu")
    if version is not None and version[0] < (3, 0):
        warnings.warn("with Paddle 2.6, import paddle_gan_kit before paddle: Paddle 2.6 exports its own zlib, "
                      "which can crash OpenCV's and Pillow's PNG writers once paddle is loaded first",
                      RuntimeWarning, stacklevel=3)


class EnvironmentProblem(ImportError):
    """Paddle or numpy is missing or of a version that cannot work; the message says what to install."""


_GPU_HINT = "on a GPU machine install paddlepaddle-gpu as described at paddlepaddle.org.cn/install"


def _version(name: str):
    from importlib import metadata

    try:
        text = metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
    parts = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts), text


def check_versions() -> None:
    """Refuse, before importing it, a Paddle older than 2.6 or a Paddle 2.x beside numpy 2."""
    paddle = _version("paddlepaddle") or _version("paddlepaddle-gpu")
    numpy = _version("numpy")
    if paddle is None:
        return  # the import below says what to install
    if paddle[0] < (2, 6):
        raise EnvironmentProblem(f"paddle_gan_kit needs PaddlePaddle 2.6 or 3.x and {paddle[1]} is installed: "
                                 f"`pip install \"paddlepaddle>=3\"` on a CPU machine, or {_GPU_HINT}")
    if paddle[0] < (3, 0) and numpy is not None and numpy[0] >= (2, 0):
        raise EnvironmentProblem(f"PaddlePaddle {paddle[1]} was built for numpy 1.x and numpy {numpy[1]} is "
                                 "installed: `pip install \"numpy<2\"` (or `pip install \"paddlepaddle>=3\"`)")


def import_paddle():
    """Import Paddle quietly (its import-time warnings about ccache and OMP_NUM_THREADS are
    about settings made here on purpose), after the version check; returns the module."""
    import contextlib
    import io
    import warnings

    check_versions()
    noise = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(noise):
            warnings.filterwarnings("ignore", message=".*ccache.*")
            import paddle
    except ImportError as exc:
        if "numpy" in str(exc).lower():
            raise EnvironmentProblem(f"Paddle does not load with numpy {_version('numpy')[1]} ({exc}); install the "
                                     "numpy it was built for: `pip install \"numpy<2\"` for Paddle 2.6") from None
        if _version("paddlepaddle") or _version("paddlepaddle-gpu"):
            # installed but broken (a missing shared library, a half-finished upgrade): say so
            raise EnvironmentProblem(f"PaddlePaddle is installed but does not import ({' '.join(str(exc).split())}); "
                                     "fix what it names, or reinstall Paddle (`pip install --force-reinstall --no-deps "
                                     "paddlepaddle`, paddlepaddle-gpu on a GPU machine)") from None
        raise EnvironmentProblem(
            "paddle_gan_kit needs PaddlePaddle 2.6 or 3.x: on a CPU machine run `pip install paddlepaddle` "
            f"(or `pip install -e \".[cpu]\"`); {_GPU_HINT}") from None
    finally:
        for line in noise.getvalue().splitlines():
            if "OMP_NUM_THREADS" not in line and "PLEASE USE OMP_NUM_THREADS" not in line:
                print(line, file=sys.stderr)
    return paddle


def report_environment_problems_in_one_line() -> None:
    """Outside an interactive session, print an EnvironmentProblem as one ``error:`` line and
    exit with code 2 (a notebook shows it as usual)."""
    if hasattr(sys, "ps1") or "IPython" in sys.modules:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, EnvironmentProblem):
            print(f"error: {value}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(2)
        previous(kind, value, tb)

    sys.excepthook = hook


class silenced_output:
    """Send whatever the block writes to the process's stdout and stderr (file descriptors 1
    and 2, which C++ libraries write to directly) to /dev/null; returns what Python wrote."""

    def __enter__(self):
        sys.stdout.flush(), sys.stderr.flush()
        self._null = os.open(os.devnull, os.O_WRONLY)
        self._saved = os.dup(1), os.dup(2)
        os.dup2(self._null, 1)
        os.dup2(self._null, 2)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in (*self._saved, self._null):
            os.close(fd)
        return False
