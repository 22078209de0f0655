"""The Ray engine: the batch runner's work spread over a Ray cluster.

The driver plans the outputs exactly as the local runner does (same collision
errors, before any work), then Ray Data hands the inputs, a few rows at a
time, to a pool of actors. Each actor rebuilds the pipeline from its specs,
loads its models once, and runs the local runner's own decode, compute and
encode code on its rows, so the outputs are byte-identical and the journal
records the same; each actor appends to its own journal shard. The driver
streams the results back for the progress bar and the summary.

Ray is an optional dependency, imported only here and only when used.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import socket
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from imgedit.errors import ImgeditError, UsageError
from imgedit.inputs import InputFile
from imgedit.journal import Journal
from imgedit.output_plan import JournalsRead, journal_folder, plan_outputs, remove_stale_temps
from imgedit.pipeline import Pipeline
from imgedit.runner import (
    FileResult,
    RunOptions,
    Summary,
    _Batch,
    _Work,
    open_journal,
    run_works,
)

# Not 'imgedit[ray]': another project holds the name imgedit on PyPI.
RAY_MISSING = "the Ray engine needs Ray: pip install 'ray[data]>=2.9'"
PROBE_SECONDS = 10  # for a cluster address to accept a connection and answer
BATCH_ROWS = 8  # images per actor call: small enough to balance the actors and report progress often
RESULT_FIELDS = ("status", "error", "exit_code", "note", "needs_overwrite", "bad_file", "unbuildable")


def import_ray() -> Any:
    """The ``ray`` module, or a usage error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs it; plain ``ray`` lacks it)
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


class PipelineActor:
    """A Ray actor: the pipeline with its models, built once, and a journal shard."""

    def __init__(self, specs: list, options: RunOptions, journal_folder: Optional[str], cwd: str, threads: int):
        from imgedit.process_tuning import tune_for_batch

        tune_for_batch()  # before torch is imported, as the CLI does
        from imgedit.devices import set_threads

        if os.getcwd() != cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths mean here what they meant to the driver
        set_threads(threads)
        # one writer per shard file: safe on shared storage, whatever the node
        shard = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        journal = Journal(Path(journal_folder), shard=shard) if journal_folder else None
        self.batch = _Batch(Pipeline.from_specs(specs), options, journal, None)

    def __call__(self, rows: dict[str, Any]) -> dict[str, list]:
        works = [_Work(InputFile(Path(p), Path(r)), Path(d)) for p, r, d in zip(rows["path"], rows["root"], rows["dst"])]
        results: list[FileResult] = []
        try:
            run_works(self.batch, works, results.append)
        finally:
            if self.batch.journal is not None:
                self.batch.journal.close()  # on disk before the driver hears of these results
        # in input order; fewer than asked when --fail-fast stopped early
        columns = {name: [getattr(r, name) for r in results] for name in RESULT_FIELDS}
        return {"index": list(rows["index"][: len(results)]), **columns}


def run_files_ray(
    pipeline: Pipeline,
    items: list[InputFile],
    options: RunOptions,
    on_result: Optional[Callable[[FileResult], None]] = None,
    address: Optional[str] = None,
    journals: Optional[JournalsRead] = None,
) -> Summary:
    """:func:`imgedit.runner.run_files` on Ray: the same outputs, journal,
    summary and failures, computed by actors on the cluster at ``address``
    (default: ``RAY_ADDRESS``, else a Ray instance started for this run and
    stopped after it; an initialised Ray is used as it is).

    Ctrl-C stops the actors (each output is complete or absent: writes are
    atomic) and returns a summary marked ``interrupted``; the next run, with
    either engine, resumes from the journal.

    Raises:
        UsageError: Ray is not installed, or the outputs collide.
        ImgeditError: Ray could not be started or reached, or the Ray job
            itself failed (an actor could not start, a node was lost).
    """
    ray = import_ray()
    start = time.perf_counter()
    outputs = plan_outputs(pipeline, items, options)
    remove_stale_temps(outputs, journal_folder(items, options))  # the folder whose lock another run would hold
    journal = open_journal(items, options, journals)
    try:
        results, interrupted = _run_on_ray(ray, _Job(pipeline, items, outputs, options, journal), on_result, address)
        # Fold the shards in only when every actor has returned: after a stop
        # some may still be writing, and the next run folds them in first.
        if journal is not None and len(results) == len(items):
            journal.compact_if_alone()
    finally:
        if journal is not None:
            journal.release()
    done = [results[i] for i in sorted(results)]
    return Summary(results=done, seconds=time.perf_counter() - start, interrupted=interrupted,
                   journal=journal.path if journal else None, unbuildable=any(r.unbuildable for r in done))


@dataclasses.dataclass
class _Job:
    """What the driver planned: the inputs with their outputs, and how."""

    pipeline: Pipeline
    items: list[InputFile]
    outputs: list[Path]
    options: RunOptions
    journal: Optional[Journal]


def _run_on_ray(
    ray: Any, job: _Job, on_result: Optional[Callable[[FileResult], None]], address: Optional[str]
) -> tuple[dict[int, FileResult], bool]:
    """The results by input index, and whether Ctrl-C stopped the run: the
    inputs the journal says are done, then the cluster's, as they come."""
    items, outputs = job.items, job.outputs
    results = _skipped_by_journal(_Batch(job.pipeline, job.options, job.journal, None), items, outputs)
    for index in sorted(results):
        if on_result is not None:
            on_result(results[index])
    todo = [i for i in range(len(items)) if i not in results]
    started = _connect(ray, address) if todo else False  # a finished job's rerun needs no cluster
    try:
        for row in _dataset(ray, job, todo).iter_rows() if todo else ():
            index = int(row["index"])
            result = FileResult(items[index].path, outputs[index], **{name: row[name] for name in RESULT_FIELDS})
            results[index] = result
            if on_result is not None:
                on_result(result)
            if job.options.fail_fast and result.status == "failed":
                break
    except KeyboardInterrupt:
        return results, True
    except ray.exceptions.RayError as exc:
        raise _job_error(exc) from None
    finally:
        if started:
            ray.shutdown()
    return results, False


def _skipped_by_journal(batch: _Batch, items: list[InputFile], outputs: list[Path]) -> dict[int, FileResult]:
    """The results of the inputs the journal says need no work, found here
    in the driver (reading only the inputs it knows, in I/O threads) so that
    the cluster gets only real work, and a rerun of a finished job none."""
    works = [_Work(item, dst) for item, dst in zip(items, outputs)]
    with ThreadPoolExecutor(max(1, batch.options.workers), "imgedit-check") as pool:
        skips = list(pool.map(batch.needs_no_work, works))
    return {i: work.result for i, (work, skip) in enumerate(zip(works, skips)) if skip}


def _connect(ray: Any, address: Optional[str]) -> bool:
    """Join the cluster (or start a local Ray) unless Ray is initialised;
    whether this call did, so that the caller shuts it down."""
    if ray.is_initialized():
        return False
    _check_reachable(address or os.environ.get("RAY_ADDRESS"))
    # the user's settings (weights folder, plugin allow-list) reach every node
    env = {k: v for k, v in os.environ.items() if k.startswith("IMGEDIT_")}
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,  # actors' output stays in Ray's logs, off the user's terminal
            logging_level=logging.ERROR,
            runtime_env={"env_vars": env} if env else None,
        )
    except (ConnectionError, ValueError) as exc:
        raise ImgeditError(f"cannot start or reach Ray: {_first_line(exc)}") from None
    return True


def _check_reachable(address: Optional[str]) -> None:
    """Fail at once on a cluster address where nothing, or something other
    than Ray, answers: ``ray.init`` would retry for minutes, logging a
    warning every few seconds."""
    host, _, port = (address or "").split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # None, "auto", "local": Ray's own choice
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS) as connection:
            speaks_grpc = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true") or _answers_http2(connection)
    except OSError as exc:
        raise ImgeditError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None
    if not speaks_grpc:
        raise ImgeditError(
            f"{address} answers, but not as Ray: give the head node's GCS port (ray start --head prints it; "
            "6379 by default), not the dashboard's or another service's"
        )


# The HTTP/2 client preface and an empty SETTINGS frame: every gRPC server,
# Ray's GCS and Ray Client among them, answers with a SETTINGS frame.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def _answers_http2(connection: socket.socket) -> bool:
    """Whether the server on ``connection`` answers an HTTP/2 preface with
    SETTINGS (a dashboard answers HTTP/1.1's 400; a silent port, nothing)."""
    try:
        connection.sendall(HTTP2_PREFACE)
        header = b""
        while len(header) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
            chunk = connection.recv(9 - len(header))
            if not chunk:
                break
            header += chunk
    except OSError:  # socket.timeout included: a port that never answers
        return False
    return len(header) == 9 and header[3] == HTTP2_SETTINGS


def _dataset(ray: Any, job: _Job, todo: list[int]) -> Any:
    """The rows (one per input in ``todo``) mapped by a pool of pipeline actors."""
    _quiet_ray_data()
    items, outputs, options = job.items, job.outputs, job.options
    rows = [{"index": i, "path": str(items[i].path), "root": str(items[i].root), "dst": str(outputs[i])} for i in todo]
    actors, gpus = _actor_pool(ray, options, len(rows))
    if gpus and (options.device or "").startswith("cuda"):
        options = dataclasses.replace(options, device="cuda")  # Ray gives each actor one GPU, its cuda:0
    arguments = {
        "specs": job.pipeline.specs(),
        "options": options,
        "journal_folder": str(job.journal.folder) if job.journal else None,
        "cwd": os.getcwd(),
        "threads": 1,  # one actor per CPU
    }
    with warnings.catch_warnings():
        # Ray 2.60 deprecates max_restarts here and has no successor yet. No
        # restarts: a lost actor ends the run with an error and the next run
        # resumes. (Restartable actors also each print a notice on the
        # terminal, ray-project/ray#57733.)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.data.from_items(rows).map_batches(
            PipelineActor,
            fn_constructor_kwargs=arguments,
            batch_size=BATCH_ROWS,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            num_gpus=gpus,
            max_restarts=0,
        )


def _quiet_ray_data() -> None:
    """No Ray Data progress bars or execution logs: imgedit reports progress itself."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors reach the user as one line


def _actor_pool(ray: Any, options: RunOptions, rows: int) -> tuple[int, int]:
    """How many actors, and the GPUs each asks for: one actor per GPU when
    the cluster has GPUs and the run may use them, else one per CPU; never
    more actors than batches of rows."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if (options.device or "auto") not in ("cpu", "mps") else 0
    actors = gpus or max(1, int(resources.get("CPU", 1)))
    return max(1, min(actors, math.ceil(rows / BATCH_ROWS))), 1 if gpus else 0


def _job_error(exc: BaseException) -> ImgeditError:
    """One line for a failed Ray job (an actor that could not start, a node
    lost); an imgedit error raised on the cluster (a plugin missing on a
    node, say) keeps its own message and exit code."""
    return _imgedit_cause(exc) or ImgeditError(f"the Ray job failed: {_first_line(exc)}")


def _imgedit_cause(exc: BaseException, depth: int = 0) -> Optional[ImgeditError]:
    """The imgedit error at the root of a Ray exception's chain, if any."""
    for inner in (getattr(exc, "cause", None), exc.__cause__, *exc.args):
        if isinstance(inner, BaseException) and depth < 8:
            found = _imgedit_cause(inner, depth + 1)
            if found is not None:
                return found
    return exc if isinstance(exc, ImgeditError) else None


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # Ray colours its messages
    return text.splitlines()[0] if text else type(exc).__name__
