"""``--dry-run``: what a run would do, without touching an image."""

from __future__ import annotations

import sys
from typing import Any, Optional

from imgedit.errors import UsageError
from imgedit.inputs import InputFile
from imgedit.journal import JOURNAL_NAME, Journal, file_digest
from imgedit.pipeline import Pipeline
from imgedit.journal_keys import JournalKeys, holds_done
from imgedit.output_plan import JournalsRead, RealPaths, journal_folder, plan_outputs
from imgedit.runner import RunOptions, done_unread

BYTES_PER_PIXEL = 3 * 4  # a decoded RGB float32 image
# Full-size float images a stage holds besides its working memory: the one
# it reads and one in between (decoding, a resize back to full size), the one
# it returns and one in between (the tile accumulators, encoding). Four in
# all matched the peak memory of style and denoise.vae on a 24 MP photo
# within 15%; the output's two grow with it: inpaint's --samples 5 on a 24 MP
# photo peaked at 3.7 GiB against 1.4 GiB for one fill, and the estimate
# with two copies per output size is within 5% of both.
INPUT_SIZE_COPIES = 2
OUTPUT_SIZE_COPIES = 2
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


def _build(pipeline: Pipeline, options: RunOptions) -> tuple[Optional[Any], Optional[Exception]]:
    """The stages built as the run builds them (their models loaded), and
    None; or None and what would stop the run at its first image, as the run
    would raise it (a model file missing or not verifying, a plugin's
    ``create`` failing). Costs what the run's own start does."""
    from imgedit.errors import ImgeditError

    try:
        return pipeline.build(options.device, options.precision), None
    except ImgeditError as exc:
        return None, exc


def _output_sizes(pipeline: Pipeline, built: Optional[Any], height: int, width: int) -> list[tuple[int, int]]:
    """Each stage's output size for an input of ``height`` x ``width``: the
    input's, unless its applier says otherwise (``output_shape``: inpaint's
    fills side by side). Unbuilt: every stage keeps the size."""
    from imgedit.imageio import check_made_size

    appliers = [b.applier for b in built.built] if built is not None else [None] * len(pipeline.stages)
    sizes = []
    for index, (applier, stage) in enumerate(zip(appliers, pipeline.stages), start=1):
        reshape = getattr(applier, "output_shape", None)
        if reshape is not None:
            height, width = reshape((1, 3, height, width))[-2:]
            check_made_size(height, width, f"the output of stage {index} ({stage.label})")  # as the run refuses it
        sizes.append((height, width))
    return sizes


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
        return holds_done(journal, dst, keys.matching(item, file_digest(item.path)), options.in_place)

    return sum(done(item, dst) for item, dst in zip(items, outputs))


def _journal_path(items: list[InputFile], options: RunOptions) -> Optional[str]:
    """The journal file the run would keep, as its summary names it; None: none."""
    folder = journal_folder(items, options)
    return str(folder / JOURNAL_NAME) if folder is not None else None


def describe_plan(pipeline: Pipeline, items: list[InputFile], options: RunOptions,
                  journals: Optional[JournalsRead] = None) -> tuple[dict[str, Any], Optional[Exception]]:
    """The plan: inputs, outputs, stages with their parameters, device,
    precision, tile size, an estimate of peak memory and the problems that
    would stop the run (the stages are built: their models load); and the
    first of those problems, to raise, or None. ``journals`` as
    :func:`imgedit.runner.run_files` takes them."""
    import torch

    from imgedit.devices import resolve_device, resolve_precision
    from imgedit.tiling import choose_tile

    process_mb = _process_mb()  # before any model loads: the weights are counted apart, as their files' sizes
    built, problem = _build(pipeline, options)
    outputs = plan_outputs(pipeline, items, options)
    device = resolve_device(options.device)
    height, width = _largest_size(items)
    largest = height * width / 1e6
    first_mb = largest * 1e6 * BYTES_PER_PIXEL / 2**20
    stages, peaks, image_mb = [], [], first_mb
    try:
        sizes = _output_sizes(pipeline, built, height, width)
    except UsageError as exc:  # over the pixel limit: the run would refuse it; the plan says so
        problem, sizes = problem or exc, [(height, width)] * len(pipeline.stages)
    for stage, (out_h, out_w) in zip(pipeline.stages, sizes):
        caps, operation = stage.operation.capabilities, stage.operation
        where = device if device.type in caps.devices else torch.device("cpu")
        mp = height * width / 1e6
        side = int((mp * 1e6) ** 0.5) or 1
        tile = options.tile if options.tile != "auto" else choose_tile((1, 3, side, side), caps, where)
        tile = tile if caps.tileable else None
        if tile:
            working = min(mp, (tile + 2 * caps.tile_overlap) ** 2 / 1e6)
        elif operation.working_size is not None and height:
            try:
                h, w = operation.working_size(stage.params, height, width)
            except UsageError as exc:  # a working size over the pixel limit (a style's scale): as above
                problem, (h, w) = problem or exc, (height, width)
            working = h * w / 1e6
        else:
            working = mp
        out_mb = out_h * out_w * BYTES_PER_PIXEL / 2**20
        peaks.append(caps.memory_mb_per_megapixel * working + INPUT_SIZE_COPIES * image_mb + OUTPUT_SIZE_COPIES * out_mb)
        stages.append(
            {
                **stage.describe(),
                "plugin": operation.plugin,
                "device": str(where),
                "precision": str(resolve_precision(options.precision, where, caps, operation.key)).replace("torch.", ""),
                "tile": tile or "whole image",
            }
        )
        height, width, image_mb = out_h, out_w, out_mb
    # besides the image being computed: up to ``depth`` decoded ahead (each
    # with its mask where one is read) and ``depth`` results waiting to be
    # written, fewer for large photos (as the run reads them)
    from imgedit.runner import read_ahead

    depth = read_ahead(options.depth, int(largest * 1e6))
    decoded_mb = first_mb * (BYTES_PER_PIXEL + 4 * pipeline.needs_mask) / BYTES_PER_PIXEL
    queued = min(max(len(items) - 1, 0), 2 * depth) * (decoded_mb + image_mb) / 2
    peak = process_mb + _weights_mb(pipeline) + max(peaks, default=0) + queued
    plan = {
        "inputs": len(items),
        "already_done": _already_done(items, outputs, pipeline, options, journals),
        "first_output": str(outputs[0]) if outputs else None,
        "journal": _journal_path(items, options),
        "workers": options.workers,
        "queue_depth": options.depth,
        "largest_image_mp": round(largest, 2),
        "stages": stages,
        "peak_memory_estimate_mb": round(peak),
        "problems": [str(problem)] if problem is not None else [],
    }
    return plan, problem
