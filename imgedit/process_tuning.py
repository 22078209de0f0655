"""Process-wide settings that make batch work faster on the CPU.

Both are asked for by :func:`tune_for_batch`, which the batch verbs, the Ray
actors and the benchmarks call before torch is imported. A user's own
environment variables always win. Figures: benchmarks/bench_runner.py.
Also: how many CPUs the process may really use (:func:`usable_cpus`),
a compute pool no larger than a container's CPU quota (:func:`fit_threads_to_cpu_quota`),
and the CPU memory budget a user sets (:func:`cpu_memory_setting`).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from functools import lru_cache
from typing import Optional

from imgedit.errors import UsageError

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


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on (``taskset``, a
    container's cpuset), and no more than its CPU quota rounded up
    (``docker run --cpus 2``, a Kubernetes limit), where
    ``os.cpu_count()`` gives every core of the host."""
    count, quota = _allowed_cpus(), cpu_quota()
    return max(1, min(count, math.ceil(quota))) if quota else count


def _allowed_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@lru_cache(maxsize=None)  # read once: the start-up asks it several times, and it does not change
def cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """The CPU time this process's cgroup may use, in CPUs (1.5: one and a
    half cores' worth per period), or None: no quota, or no cgroup to read.
    Reads the cgroup v2 ``cpu.max`` at ``root`` (a container's own cgroup),
    else v1's ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us``."""
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        try:
            with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
                quota = fh.read().strip()
            with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
                period = fh.read().strip()
        except OSError:
            return None
    try:
        cpus = int(quota) / int(period)
    except ValueError:  # "max": no limit
        return None
    return cpus if cpus > 0 else None  # v1's -1: no limit


def fit_threads_to_cpu_quota() -> None:
    """Size torch's compute pool (OpenMP) to :func:`usable_cpus` where a
    CPU quota is below the cores the process may run on: torch sizes it by
    the cores, so a container limited to 2 CPUs on a 64-core host would run
    32 threads taking turns in 2 CPUs' time. Works only before torch is
    imported; a user's own OMP_NUM_THREADS (and ``--threads``) win."""
    global _FITTED
    if "torch" in sys.modules or "OMP_NUM_THREADS" in os.environ:
        return
    cpus = usable_cpus()
    if cpu_quota() is not None and cpus < _allowed_cpus():  # else torch's own choice stands
        os.environ["OMP_NUM_THREADS"], _FITTED = str(cpus), True


def threads_fitted_to_quota() -> bool:
    """Whether :func:`fit_threads_to_cpu_quota` set OMP_NUM_THREADS (not the
    user): a run in N processes shares those threads out among them."""
    return _FITTED


_FITTED = False


def cpu_memory_setting() -> Optional[float]:
    """``IMGEDIT_CPU_MEMORY_MB``, the CPU memory budget for one call in MB;
    None where it is unset. Read without torch, so that a run refuses a bad
    value before any image even where it computes none.

    Raises:
        UsageError: the value is not a finite number above 0.
    """
    env = os.environ.get("IMGEDIT_CPU_MEMORY_MB", "").strip()
    if not env:
        return None
    try:
        value = float(env)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"IMGEDIT_CPU_MEMORY_MB={env!r} is not a number of megabytes above 0")
    return value
