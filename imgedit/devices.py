"""Device manager: which device and precision an operation runs on.

Everything here is resolved once per run, before any model is built. Invalid
or unavailable requests raise :class:`~imgedit.errors.DeviceError` with a
one-line message that lists what *is* available; requests that can be safely
downgraded (reduced precision the CPU or the operation cannot use) log a
warning on the ``imgedit`` logger and fall back to fp32.

This module imports torch at the top on purpose: it is only imported when a
model is about to run, so it does not slow down ``imgedit --help``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional


@contextlib.contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, then raise it: torch's start-up
    runs numpy's import from C and drops a KeyboardInterrupt raised inside
    it, so a Ctrl-C in that second went unheard and the batch ran on."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


with _ctrl_c_held():
    import torch

from imgedit.distributed import local_processes, local_rank
from imgedit.errors import DeviceError, UsageError
from imgedit.operations import Capabilities, warn_once

__all__ = [
    "ENV_DEVICE",
    "PRECISIONS",
    "available_devices",
    "check_fits_in_memory",
    "check_supported",
    "compute_scope",
    "cpu_has_bf16",
    "describe_devices",
    "guard_fork",
    "resolve_device",
    "resolve_precision",
    "set_threads",
]

logger = logging.getLogger("imgedit")

ENV_DEVICE = "IMGEDIT_DEVICE"
"""Environment variable consulted when no device is given explicitly."""

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
"""Precision names accepted by :func:`resolve_precision` and their dtypes."""

_DEVICE_RE = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")
_GPU_TYPES = ("cuda", "mps")


def _cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    # Older or non-macOS builds may lack the backend attribute entirely.
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _cuda_count() -> int:
    # A monkeypatched or odd build may report "available" with 0 devices;
    # availability means at least one usable device.
    return max(1, int(torch.cuda.device_count())) if _cuda_available() else 0


def available_devices() -> list[str]:
    """List the devices this machine can run on.

    Returns:
        Device strings, CPU first, e.g. ``["cpu"]`` or
        ``["cpu", "cuda:0", "cuda:1", "mps"]``.
    """
    devices = ["cpu"]
    devices += [f"cuda:{i}" for i in range(_cuda_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _unavailable(spec: str, reason: str) -> DeviceError:
    return DeviceError(f"device '{spec}' {reason} (available: {', '.join(available_devices())})")


def _default_cuda_index() -> int:
    """0, or under torchrun this process's local rank: one GPU per process."""
    return local_rank()


def _gpu_per_process(count: int) -> None:
    """Refuse ``--nproc`` processes on fewer GPUs: each takes the GPU of its
    local rank, and two on one GPU fail in NCCL ("Duplicate GPU detected")."""
    if _default_cuda_index() >= count:
        raise DeviceError(f"--nproc {local_processes()} on CUDA takes a GPU per process, and this machine has {count}: "
                          f"give --nproc {count} or fewer, or --device cpu")


_cuda_problems: dict[int, str] = {}


def cuda_problem(index: int) -> str:
    """Why CUDA device ``index`` cannot compute, as torch says it ("" where
    it can): a GPU newer than the installed torch build ("no kernel image is
    available"), a driver too old for it. It reports itself available all
    the same, and every image would fail on it. Found once per process, by a
    one-element sum there (it starts CUDA, as the first image would)."""
    if index not in _cuda_problems:
        try:
            (torch.zeros(1, device=torch.device("cuda", index)) + 1).item()
            _cuda_problems[index] = ""
        except Exception as exc:  # noqa: BLE001 -- RuntimeError, torch.AcceleratorError, AssertionError: all say it
            _cuda_problems[index] = " ".join(str(exc).split()) or type(exc).__name__
    return _cuda_problems[index]


def _auto_device() -> torch.device:
    if _cuda_available():
        _gpu_per_process(_cuda_count())
        index = _default_cuda_index()
        problem = cuda_problem(index)
        if not problem:
            return torch.device("cuda", index)
        warn_once("cuda:%d cannot compute (%s); using the CPU: install a torch build for this GPU "
                  "(pytorch.org), or pass --device cpu to say so", index, problem[:200])  # once: auto is resolved often
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(spec: Optional[str] = None) -> torch.device:
    """Turn a user device request into a :class:`torch.device`.

    Args:
        spec: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``
            (case-insensitive). ``None`` reads the ``IMGEDIT_DEVICE``
            environment variable, then defaults to ``"auto"``.

    Returns:
        The device. ``"auto"`` picks CUDA, then MPS, then the CPU; a bare
        ``"cuda"`` means ``cuda:0`` (under torchrun, ``cuda:LOCAL_RANK``).

    Raises:
        DeviceError: the request is malformed or the device is not available.
    """
    if spec is None:
        spec = os.environ.get(ENV_DEVICE) or "auto"
    text = str(spec).strip().lower()
    if text == "auto":
        return _auto_device()
    match = _DEVICE_RE.match(text)
    if match is None:
        raise _unavailable(str(spec), "is not a device; use auto, cpu, cuda, cuda:N or mps")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        if index not in (None, "0"):
            raise _unavailable(text, "is not a device; the CPU has no index")
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available() or index not in (None, "0"):
            raise _unavailable(text, "is not available")
        return torch.device("mps")
    count = _cuda_count()
    if count and index is None:
        _gpu_per_process(count)
    elif count and local_processes() > 1:  # every process on that one GPU
        raise DeviceError(f"device '{text}': with --nproc each process takes its own GPU (cuda:0, cuda:1, ...); "
                          "give --device cuda")
    n = int(index) if index is not None else _default_cuda_index()
    if n >= count:
        raise _unavailable(text, "is not available")
    problem = cuda_problem(n)
    if problem:
        raise DeviceError(f"device 'cuda:{n}' cannot compute ({problem[:200]}): install a torch build for this GPU "
                          "(pytorch.org), or use --device cpu")
    return torch.device("cuda", n)


def parse_precision(spec: Optional[str]) -> Optional[str]:
    """Return the precision name, or None for automatic choice."""
    if spec is None:
        return None
    text = str(spec).strip().lower()
    if text == "auto":
        return None
    if text not in PRECISIONS:
        raise DeviceError(f"precision '{spec}' is not valid (expected one of: auto, {', '.join(PRECISIONS)})")
    return text


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on
    x86, BF16 on Arm), as oneDNN sees it. Without it bf16 is emulated and
    slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN or without the probe
        return False


def _why_not_on_cpu(name: str, capabilities: Capabilities, what: str) -> str:
    """Why reduced precision ``name`` cannot run on the CPU, or "" when it can."""
    if name != "bf16":
        return f"precision {name} is not used on the CPU"
    if not capabilities.cpu_bf16:
        return f"{what} does not run in bf16 on the CPU"
    if not cpu_has_bf16():
        return "precision bf16 needs a CPU that computes bf16 natively (AVX512-BF16 or AMX)"
    return ""


def gpu_bf16_problem(device: Any) -> str:
    """Why bf16 would not run, or not be faster, on GPU ``device``, as a
    clause ("" where it would, and on the CPU, which
    :func:`resolve_precision` rules on itself): NVIDIA cards before Ampere
    emulate it, slower than fp32; MPS has it from macOS 14, and autocasts
    to it from torch 2.6 (torch 2.4 refuses, 2.5 quietly runs fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        major, _minor = torch.cuda.get_device_capability(device)
        return "" if major >= 8 else f"{device} computes bf16 only by emulation (before Ampere), slower than fp32"
    if device.type == "mps":
        import platform

        macos = tuple(int(part) for part in (platform.mac_ver()[0] or "0").split(".")[:2] if part.isdigit())
        if macos < (14,):
            return "MPS computes bf16 from macOS 14 on"
        if tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
            return f"torch {torch.__version__.split('+')[0]} has no bf16 on MPS (torch 2.6 has)"
    return ""


def resolve_precision(spec: Optional[str], device: torch.device, capabilities: Capabilities,
                      what: str = "this operation", once: bool = False) -> torch.dtype:
    """Choose the dtype an operation runs in.

    On a GPU (CUDA or MPS) reduced precision is used when the operation lists
    it, and ``auto`` picks it. On the CPU ``auto`` is always fp32; ``bf16`` is
    used only when asked for, when the operation allows it there
    (``capabilities.cpu_bf16``) and when the CPU computes bf16 natively
    (:func:`cpu_has_bf16`): then it is about twice as fast, and emulated it
    would be slower than fp32. fp16 on the CPU is slow at best and crashes
    some kernels at worst, so it is never used there. How the dtype is
    applied is :func:`compute_scope`'s business.

    Args:
        spec: ``None``/``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        device: the resolved device.
        capabilities: the operation's manifest (``precisions`` and
            ``cpu_bf16`` are read).
        what: how to name the operation in a warning, e.g. ``"style.fast"``.
        once: say a fallback's warning once per process
            (:func:`~imgedit.operations.warn_once`), as a pipeline build
            does: a notebook builds one on every ``imgedit.run`` call.

    Returns:
        ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``.

    Raises:
        DeviceError: ``spec`` is not a precision name.
    """
    name = parse_precision(spec)
    on_gpu = torch.device(device).type in _GPU_TYPES
    supported = tuple(capabilities.precisions)
    if name is None:
        if not on_gpu:
            return torch.float32
        # fp16 is the faster and more widely supported half type; bf16 only
        # when it is the op's sole reduced precision, and the GPU has it.
        for candidate in ("fp16", "bf16"):
            if candidate in supported and not (candidate == "bf16" and gpu_bf16_problem(device)):
                return PRECISIONS[candidate]
        return torch.float32
    if name == "fp32":
        return torch.float32
    warn = warn_once if once else logger.warning
    if not on_gpu:
        why = _why_not_on_cpu(name, capabilities, what)
        if why:
            warn("%s; running in fp32", why)
            return torch.float32
        return torch.bfloat16
    if name not in supported:
        warn(
            "precision %s is not supported by %s (supports: %s); running in fp32",
            name,
            what,
            ", ".join(supported) or "fp32",
        )
        return torch.float32
    problem = gpu_bf16_problem(device) if name == "bf16" else ""
    if problem:
        warn("%s; running %s in fp32", problem, what)
        return torch.float32
    return PRECISIONS[name]


_fork_guard = {"registered": False, "forked": False, "said": False}


def guard_fork() -> None:
    """Keep a process forked after imgedit computed here (a service's
    prefork workers, a Celery pool) from hanging at its first edit: torch's
    CPU threads do not survive a fork, and a child that asks for them waits
    forever. The child computes on one thread instead, and says so once.
    Called as an image is edited: a process that forks before its first
    edit (a server that builds its pipeline, then forks) keeps its threads."""
    if not _fork_guard["registered"] and hasattr(os, "register_at_fork"):  # not on Windows: no fork there
        _fork_guard["registered"] = True
        os.register_at_fork(after_in_child=_one_thread_after_fork)
    if _fork_guard["forked"] and not _fork_guard["said"]:
        _fork_guard["said"] = True
        logger.warning("this process was forked after imgedit edited in its parent, and torch's threads do not "
                       "survive a fork: its threads were set to one; start workers with the 'spawn' method, or "
                       "fork before the first edit, to use every core")


def _one_thread_after_fork() -> None:
    torch.set_num_threads(1)
    _fork_guard["forked"] = True


def compute_scope(device: torch.device, dtype: torch.dtype) -> tuple[torch.dtype, contextlib.AbstractContextManager]:
    """How a resolved precision is applied: the dtype an applier's tensors
    (and its model) are given, and the context its calls run in.

    bf16 on the CPU runs under torch's autocast: images and weights stay
    fp32 and only convolutions and matrix products run in bf16, so known
    pixels and 16-bit sources pass through exactly and the result differs
    from fp32 by about a level in 255. Everything else casts the tensors to
    ``dtype`` and needs no context.
    """
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        return torch.float32, torch.autocast("cpu", dtype=torch.bfloat16)
    return dtype, contextlib.nullcontext()


def check_supported(device: torch.device, capabilities: Capabilities, what: str = "this operation") -> None:
    """Check that an operation can run on a device type.

    Args:
        device: the resolved device.
        capabilities: the operation's manifest (``devices`` is read).
        what: how to name the operation in the message, e.g. ``"inpaint.lama"``.

    Raises:
        DeviceError: the operation does not list ``device.type``; the caller
            may catch it and fall back to the CPU.
    """
    kind = torch.device(device).type
    if kind not in capabilities.devices:
        raise DeviceError(
            f"{what} does not run on {kind} (device '{device}'); it supports: {', '.join(capabilities.devices)}"
        )


def set_threads(n: Optional[int]) -> None:
    """Set the number of CPU threads torch uses.

    Args:
        n: intra-op thread count; ``None`` leaves torch's default alone.

    Raises:
        DeviceError: ``n`` is not an integer >= 1.
    """
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DeviceError(f"threads: expected an integer >= 1, got {n!r}")
    torch.set_num_threads(n)
    try:
        # torch allows setting inter-op threads only once, before any
        # inter-op work has started; later calls raise and are harmless.
        torch.set_num_interop_threads(n)
    except RuntimeError:
        logger.debug("inter-op thread count already fixed; left at %d", torch.get_num_interop_threads())


def _cuda_details() -> list[dict[str, Any]]:
    details = []
    for i in range(_cuda_count()):
        try:
            props = torch.cuda.get_device_properties(i)
            details.append({"index": i, "name": props.name, "memory_mb": props.total_memory // 2**20})
        except (RuntimeError, AssertionError):
            # A half-working driver should not break a debug listing.
            details.append({"index": i, "name": "unknown", "memory_mb": None})
    return details


def describe_devices() -> dict[str, Any]:
    """Describe the torch build and the devices (public: for a bug report or a script checking its machine).

    Returns:
        A JSON-serialisable dict with the torch version, CUDA availability,
        version and devices, MPS availability, the device ``"auto"`` picks and
        the CPU thread count.
    """
    return {
        "torch": torch.__version__,
        "cuda_available": _cuda_available(),
        "cuda_version": torch.version.cuda,
        "cuda_devices": _cuda_details(),
        "mps_available": _mps_available(),
        "available": available_devices(),
        "auto": str(_auto_device()),
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
    }


def available_memory() -> Optional[int]:
    """Bytes of memory this machine can still give (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def check_fits_in_memory(needed: float, what: str, advice: str) -> None:
    """Refuse, before the work, a request that would end in a MemoryError after it.

    Args:
        needed: the bytes the request would hold at once (an estimate).
        what: the request, e.g. ``"100000000 frames of 64x64"``.
        advice: what to do instead.

    Raises:
        UsageError: ``needed`` is more than the memory available.
    """
    free = available_memory()
    if free is not None and needed > free:
        raise UsageError(f"{what} would need about {_gigabytes(needed)} of memory and {_gigabytes(free)} is "
                         f"available; {advice}")


def _gigabytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size < 1e12 else f"{size / 1e12:.0f} TB"
