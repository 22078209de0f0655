"""Process-wide batch settings: OpenMP wait policy, glibc's malloc thresholds,
and the CPUs a container's quota leaves."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from imgedit import process_tuning
from imgedit.process_tuning import cpu_quota, let_idle_compute_threads_sleep, usable_cpus


def test_idle_compute_threads_sleep_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert torch.__name__ in sys.modules
    let_idle_compute_threads_sleep()  # torch is imported already: too late to matter
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")
    let_idle_compute_threads_sleep()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    let_idle_compute_threads_sleep()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


# Whether glibc serves a large block from a fresh mapping (mmap) or from the
# heap, where a freed image buffer is kept for the next image: mallinfo's
# count of mmapped blocks says. Before the tuning a 16 MB block is mapped
# (glibc then raises its own threshold to 16 MB); after it, a 24 MB one is
# not, as the 32 MB threshold says. Page-fault figures: benchmarks/bench_process_tuning.py.
MAPPED = textwrap.dedent(
    """
    import ctypes
    from imgedit.process_tuning import reuse_freed_memory

    libc = ctypes.CDLL(None)
    fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    if hasattr(libc, "mallinfo2"):
        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in fields]
        mallinfo = libc.mallinfo2
    else:
        class Info(ctypes.Structure):
            _fields_ = [(name, ctypes.c_int) for name in fields]
        mallinfo = libc.mallinfo
    mallinfo.restype = Info
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def mapped(size):
        before = mallinfo().hblks
        block = libc.malloc(size)
        during = mallinfo().hblks
        libc.free(block)
        return during > before

    print(mapped(16 * 2**20), reuse_freed_memory(), mapped(24 * 2**20))
    """
)


def _mapped(env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", MAPPED], env=env, capture_output=True, text=True, check=True).stdout
    return tuple(word == "True" for word in out.split())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_image_buffers_stay_in_the_heap_for_the_next_image():
    untuned_mapped, applied, tuned_mapped = _mapped()
    if not applied:
        pytest.skip("this C library has no mallopt thresholds (musl?)")
    assert untuned_mapped  # glibc's default: a fresh mapping, unmapped on free
    assert not tuned_mapped  # the raised threshold: from the heap, reused


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_users_malloc_settings_win():
    untuned_mapped, applied, tuned_mapped = _mapped({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not applied
    assert untuned_mapped and tuned_mapped  # glibc's threshold left as it was


class _FakeLibc:
    """What ``ctypes.CDLL(None)`` gives: a ``mallopt`` that records its calls and answers ``answer``."""

    def __init__(self, answer):
        self.calls = []
        fake = self

        def mallopt(param, value):
            fake.calls.append((param, value))
            return answer

        self.mallopt = mallopt


def test_reuse_freed_memory_reports_what_mallopt_answers(monkeypatch):
    import ctypes

    import imgedit.process_tuning as tuning

    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tuning.sys, "platform", "linux")
    glibc = _FakeLibc(1)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: glibc)
    assert tuning.reuse_freed_memory() is True
    assert glibc.calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    musl = _FakeLibc(0)  # a mallopt that does nothing
    monkeypatch.setattr(ctypes, "CDLL", lambda name: musl)
    assert tuning.reuse_freed_memory() is False and musl.calls


def test_reuse_freed_memory_leaves_malloc_alone_where_it_should(monkeypatch):
    import ctypes

    import imgedit.process_tuning as tuning

    glibc = _FakeLibc(1)
    monkeypatch.setattr(ctypes, "CDLL", lambda name: glibc)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tuning.sys, "platform", "darwin")
    assert tuning.reuse_freed_memory() is False  # not glibc
    monkeypatch.setattr(tuning.sys, "platform", "linux")
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.setenv(name, "131072")
        assert tuning.reuse_freed_memory() is False  # the user's setting wins
        monkeypatch.delenv(name)
    assert glibc.calls == []

    def no_c_library(name):
        raise OSError("cannot load")

    monkeypatch.setattr(ctypes, "CDLL", no_c_library)
    assert tuning.reuse_freed_memory() is False


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # docker run --cpus 2, cgroup v2
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),  # no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup to read (macOS, Windows)
])
def test_cpu_quota_is_read_from_cgroup_v2_or_v1(tmp_path, files, cpus):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(str(tmp_path)) == cpus


def test_usable_cpus_are_the_affinity_capped_by_the_quota(monkeypatch):
    # os.cpu_count() is the host's: 64 in a container given 2 CPUs
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(process_tuning, "cpu_quota", lambda: None)
    assert usable_cpus() == 8
    monkeypatch.setattr(process_tuning, "cpu_quota", lambda: 1.5)
    assert usable_cpus() == 2
    monkeypatch.setattr(process_tuning, "cpu_quota", lambda: 0.1)
    assert usable_cpus() == 1


def test_the_compute_pool_fits_a_cpu_quota_unless_the_user_set_it(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(process_tuning, "cpu_quota", lambda: 2.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    process_tuning.fit_threads_to_cpu_quota()  # torch is imported already: too late to matter
    assert "OMP_NUM_THREADS" not in os.environ
    monkeypatch.delitem(sys.modules, "torch")
    process_tuning.fit_threads_to_cpu_quota()
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    process_tuning.fit_threads_to_cpu_quota()
    assert os.environ["OMP_NUM_THREADS"] == "5"
    monkeypatch.delenv("OMP_NUM_THREADS")
    for quota in (None, 64.0):  # no quota, or none below the cores: torch's own choice stands
        monkeypatch.setattr(process_tuning, "cpu_quota", lambda: quota)
        process_tuning.fit_threads_to_cpu_quota()
        assert "OMP_NUM_THREADS" not in os.environ
