"""The Python API: the same pipelines and runner as the CLI.

    >>> import imgedit
    >>> pipeline = imgedit.Pipeline.parse("denoise sigma=25 | inpaint")
    >>> out = imgedit.run(pipeline, tensor, mask=hole)          # (B, 3, H, W) -> (B, 3, H, W)
    >>> imgedit.run(pipeline, "photo.jpg", "clean.jpg", mask_box=(10, 10, 40, 40))
    >>> summary = imgedit.run("denoise", "scans/", "clean/", recursive=True)
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Union

from imgedit.errors import BatchError, ShapeError, UsageError
from imgedit.masks import MaskOptions, parse_box
from imgedit.pipeline import Pipeline
from imgedit.runner import RunOptions, Summary, default_workers, leave_out_own_outputs, run_files


def _options(output: Optional[Union[str, Path]], kwargs: dict[str, Any]) -> RunOptions:
    """The run's options, checked as the CLI checks them, before any image."""
    mask_names = {f.name for f in fields(MaskOptions)}
    run_names = {f.name for f in fields(RunOptions)}
    unknown = set(kwargs) - mask_names - run_names - {"recursive"}
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
    chosen_masks = {k: v for k, v in kwargs.items() if k in mask_names}
    if chosen_masks.get("mask_box") is not None:
        chosen_masks["mask_box"] = parse_box(",".join(map(str, _sequence(chosen_masks["mask_box"], "mask_box"))))
    if chosen_masks.get("mask") is not None:
        chosen_masks["mask"] = Path(chosen_masks["mask"])
    chosen = {k: v for k, v in kwargs.items() if k in run_names}
    chosen.setdefault("workers", default_workers())
    for name, low, high in (("quality", 1, 100), ("workers", 1, None), ("depth", 1, None)):
        value = chosen.get(name)
        if value is not None and (not isinstance(value, int) or value < low or high is not None and value > high):
            raise UsageError(f"{name} must be an integer in [{low}, {high or 'any'}], got {value!r}")
    return RunOptions(output=Path(output) if output is not None else None, masks=MaskOptions(**chosen_masks).checked(), **chosen)


def _sequence(value: Any, what: str) -> list:
    if isinstance(value, str) or not hasattr(value, "__len__"):
        raise UsageError(f"{what} must be (x, y, w, h), got {value!r}")
    return list(value)


#: What a tensor run takes: there is no file, so no output, journal or mask source but a box.
TENSOR_OPTIONS = ("device", "precision", "tile", "mask_box")


def run(
    pipeline: Union[Pipeline, str],
    target: Any,
    output: Optional[Union[str, Path]] = None,
    *,
    mask: Any = None,
    **options: Any,
) -> Any:
    """Run ``pipeline`` on a tensor, a file, a folder or a list of those.

    Args:
        pipeline: a :class:`Pipeline` or its text form.
        target: a ``(B, 3, H, W)`` float tensor in [0, 1] (``(B, 1, H, W)``
            gray is taken as RGB); or a path / glob / folder / list of them,
            processed exactly like the CLI does.
        output: output file or folder for paths (default: beside the input).
        mask: for a tensor, the ``(B, 1, H, W)`` hole mask (1 = hole); for
            paths, a mask file or folder, as ``--mask``.
        **options: any :class:`RunOptions` or :class:`MaskOptions` field
            (``device``, ``tile``, ``overwrite``, ``mask_box``, ...) and
            ``recursive``; for a tensor only ``device``, ``precision``,
            ``tile`` and ``mask_box``.

    Returns:
        The result tensor (on the CPU) for a tensor; a :class:`Summary` for paths.

    Raises:
        UsageError: bad pipeline, target or options; ShapeError: a tensor
        that is not a float image; BatchError: some files failed, or an
        input folder could not be read and its images were left out (the
        summary is on the exception as ``.summary``).
    """
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    elif not isinstance(pipeline, Pipeline):
        raise UsageError(f"pipeline must be a Pipeline or its text, got {type(pipeline).__name__}")
    import torch

    if isinstance(target, torch.Tensor):
        return _run_tensor(pipeline, target, output, mask, options)
    from imgedit.inputs import scan_inputs

    targets = _paths(target)
    if mask is not None:
        options["mask"] = mask
    recursive = bool(options.get("recursive", False))
    run_options = _options(output, options)
    scan = scan_inputs([str(t) for t in targets], recursive=recursive)
    named = frozenset(Path(t) for t in targets if Path(t).is_file())
    items, _ = leave_out_own_outputs(pipeline, items=scan.files, options=run_options, named=named)
    summary: Summary = run_files(pipeline, items, run_options)
    summary.unreadable = scan.unreadable
    if summary.failed or summary.unreadable:
        error = BatchError(f"{len(summary.failed)} of {len(summary.results)} images failed: {summary.failed[0].error}"
                           if summary.failed else
                           f"{len(scan.unreadable)} input folder(s) could not be read, their images left out: {scan.unreadable[0]}")
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


def _paths(target: Any) -> list[Union[str, Path]]:
    """The path targets: one, or a non-empty list of them."""
    targets = [target] if isinstance(target, (str, Path)) else target
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, (str, Path)) for t in targets):
        got = type(target).__name__ if not isinstance(targets, (list, tuple)) else "a list holding " + ", ".join(
            sorted({type(t).__name__ for t in targets if not isinstance(t, (str, Path))}))
        raise UsageError(f"target must be a (B, 3, H, W) tensor, or paths (a str, a Path or a list of them); got {got}")
    if not targets:
        raise UsageError("no images: the list of targets is empty")
    return list(targets)


def _run_tensor(pipeline: Pipeline, image: Any, output: Any, mask: Any, options: dict[str, Any]) -> Any:
    import torch

    from imgedit.tensor import check_image

    if output is not None:
        raise UsageError("output is for paths; for a tensor the result is returned")
    unknown = sorted(set(options) - set(TENSOR_OPTIONS))
    if unknown:
        raise UsageError(f"option(s) {', '.join(unknown)} do not apply to a tensor (those that do: {', '.join(TENSOR_OPTIONS)})")
    check_image(image)
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)  # gray as RGB, as files are read
    if image.shape[1] != 3 or min(image.shape) == 0:
        raise ShapeError("image", "(B, 3, H, W) with B, H, W > 0 (or 1 channel)", tuple(image.shape))
    image = image.float().cpu()
    low, high = float(image.min()), float(image.max())
    if low < 0 or high > 1:
        raise UsageError(f"image values must be in [0, 1], got {low:.3g} to {high:.3g} (divide 8-bit values by 255)")
    box = options.get("mask_box")
    if box is not None:
        if mask is not None:
            raise UsageError("give mask or mask_box, not both")
        x, y, w, h = parse_box(",".join(map(str, _sequence(box, "mask_box"))))
        mask = torch.zeros(image.shape[0], 1, *image.shape[-2:])
        mask[..., max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = 1
    built = pipeline.build(options.get("device"), options.get("precision"))
    return built.apply(image, mask, tile=options.get("tile", "auto"))
