"""``--dry-run``: what a run would do, without touching an image."""

from __future__ import annotations

import sys
from typing import Any, Optional

from imgedit.inputs import InputFile
from imgedit.journal import JOURNAL_NAME, Journal, file_digest
from imgedit.pipeline import Pipeline
from imgedit.journal_keys import JournalKeys
from imgedit.output_plan import JournalsRead, RealPaths, journal_folder, plan_outputs
from imgedit.runner import RunOptions, done_unread

BYTES_PER_PIXEL = 3 * 4  # a decoded RGB float32 image
# Full-size float images a stage holds besides its working memory: the one
# it reads, the one it returns, and about two in between (decoding, a resize
# back to full size, the tile accumulators, encoding). Four matched the peak
# memory of style and denoise.vae on a 24 MP photo within 15%.
FULL_SIZE_COPIES = 4
PROCESS_MB_WITHOUT_RESOURCE = 600  # Python with torch imported, where the OS does not say (Windows)


def _largest_size(items: list[InputFile]) -> tuple[int, int]:
    """``(height, width)`` of the input with the most pixels, from headers."""
    from imgedit.errors import ImgeditError
    from imgedit.imageio.describe import image_size

    largest = (0, 0)
    for item in items:
        try:
            size = image_size(item.path)  # header only: cheap
        except ImgeditError:
            continue  # the run itself will report it
        if size[0] * size[1] > largest[0] * largest[1]:
            largest = size
    return largest


def _process_mb() -> float:
    """This process's peak resident memory so far: Python, torch and the
    plugins, as the run will have them before it loads a model."""
    try:
        import resource
    except ImportError:
        return PROCESS_MB_WITHOUT_RESOURCE
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _weights_mb(pipeline: Pipeline) -> float:
    """The stages' fixed weights, as loaded (the files' sizes)."""
    from imgedit.registry import get_registry

    models, total = get_registry().models, 0
    for stage in pipeline.stages:
        for name in stage.operation.weights:
            spec = models.get(name)
            if spec is not None and spec.weights.is_file():
                total += spec.weights.stat().st_size
    return total / 2**20


def build_problem(pipeline: Pipeline, options: RunOptions) -> Optional[Exception]:
    """What would stop the run at its first image, as the run would raise
    it: the stages built as the run builds them (their models loaded: a file
    missing or not verifying, a plugin's ``create`` failing), or None. Costs
    what the run's own start does (weights read, a GPU's context made);
    called after the memory estimate, which counts the weights apart."""
    from imgedit.errors import ImgeditError

    try:
        pipeline.build(options.device, options.precision)
    except ImgeditError as exc:
        return exc
    return None


def _already_done(items: list[InputFile], outputs: list, pipeline: Pipeline, options: RunOptions,
                  journals: Optional[JournalsRead]) -> int:
    folder = journal_folder(items, options)
    if folder is None or options.force:
        return 0
    journal = journals.take(folder) if journals is not None else None  # planning's read, where it read this folder
    journal, keys = journal if journal is not None else Journal(folder), JournalKeys(pipeline, options)  # with the mask files' content, as a run keys them
    real = RealPaths()

    def done(item: InputFile, dst: Any) -> bool:
        if journal.get(dst) is None:  # nothing recorded there: no need to read (and hash) the input
            return False
        if not options.in_place and done_unread(journal, keys, item, dst, real):  # as the run skips it, unread
            return True
        key = keys.of(item, file_digest(item.path))
        return journal.is_done(dst, key) or options.in_place and journal.holds_result(dst, key)

    return sum(done(item, dst) for item, dst in zip(items, outputs))


def _journal_path(items: list[InputFile], options: RunOptions) -> Optional[str]:
    """The journal file the run would keep, as its summary names it; None: none."""
    folder = journal_folder(items, options)
    return str(folder / JOURNAL_NAME) if folder is not None else None


def describe_plan(pipeline: Pipeline, items: list[InputFile], options: RunOptions,
                  journals: Optional[JournalsRead] = None) -> dict[str, Any]:
    """The plan: inputs, outputs, stages with their parameters, device,
    precision, tile size and an estimate of peak memory; ``journals`` as
    :func:`imgedit.runner.run_files` takes them."""
    import torch

    from imgedit.devices import resolve_device, resolve_precision
    from imgedit.tiling import choose_tile

    outputs = plan_outputs(pipeline, items, options)
    device = resolve_device(options.device)
    height, width = _largest_size(items)
    largest = height * width / 1e6
    side = int((largest * 1e6) ** 0.5) or 1
    image_mb = largest * 1e6 * BYTES_PER_PIXEL / 2**20
    stages, peaks = [], []
    for stage in pipeline.stages:
        caps, operation = stage.operation.capabilities, stage.operation
        where = device if device.type in caps.devices else torch.device("cpu")
        tile = options.tile if options.tile != "auto" else choose_tile((1, 3, side, side), caps, where)
        tile = tile if caps.tileable else None
        if tile:
            working = min(largest, (tile + 2 * caps.tile_overlap) ** 2 / 1e6)
        elif operation.working_size is not None and height:
            h, w = operation.working_size(stage.params, height, width)
            working = h * w / 1e6
        else:
            working = largest
        peaks.append(caps.memory_mb_per_megapixel * working + FULL_SIZE_COPIES * image_mb)
        stages.append(
            {
                **stage.describe(),
                "plugin": operation.plugin,
                "device": str(where),
                "precision": str(resolve_precision(options.precision, where, caps, operation.key)).replace("torch.", ""),
                "tile": tile or "whole image",
            }
        )
    # besides the image being computed: up to ``depth`` decoded ahead and ``depth`` waiting to be written,
    # fewer for large photos (as the run reads them: _Batch.read_ahead), each with its mask where one is read
    from imgedit.runner import READ_AHEAD_PIXELS

    depth = max(1, min(options.depth, READ_AHEAD_PIXELS // max(1, height * width)))
    queued_mb = image_mb * (BYTES_PER_PIXEL + 4 * pipeline.needs_mask) / BYTES_PER_PIXEL
    queued = min(max(len(items) - 1, 0), 2 * depth) * queued_mb
    peak = _process_mb() + _weights_mb(pipeline) + max(peaks, default=0) + queued
    return {
        "inputs": len(items),
        "already_done": _already_done(items, outputs, pipeline, options, journals),
        "first_output": str(outputs[0]) if outputs else None,
        "journal": _journal_path(items, options),
        "workers": options.workers,
        "queue_depth": options.depth,
        "largest_image_mp": round(largest, 2),
        "stages": stages,
        "peak_memory_estimate_mb": round(peak),
    }
