"""Process set-up that must happen before Paddle is imported: CPU threads and the MKL path.

Paddle sets ``OMP_NUM_THREADS=1`` at import when it is unset, so a CPU run uses one core
unless the variable is set first. On AMD CPUs, MKL takes a slow generic path unless
``MKL_DEBUG_CPU_TYPE=5`` is set before it loads (the README's "Speed" section has the numbers).
Users override either by exporting the variable themselves.
"""
from __future__ import annotations

import os


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
