"""Data-parallel training under ``torchrun``: one process per device, each
computing the gradient of its share of every global batch, averaged across
processes by :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on
the CPU, NCCL on CUDA).

The rule that makes N processes train the same network as one process with
the same global batch: every process draws the *whole* global batch's
randomness from the run's generator (which photos, which crops, which noise)
and keeps only its own rows (:func:`shard`, :func:`batch_draw`). The
generators of all processes stay in step, so rank 0's checkpoint holds every
rank's random state and ``--resume`` works the same with any number of
processes. Drawing a global batch costs little next to the forward and
backward passes, which each process runs on its rows alone.

Rank 0 alone validates, logs, checkpoints and exports. Outside ``torchrun``
every function here is the identity, so trainers need no second code path.

    imgedit train denoise --data photos/ --nproc 2      # relaunches itself under torchrun
    torchrun --nproc-per-node 2 -m imgedit train denoise --data photos/   # the same
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from imgedit.errors import UsageError
from imgedit.process_tuning import threads_fitted_to_quota, usable_cpus

__all__ = [
    "TORCHRUN_ENV",
    "WorkerDone",
    "average",
    "average_gradients",
    "batch_draw",
    "check_batch",
    "check_nproc",
    "failure_status",
    "is_main",
    "local_rank",
    "rank",
    "relaunch",
    "rows",
    "shard",
    "start",
    "stop",
    "under_torchrun",
    "without_nproc",
    "world",
    "wrap",
]

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"  # set by torchrun in every process it starts


def under_torchrun() -> bool:
    return TORCHRUN_ENV in os.environ and "WORLD_SIZE" in os.environ


def world() -> int:
    """Number of training processes (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1")) if under_torchrun() else 1


def rank() -> int:
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def local_rank() -> int:
    """This process's index on its machine: its CUDA device under torchrun."""
    return int(os.environ.get("LOCAL_RANK", "0")) if under_torchrun() else 0


def local_processes() -> int:
    """Training processes on this machine (1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))) if under_torchrun() else 1


def is_main() -> bool:
    """Whether this process validates, logs, checkpoints and exports."""
    return rank() == 0


def start() -> None:
    """Join the process group torchrun set up (once; nothing outside torchrun)."""
    if world() == 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        # the process's own GPU, where there is one: with fewer GPUs than processes (training on the
        # CPU, say) there is none to pick, and --device refuses CUDA (imgedit.devices)
        torch.cuda.set_device(local_rank())
    # one group, two backends: CPU tensors go through gloo, CUDA tensors through NCCL
    dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")


def stop() -> None:
    if world() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


class WorkerDone(SystemExit):
    """Raised in a process other than rank 0 once training is over (rank 0
    alone exports and reports): exit status 0. The CLI ends such a process
    without the interpreter's shutdown (:func:`imgedit.cli.end_finished_worker`)."""

    def __init__(self) -> None:
        super().__init__(0)


def check_batch(batch: int) -> int:
    """This process's rows of a global batch of ``batch``.

    Raises:
        UsageError: the global batch does not split evenly (the processes
            would then weigh their samples unequally).
    """
    if batch % world():
        raise UsageError(f"--batch {batch} does not split into {world()} processes: use a multiple of {world()}")
    return batch // world()


def rows(n: int) -> slice:
    """This process's contiguous block of rows of a global batch of ``n``."""
    part = check_batch(n)
    return slice(rank() * part, (rank() + 1) * part)


def shard(*batches: Any) -> Any:
    """This process's rows of each global batch tensor (one tensor in, one out)."""
    if world() == 1:
        return batches[0] if len(batches) == 1 else batches
    parts = tuple(b[rows(len(b))] for b in batches)
    return parts[0] if len(parts) == 1 else parts


def batch_draw(draw: Callable[[tuple], Any], shape: Sequence[int]) -> Any:
    """Random numbers for this process's ``shape[0]`` rows of a batch:
    ``draw(global_shape)`` (e.g. ``lambda s: torch.randn(s, generator=g)``),
    with the global batch's rows, then this process's rows. Outside torchrun
    it is ``draw(shape)``."""
    n = world()
    if n == 1:
        return draw(tuple(shape))
    full = draw((shape[0] * n, *shape[1:]))
    return full[rank() * shape[0]:(rank() + 1) * shape[0]]


def wrap(module: Any) -> Any:
    """``module`` in DistributedDataParallel under torchrun (gradients are
    averaged over the processes in ``backward``); ``module`` itself otherwise.
    Keep the plain module for checkpoints, validation and export."""
    if world() == 1:
        return module
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    _refuse_mps(device)
    if device.type != "cuda":  # batch-norm statistics stay per process: SyncBatchNorm needs CUDA
        return DistributedDataParallel(module)
    # all processes' rows in each batch-norm statistic, as in one process (converts module in place)
    module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[device.index])


def _refuse_mps(device: Any) -> None:
    """Refuse to train on MPS in several processes: their group is gloo,
    which moves CPU tensors only, and ``--device auto`` picks MPS on a Mac."""
    if device.type == "mps":
        raise UsageError(f"--nproc {world()} does not train on mps (the processes exchange gradients through gloo, "
                         "which takes CPU tensors only): add --device cpu, or train in one process")


def average_gradients(module: Any) -> None:
    """Average ``module``'s gradients over the processes, for a step that ran
    the plain module rather than its :func:`wrap` (whose backward averages
    them itself): DDP wants every parameter in every step's loss."""
    if world() == 1:
        return
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world()


def average(metrics: dict) -> dict:
    """The mean of each numeric metric over the processes (for the log)."""
    if world() == 1 or not metrics:
        return metrics
    import torch
    import torch.distributed as dist

    keys = [k for k, v in metrics.items() if isinstance(v, (int, float))]
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    return {**metrics, **{k: v / world() for k, v in zip(keys, values.tolist())}}


def _share_threads(nproc: int) -> None:
    """Each of ``nproc`` processes computes on its share of the CPUs (no
    oversubscription), unless the user set OMP_NUM_THREADS; the count the
    command set for one process under a CPU quota is shared out too."""
    threads = str(max(1, usable_cpus() // nproc))
    if threads_fitted_to_quota():
        os.environ["OMP_NUM_THREADS"] = threads
    else:
        os.environ.setdefault("OMP_NUM_THREADS", threads)


def relaunch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``imgedit ARGV`` in ``nproc`` processes under torchrun on this
    machine (its elastic agent, in this process); returns the exit status:
    0, or the first failing process's (whose error it has printed)."""
    check_nproc(nproc)
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    _share_threads(nproc)
    for name in list(logging.root.manager.loggerDict):  # the agent's chatter is not the user's: each process
        if name.startswith("torch.distributed.elastic"):  # reports its own errors
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun(["--standalone", f"--nproc-per-node={nproc}", "--module", "imgedit", *argv])
    except ChildFailedError as failed:
        return failure_status([f.exitcode for _, f in sorted(failed.failures.items())])
    except SignalException:  # Ctrl-C or SIGTERM: the processes got it too, and rank 0 saved a checkpoint
        return 130
    return 0


def check_nproc(nproc: int) -> None:
    """Refuse ``--nproc N`` where torchrun cannot start the processes.

    Raises:
        UsageError: N > 1 on Windows, whose PyTorch builds lack the libuv
            that torchrun's rendezvous asks for.
    """
    if nproc > 1 and os.name == "nt":
        raise UsageError(f"--nproc {nproc}: training in several processes is not supported on Windows "
                         "(PyTorch's torchrun fails there); leave out --nproc")


def failure_status(codes: Sequence[int]) -> int:
    """The exit status of a failed multi-process run: the first process's
    own exit code (2 for a usage error) before a signal's (negative: torchrun
    terminates the others once one has failed, and -15 would exit as 241);
    a run that only signals ended exits as a shell says it: 128 + signal."""
    own = [code for code in codes if code > 0]
    signals = [-code for code in codes if code < 0]
    return own[0] if own else 128 + signals[0] if signals else 1


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--nproc":
            skip = True
        elif not word.startswith("--nproc="):
            out.append(word)
    return out
