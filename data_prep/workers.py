"""Process pools for the CPU-bound work here (decoding images, rendering gems)."""
from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int, initializer=None) -> ProcessPoolExecutor | None:
    """A pool of ``workers`` fresh ("spawn") processes, or None where none can start.

    spawn, not fork: the caller (a notebook, the trainer) may hold threads that a fork would
    copy mid-lock. spawn re-imports the main script in each worker, which is impossible for a
    script read from stdin; the caller then does the work itself.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.exists(main_file):
        return None
    return ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                               initializer=initializer)
