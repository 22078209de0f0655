"""Process-wide batch settings: OpenMP wait policy and glibc's malloc thresholds."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from imgedit.process_tuning import let_idle_compute_threads_sleep, reuse_freed_memory


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


# Runs a cheap operation on a 0.15 MP image 100 times, as a batch does; prints
# the page faults that took, before and after the tuning.
FAULTS = textwrap.dedent(
    """
    import resource
    import torch
    from imgedit.process_tuning import reuse_freed_memory

    image = torch.rand(1, 3, 321, 481)

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(100):
            result = (255 * (1.0 - image)).to(torch.uint8)
            del result
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    untuned = faults()
    applied = reuse_freed_memory()
    faults()  # the first pass maps the heap it then reuses
    print(untuned, faults(), applied)
    """
)


def _faults(env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True).stdout
    untuned, tuned, applied = out.split()
    return int(untuned), int(tuned), applied == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_image_buffers_are_reused_instead_of_faulted_in_again():
    untuned, tuned, applied = _faults()
    if not applied:
        pytest.skip("this C library has no mallopt thresholds (musl?)")
    assert untuned > 100 * 20  # fresh pages for many of the results: 30-180 faults an image
    assert tuned < untuned / 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_users_malloc_settings_win():
    _, _, applied = _faults({"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert not applied
    assert reuse_freed_memory() in (True, False)  # callable in-process, too
