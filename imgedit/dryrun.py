"""``--dry-run``: what a run would do, without touching an image."""

from __future__ import annotations

from typing import Any

from imgedit.inputs import InputFile
from imgedit.journal import Journal, file_digest, make_key
from imgedit.pipeline import Pipeline
from imgedit.runner import RunOptions, journal_folder, plan_outputs, recipe

BYTES_PER_PIXEL = 3 * 4  # a decoded RGB float32 image


def _largest_megapixels(items: list[InputFile]) -> float:
    from imgedit.errors import ImgeditError
    from imgedit.imageio import describe_image

    largest = 0.0
    for item in items:
        try:
            info = describe_image(item.path)  # header only: cheap
        except ImgeditError:
            continue  # the run itself will report it
        largest = max(largest, info["width"] * info["height"] / 1e6)
    return largest


def _already_done(items: list[InputFile], outputs: list, pipeline: Pipeline, options: RunOptions) -> int:
    folder = journal_folder(items, options)
    if folder is None or options.force:
        return 0
    journal, run_recipe = Journal(folder), recipe(pipeline, options)
    return sum(
        journal.is_done(dst, make_key(file_digest(item.path), run_recipe)) for item, dst in zip(items, outputs)
    )


def describe_plan(pipeline: Pipeline, items: list[InputFile], options: RunOptions) -> dict[str, Any]:
    """The plan: inputs, outputs, stages with their parameters, device,
    precision, tile size and an estimate of peak memory."""
    import torch

    from imgedit.devices import resolve_device, resolve_precision
    from imgedit.tiling import choose_tile

    outputs = plan_outputs(pipeline, items, options)
    device = resolve_device(options.device)
    largest = _largest_megapixels(items)
    side = int((largest * 1e6) ** 0.5) or 1
    stages, peaks = [], []
    for stage in pipeline.stages:
        caps = stage.operation.capabilities
        where = device if device.type in caps.devices else torch.device("cpu")
        tile = options.tile if options.tile != "auto" else choose_tile((1, 3, side, side), caps, where)
        tile = tile if caps.tileable else None
        megapixels = min(largest, (tile + 2 * caps.tile_overlap) ** 2 / 1e6) if tile else largest
        peaks.append(caps.memory_mb_per_megapixel * megapixels)
        stages.append(
            {
                **stage.describe(),
                "plugin": stage.operation.plugin,
                "device": str(where),
                "precision": str(resolve_precision(options.precision, where, caps, stage.operation.key)).replace("torch.", ""),
                "tile": tile or "whole image",
            }
        )
    queued = 2 * options.depth * largest * 1e6 * BYTES_PER_PIXEL / 2**20
    return {
        "inputs": len(items),
        "already_done": _already_done(items, outputs, pipeline, options),
        "first_output": str(outputs[0]) if outputs else None,
        "journal": str(journal_folder(items, options) or "none"),
        "workers": options.workers,
        "queue_depth": options.depth,
        "largest_image_mp": round(largest, 2),
        "stages": stages,
        "peak_memory_estimate_mb": round(max(peaks, default=0) + queued),
    }
