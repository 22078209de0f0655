"""Process-wide settings that make batch work faster on the CPU.

Both are asked for by :func:`tune_for_batch`, which the batch verbs, the Ray
actors and the benchmarks call before torch is imported. A user's own
environment variables always win. Figures: benchmarks/bench_runner.py.
"""

from __future__ import annotations

import ctypes
import os
import sys

# glibc's mallopt() parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts
TRIM_THRESHOLD = 256 * 2**20


def tune_for_batch() -> None:
    """Both settings below; call it before torch is imported."""
    let_idle_compute_threads_sleep()
    reuse_freed_memory()


def let_idle_compute_threads_sleep() -> None:
    """Ask OpenMP (torch's CPU thread pool) to put idle threads to sleep at
    once rather than spin. Between two images a spinning pool holds the cores
    the decoding and encoding threads need: on 2 cores a cheap operation ran
    at ~130 img/s spinning and ~200 img/s sleeping, a compute-bound one a few
    percent slower. Works only before torch is imported; a user's own
    OMP_WAIT_POLICY wins."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def reuse_freed_memory() -> bool:
    """Keep freed image buffers in the process for the next image.

    By default glibc gives every allocation above 128 KB its own fresh
    mapping and unmaps it on free, so each new image array (a 0.5 MP float
    image is 1.8 MB) is paid for again in page faults: zeroing and mapping
    each 4 KB page cost more than the arithmetic on it (``1 - image`` took
    1.15 ms with fresh pages, 0.24 ms with reused ones). Raising the mmap and
    trim thresholds lets freed buffers of up to 32 MB be reused. Memory stays
    bounded by the run's peak; it is just not returned between images.

    Returns whether the setting was applied (glibc only; the user's
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` win).
    """
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl has a mallopt that does nothing and returns 0: that reads as "not applied"
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
