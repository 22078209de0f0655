"""Apply a pipeline to image files: read, find the mask, run, write
atomically. One bad file is recorded and the batch goes on."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from imgedit.errors import ImgeditError, UsageError
from imgedit.inputs import InputFile, output_path
from imgedit.masks import MaskOptions
from imgedit.pipeline import BuiltPipeline, Pipeline

log = logging.getLogger("imgedit")


@dataclass
class RunOptions:
    """Everything about a run that is not the pipeline itself."""

    output: Optional[Path] = None
    name: Optional[str] = None
    device: Optional[str] = None
    precision: Optional[str] = None
    tile: Union[int, str, None] = "auto"
    overwrite: bool = False
    in_place: bool = False
    format: Optional[str] = None
    quality: int = 95
    masks: MaskOptions = field(default_factory=MaskOptions)
    fail_fast: bool = False


@dataclass
class FileResult:
    source: Path
    output: Optional[Path] = None
    error: Optional[str] = None
    exit_code: int = 1
    seconds: float = 0.0
    note: str = ""


@dataclass
class Summary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def done(self) -> list[FileResult]:
        return [r for r in self.results if r.error is None]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.error is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": len(self.done),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "outputs": [{"input": str(r.source), "output": str(r.output), "note": r.note} for r in self.done],
            "failures": [{"input": str(r.source), "error": r.error} for r in self.failed],
        }


def _output_ext(item: InputFile, options: RunOptions) -> str:
    if options.format:
        from imgedit.imageio import suffix_for_format

        return suffix_for_format(options.format.upper()).lstrip(".")
    return item.path.suffix.lstrip(".") or "png"


def plan_output(item: InputFile, pipeline: Pipeline, options: RunOptions, single: bool) -> Path:
    """The output path for ``item``; refuses to overwrite the input."""
    dst = output_path(
        item,
        output=options.output,
        single=single,
        op_label=pipeline.label,
        ext=_output_ext(item, options),
        template=options.name,
        in_place=options.in_place,
    )
    if not options.in_place and dst.resolve() == item.path.resolve():
        raise UsageError(f"{item.path}: output would overwrite the input; pass --in-place to allow that")
    return dst


def process_file(item: InputFile, built: BuiltPipeline, options: RunOptions, dst: Path) -> str:
    """Read, run and write one image. Returns a note (e.g. the mask source)."""
    from imgedit.imageio import read_image, write_image
    from imgedit.masks import find_mask
    from imgedit.tensor import mask_to_tensor, to_numpy, to_tensor

    if dst.exists() and not (options.overwrite or options.in_place):
        raise ImgeditError(f"{dst} exists; pass --overwrite to replace it")
    picture = read_image(item.path)
    mask, note = None, ""
    if built.pipeline.needs_mask:
        hole, note = find_mask(item.path, picture.rgb, picture.alpha, options.masks)
        mask = mask_to_tensor(hole)
    out = built.apply(to_tensor(picture.rgb), mask, tile=options.tile)
    result = picture.with_rgb(to_numpy(out))
    if mask is not None and note == "transparent pixels" and result.alpha is not None:
        result.alpha = result.alpha.copy()
        result.alpha[hole] = 1.0  # the filled hole must be visible
    write_image(result, dst, format=options.format, quality=options.quality, overwrite=True)
    return note


def run_files(
    pipeline: Pipeline,
    items: list[InputFile],
    options: RunOptions,
    on_result: Optional[Callable[[FileResult], None]] = None,
) -> Summary:
    """Process ``items`` one after another; failures are recorded, not raised
    (unless ``options.fail_fast``)."""
    start = time.perf_counter()
    summary = Summary()
    single = len(items) == 1
    built = pipeline.build(options.device, options.precision)
    for item in items:
        t0 = time.perf_counter()
        result = FileResult(item.path)
        try:
            result.output = plan_output(item, pipeline, options, single)
            result.note = process_file(item, built, options, result.output)
        except ImgeditError as exc:
            message = str(exc)
            result.error = message if str(item.path) in message else f"{item.path}: {message}"
            result.exit_code = exc.exit_code
        except Exception as exc:  # one bad file must not end a batch of thousands
            log.debug("unexpected error on %s", item.path, exc_info=True)
            result.error = f"{item.path}: unexpected {type(exc).__name__}: {exc}"
        result.seconds = time.perf_counter() - t0
        summary.results.append(result)
        if on_result:
            on_result(result)
        if result.error and options.fail_fast:
            break
    summary.seconds = time.perf_counter() - start
    return summary
