"""The Python API: the same pipelines and runner as the CLI.

    >>> import imgedit, torch
    >>> pipeline = imgedit.Pipeline.parse("denoise sigma=25 | inpaint")
    >>> image = torch.rand(1, 3, 64, 64)                           # (B, 3, H, W) in [0, 1]
    >>> hole = torch.zeros(1, 1, 64, 64); hole[..., 20:30, 20:30] = 1   # 1 = hole
    >>> imgedit.run(pipeline, image, mask=hole).shape
    torch.Size([1, 3, 64, 64])
    >>> import numpy as np
    >>> photo = np.full((48, 64, 3), 128, np.uint8)                 # (H, W, 3) uint8, as a notebook holds it
    >>> imgedit.run("denoise method=nlm sigma=5", photo).dtype      # the same kind, dtype and layout back
    dtype('uint8')
    >>> imgedit.run(pipeline, "photo.jpg", "clean.jpg", mask_box=(10, 10, 40, 40))  # doctest: +SKIP
    >>> summary = imgedit.run("denoise", "scans/", "clean/", recursive=True)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Union

from imgedit.errors import BatchError, ImgeditError, MaskError, ShapeError, UsageError
from imgedit.masks import HOLE_ABOVE, MaskOptions, labels_not_holes, parse_box
from imgedit.pipeline import Pipeline
from imgedit.output_plan import JournalsRead, leave_out_own_outputs
from imgedit.runner import FileResult, RunOptions, Summary, default_workers, run_files


def _options(output: Optional[Union[str, Path]], kwargs: dict[str, Any]) -> RunOptions:
    """The run's options, checked as the CLI checks them, before any image."""
    mask_names = {f.name for f in fields(MaskOptions)}
    run_names = {f.name for f in fields(RunOptions)} - {"output", "masks"}  # given as output=, and built here
    unknown = set(kwargs) - mask_names - run_names - {"recursive"}
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
    kwargs = _checked_as_cli(kwargs)
    chosen_masks = {k: v for k, v in kwargs.items() if k in mask_names}
    if chosen_masks.get("mask_box") is not None:
        chosen_masks["mask_box"] = parse_box(",".join(map(str, _sequence(chosen_masks["mask_box"], "mask_box"))))
    if chosen_masks.get("mask") is not None:
        if not isinstance(chosen_masks["mask"], (str, os.PathLike)):
            raise UsageError(f"mask: for files the mask is a mask file or folder (a str or Path), got "
                             f"{type(chosen_masks['mask']).__name__}; a mask tensor goes with a tensor image")
        chosen_masks["mask"] = Path(chosen_masks["mask"])
    chosen = {k: v for k, v in kwargs.items() if k in run_names}
    chosen.setdefault("workers", default_workers())
    return RunOptions(output=Path(output) if output is not None else None, masks=MaskOptions(**chosen_masks).checked(), **chosen)


#: The API's name of an option where the CLI's differs (``--format`` is ``out_format`` there).
_CLI_NAMES = {"name": "name_template", "format": "out_format", "invert": "invert_mask"}

#: The options whose type, range or choices the CLI's own option checks
#: (device, precision and tile: :func:`imgedit.output_plan.check_compute_options`).
_AS_CLI = ("recursive", "overwrite", "in_place", "fail_fast", "force", "retry_failed", "skip_failed", "fsync", "invert",
           "format", "quality", "workers", "depth", "color_tolerance", "dilate")


def _checked_as_cli(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with each value the CLI's option would refuse refused,
    and None for "not given" (the default) dropped."""
    cli = _cli_options()
    checked = dict(kwargs)
    for name in _AS_CLI:
        if name not in kwargs:
            continue
        if kwargs[name] is None:
            del checked[name]
        else:
            checked[name] = _as_cli(name, kwargs[name], cli[_CLI_NAMES.get(name, name)])
    return checked


@lru_cache(maxsize=1)
def _cli_options() -> dict[str, Any]:
    """The CLI's common and mask options by name, as click made them."""
    import click

    from imgedit.options import COMMON_OPTIONS, MASK_OPTIONS

    made = {}
    for option in COMMON_OPTIONS + MASK_OPTIONS:
        param = option(click.Command("probe")).params[0]
        made[param.name] = param
    made["depth"] = click.Option(["--depth"], type=click.IntRange(min=1))  # the API's own: the CLI has no --depth
    return made


def _as_cli(name: str, value: Any, param: Any) -> Any:
    """``value`` converted by the CLI's option ``param`` (its range or
    choices), or a UsageError; Python's loose truths are refused first:
    ``"no"`` is no False, and ``True`` no quality."""
    import click

    if getattr(param, "is_flag", False):
        fits = isinstance(value, bool)
    elif isinstance(param.type, click.IntRange):
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, str)
    if fits:
        try:
            return param.type.convert(value, param, None)
        except click.BadParameter:
            pass
    raise UsageError(f"{name} must be {_expected(param)}, got {value!r}")


def _expected(param: Any) -> str:
    import click

    kind = param.type
    if getattr(param, "is_flag", False):
        return "True or False"
    if isinstance(kind, click.IntRange):
        return f"an integer in [{kind.min}, {'any' if kind.max is None else kind.max}]"
    return "one of " + ", ".join(kind.choices)


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
    progress: Optional[Callable[[FileResult, int, int], None]] = None,
    **options: Any,
) -> Any:
    """Run ``pipeline`` on a tensor, a NumPy array, a PIL image, a file, a
    folder or a list of those.

    Args:
        pipeline: a :class:`Pipeline` or its text form.
        target: a ``(B, 3, H, W)`` float tensor in [0, 1] (``(B, 1, H, W)``
            gray is taken as RGB; float16, bfloat16 and float64 are computed
            in float32); a NumPy array ``(H, W)`` gray, ``(H, W, 3)`` RGB or
            ``(H, W, 4)`` RGBA, of uint8 (0-255), uint16 (0-65535) or float
            (0-1); a PIL image (L, LA, RGB, RGBA, I;16, or a mode Pillow
            converts to RGB: P, 1, CMYK...); or a path / glob / folder /
            list of them, processed exactly like the CLI does. Values
            somewhat beyond [0, 1] (unclipped noise) are taken, up to
            :data:`imgedit.tensor.IMAGE_RANGE` (-0.5 to 1.5).
        output: output file or folder for paths (default: beside the input).
            A folder keeps the resume journal there, as the CLI does, and
            each call reads it: a service writing many results into one
            folder should name each output file instead (one input written
            to a named file keeps no journal).
            Threads may call this at once; for processes, use the "spawn"
            start method (a process forked after torch or OpenCV ran may hang).
        mask: for a tensor, the ``(B, 1, H, W)`` hole mask (``(1, 1, H, W)``
            for every image), read as a mask file is (white = hole): bool,
            uint8 above 127, uint16 above 32767, other integers nonzero,
            floats from 0.5; an
            ``(H, W)`` NumPy array read so, or a PIL image read as a mask
            file (gray above half range = hole), serves a tensor, an array
            or a PIL image alike; for paths, a mask file or folder, as
            ``--mask``. An array's or PIL image's alpha is not a hole here
            (unlike the CLI's): give the mask.
        progress: for paths, called in the calling thread as each image
            ends, in order, with ``(result, count, total)``: its
            :class:`FileResult`, how many have ended, and how many the run
            was given (a progress bar's ``update``). An exception it raises
            stops the run as Ctrl-C does (the writes in flight end and the
            journal is saved, so the same call resumes) and is raised from
            here.
        **options: any :class:`RunOptions` or :class:`MaskOptions` field
            (``device``, ``tile``, ``overwrite``, ``mask_box``, ...) and
            ``recursive``; for a tensor only ``device``, ``precision``,
            ``tile`` and ``mask_box``.

    Returns:
        For a tensor, the result: on the CPU, in the input's dtype, with 3
        channels (a gray input too), contiguous and holding only its own
        values, never requiring grad. The operations
        are not differentiable: they run without autograd (no graph is
        built for an input that requires grad) and give no gradient back.
        A stage that makes several results (``inpaint samples=K``) gives
        them side by side, ``(B, 3, H, K * W)``: split them with
        ``result.unflatten(-1, (K, W))`` (``(B, 3, H, K, W)``) or
        ``result.chunk(K, dim=-1)``.
        For a NumPy array, a new array of its dtype (integers rounded and
        clipped; floats, as a tensor's, not clipped) and its layout: RGB(A)
        as given; gray ``(H, W)`` where the result's channels agree to one
        8-bit level (as a gray file's result is written gray), else
        ``(H, W, 3)``. The alpha channel comes back unchanged (once per
        fill of ``samples=K``). For a PIL image, a PIL image of its mode
        by the same rules (other modes as Pillow reads them: L, LA, RGB or
        RGBA; an I;16 image whose result has colour as 8-bit RGB: Pillow
        has no 16-bit colour).
        For paths, a :class:`Summary`.

    Raises:
        UsageError: bad pipeline, target or options (checked as the CLI
        checks its options), image values that are not finite or beyond
        -0.5 to 1.5 (the message says to divide by 255 where the values
        look 8-bit), a stage that needs a mask without one, or a mask
        tensor with paths; MaskError: a ``mask_box`` outside the image, or
        a mask with an empty hole for a stage that fills one;
        ShapeError: a tensor that is not a float image (or holds no data:
        the meta device), an array of another dtype (bool is a mask) or
        number of channels, a PIL image of 32-bit samples (modes I, F), or
        a mask of the wrong shape; DeviceError: a
        ``device`` or ``precision`` that is not available; WeightsError: a
        model's weights are missing or do not verify; PluginError: a stage
        failed on an error that is not imgedit's own (a plugin's bug), naming
        the stage and its plugin (in a run over paths, a stage that could
        not start is raised so, with the summary on it as ``.summary``: no
        image was processed); BatchError: some files failed, or an
        input folder could not be read and its images were left out (the
        summary is on the exception as ``.summary``); KeyboardInterrupt:
        Ctrl-C (SIGINT) stopped a run over paths, after the writes in flight
        ended (each output is whole or absent, the journal saved; the
        summary is on it as ``.summary``, and the same call resumes).
    """
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    elif not isinstance(pipeline, Pipeline):
        raise UsageError(f"pipeline must be a Pipeline or its text, got {type(pipeline).__name__}")
    import torch

    if isinstance(target, torch.Tensor) or _is_picture(target):
        if progress is not None:  # said, rather than never called: the caller waits on it
            raise UsageError("progress is for paths: it hears of each file as it ends; an image in memory is one call")
        if isinstance(target, torch.Tensor):
            return _run_tensor(pipeline, target, output, mask, options)
        return _run_picture(pipeline, target, output, mask, options)
    from imgedit.inputs import scan_inputs

    targets = _paths(target)
    if mask is not None:
        options["mask"] = mask
    run_options = _options(output, options)
    recursive = options.get("recursive") or False  # checked by _options: True, False or None
    scan = scan_inputs([str(t) for t in targets], recursive=recursive)
    named = frozenset(Path(t) for t in targets if Path(t).is_file())
    journals = JournalsRead()
    items, own = leave_out_own_outputs(pipeline, items=scan.files, options=run_options, named=named, journals=journals)
    summary: Summary = run_files(pipeline, items, run_options, journals=journals,
                                 on_result=None if progress is None else _counting(progress, len(items)))
    summary.take_scan(scan, own)
    if summary.interrupted:  # the writes in flight ended and the journal is saved; the host's Ctrl-C goes on
        stopped = KeyboardInterrupt()
        stopped.summary = summary  # type: ignore[attr-defined]
        raise stopped
    if isinstance(summary.build_error, ImgeditError):  # a model that would not load: no image was processed
        summary.build_error.summary = summary  # type: ignore[attr-defined]
        raise summary.build_error
    if summary.failed or summary.unreadable:
        error = BatchError(f"{len(summary.failed)} of {len(summary.results)} images failed: {summary.failed[0].error}"
                           if summary.failed else summary.unreadable_note())
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary


def _is_picture(target: Any) -> bool:
    from imgedit import arrays

    return arrays.is_picture(target)


def _counting(progress: Callable[[FileResult, int, int], None], total: int) -> Callable[[FileResult], None]:
    """``progress`` told the count so far and the total. Once it has raised
    it is not called again: the runner still ends the writes in flight, and
    hearing of them would raise again in the middle of that."""
    count, failed = 0, False

    def on_result(result: FileResult) -> None:
        nonlocal count, failed
        count += 1
        if not failed:
            try:
                progress(result, count, total)
            except BaseException:
                failed = True
                raise

    return on_result


def _paths(target: Any) -> list[Union[str, Path]]:
    """The path targets: one, or a non-empty list of them."""
    targets = [target] if isinstance(target, (str, Path)) else target
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, (str, Path)) for t in targets):
        got = type(target).__name__ if not isinstance(targets, (list, tuple)) else "a list holding " + ", ".join(
            sorted({type(t).__name__ for t in targets if not isinstance(t, (str, Path))}))
        raise UsageError(f"target must be a (B, 3, H, W) tensor, a NumPy array or PIL image, or paths (a str, a Path "
                         f"or a list of them); got {got}")
    if not targets:
        raise UsageError("no images: the list of targets is empty")
    return list(targets)


def _run_tensor(pipeline: Pipeline, image: Any, output: Any, mask: Any, options: dict[str, Any]) -> Any:
    _check_in_memory_options(output, options, "a tensor")
    given_dtype = image.dtype
    result = _apply(pipeline, _tensor_image(image), mask, options).to(given_dtype)  # computed in float32
    return _owning(result)


def _run_picture(pipeline: Pipeline, picture: Any, output: Any, mask: Any, options: dict[str, Any]) -> Any:
    """A NumPy array or PIL image edited, and given back in its kind (see :mod:`imgedit.arrays`)."""
    from imgedit import arrays

    _check_in_memory_options(output, options, arrays.kind_of(picture))
    image, layout = arrays.from_picture(picture)  # a fresh float32 tensor: no copy to make
    _check_image_values(image)
    return arrays.to_picture(_apply(pipeline, image, mask, options), layout)


def _check_in_memory_options(output: Any, options: dict[str, Any], what: str) -> None:
    """Refuse what only a run over paths takes; ``what`` names the target ("a tensor")."""
    if output is not None:
        raise UsageError(f"output is for paths; for {what} the result is returned")
    unknown = sorted(set(options) - set(TENSOR_OPTIONS))
    if unknown:
        raise UsageError(f"option(s) {', '.join(unknown)} do not apply to {what} "
                         f"(those that do: {', '.join(TENSOR_OPTIONS)})")


def _apply(pipeline: Pipeline, image: Any, mask: Any, options: dict[str, Any]) -> Any:
    """The pipeline's float32 result for ``(B, 3, H, W)`` ``image``, built on the options' device."""
    mask = _tensor_mask(pipeline, image, mask, options.get("mask_box"))
    built = pipeline.build(options.get("device"), options.get("precision"))
    return built.apply(image, mask, tile=options.get("tile", "auto"))


def _owning(result: Any) -> Any:
    """``result`` contiguous and holding only its own values: a tiled stage
    gives back a view into its padded buffer, which ``.view`` refuses and
    which would keep the whole buffer alive."""
    if result.is_contiguous() and result.untyped_storage().nbytes() == result.numel() * result.element_size():
        return result
    import torch

    return result.clone(memory_format=torch.contiguous_format)


def _tensor_image(given: Any) -> Any:
    """The caller's tensor as the pipeline takes it: ``(B, 3, H, W)``
    float32 on the CPU, finite, in :data:`~imgedit.tensor.IMAGE_RANGE`,
    and never the caller's own memory (an applier may edit its input in place).

    Raises:
        ShapeError: not a float (B, 3, H, W) (or gray) tensor, or one on
            the meta device (no data to edit).
        UsageError: values that are not finite or far outside [0, 1].
    """
    from imgedit.tensor import check_image, copy_if_shared

    check_image(given)
    _check_has_data(given, "image")
    given = given.detach()  # the operations are not differentiable: no graph from the caller's tensor
    image = given.expand(-1, 3, -1, -1) if given.shape[1] == 1 else given  # gray as RGB, as files are read
    if image.shape[1] != 3 or min(image.shape) == 0:
        raise ShapeError("image", "(B, 3, H, W) with B, H, W > 0 (or 1 channel)", tuple(image.shape))
    image = copy_if_shared(image.float().cpu(), given)
    _check_image_values(image)
    return image


#: A greatest value above this is taken for an 8-bit scale (0-255), and the
#: error says to divide; below it, for an image somewhat out of range.
_LIKELY_8BIT = 2.0


def _check_image_values(image: Any) -> None:
    """Refuse values that are not finite, or beyond :data:`~imgedit.tensor.IMAGE_RANGE`:
    unclipped noise (a denoising benchmark's input) overshoots [0, 1] and is
    taken, as the rest of imgedit takes it.

    Raises:
        UsageError: e.g. "image values must be in [0, 1] (-0.5 to 1.5 taken,
            for unclipped noise), got 0 to 255 (divide 8-bit values by 255)".
    """
    from imgedit.tensor import IMAGE_RANGE, value_range

    low, high = value_range(image)  # a NaN makes both NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError("image values must be finite numbers in [0, 1], got NaN or infinity")
    if low < IMAGE_RANGE[0] or high > IMAGE_RANGE[1]:
        hint = " (divide 8-bit values by 255)" if high > _LIKELY_8BIT else ""
        raise UsageError(f"image values must be in [0, 1] ({IMAGE_RANGE[0]:g} to {IMAGE_RANGE[1]:g} taken, for "
                         f"unclipped noise), got {low:.3g} to {high:.3g}{hint}")


def _check_has_data(tensor: Any, what: str) -> None:
    """Refuse a meta tensor (a shape without values) before copying it
    fails as torch's NotImplementedError."""
    if tensor.is_meta:
        raise ShapeError(what, "a tensor with values (on the CPU or a GPU)", f"a tensor on the {tensor.device} device")


def _tensor_mask(pipeline: Pipeline, image: Any, mask: Any, box: Any) -> Any:
    """The ``(B, 1, H, W)`` float hole mask (1 = hole) from ``mask`` or
    ``box``, or None; refused before any stage runs when a stage needs
    one and there is none."""
    if box is not None and mask is not None:
        raise UsageError("give mask or mask_box, not both")
    if box is not None:
        mask = _box_mask(image, box)
    elif mask is not None:
        mask = _hole_mask(image, mask)
    needing = next((i for i, s in enumerate(pipeline.stages, 1) if s.operation.capabilities.needs_mask), None)
    if mask is not None and needing is None:  # as the CLI says of its mask options: a mistake, most likely
        from imgedit.operations import warn_once

        warn_once("ignoring %s: no stage of the pipeline uses a mask", "mask_box" if box is not None else "mask")
        return None
    if mask is None and needing is not None:
        name = pipeline.stages[needing - 1].operation.name
        raise UsageError(f"stage {needing} ({name}) needs a mask: pass mask= (a (B, 1, H, W) tensor, 1 = hole) "
                         "or mask_box=(x, y, w, h)")
    if needing is not None:  # an empty hole is refused, as an empty mask file is: not the image back unedited
        empty = [i for i, holes in enumerate(mask.flatten(1).any(1).tolist(), 1) if not holes]
        if empty:
            which = "" if len(empty) == mask.shape[0] else f" of image {empty[0]} of {mask.shape[0]}"
            raise MaskError(f"mask: the hole{which} is empty (no pixel is 1): there is nothing to fill")
    return mask


def _box_mask(image: Any, box: Any) -> Any:
    """``mask_box`` as a mask, clipped to the image; a box outside it is
    refused, as the CLI's ``--mask-box`` is."""
    import torch

    x, y, w, h = parse_box(",".join(map(str, _sequence(box, "mask_box"))))
    height, width = image.shape[-2:]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if x0 >= x1 or y0 >= y1:
        raise MaskError(f"mask_box {x},{y},{w},{h} lies outside the {width}x{height} image")
    mask = torch.zeros(image.shape[0], 1, height, width)
    mask[..., y0:y1, x0:x1] = 1
    return mask


def _hole_mask(image: Any, mask: Any) -> Any:
    """The caller's mask as the guide promises plugins: float, 1 = hole,
    0 = kept, read as the CLI reads a mask file (white = hole): bool as
    it is, uint8 above 127 (0-255, as an 8-bit file), uint16 above 32767,
    other integers nonzero (0/1 labels), floats from 0.5. An (H, W) NumPy array is read
    so too, a PIL image as a mask file (:func:`imgedit.arrays.mask_tensor`).
    A fresh tensor, never the caller's: an applier may edit its mask in place.

    Raises:
        ShapeError: not a tensor of shape (B, 1, H, W) or (1, 1, H, W), nor
            an (H, W) array or PIL image of the image's size.
        UsageError: a float mask with NaN or infinity.
        MaskError: a mask with nonzero values but no hole (0/1 in a uint8 mask).
    """
    import torch

    from imgedit import arrays

    b, _, h, w = image.shape
    expected = f"a (B, 1, H, W) = {(b, 1, h, w)} tensor, or (1, 1, H, W) for every image"
    if arrays.is_picture(mask):  # an (H, W) array or a PIL image: one mask for every image
        mask = arrays.mask_tensor(mask, (h, w))
    if not isinstance(mask, torch.Tensor):
        raise ShapeError("mask", expected, type(mask).__name__)
    if mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (h, w) or mask.shape[0] not in (1, b):
        raise ShapeError("mask", expected, tuple(mask.shape))
    _check_has_data(mask, "mask")
    mask = mask.detach().cpu()
    if mask.is_floating_point() and not bool(torch.isfinite(mask).all()):
        raise UsageError("mask values must be finite, got NaN or infinity")
    hole = _hole(mask)
    if not bool(hole.any()) and bool(mask.any()):  # values given, none a hole: read on another scale than meant
        if mask.dtype in (torch.uint8, getattr(torch, "uint16", None)):
            raise labels_not_holes(8 * mask.element_size(), "mask.bool()")
        raise MaskError("mask: no pixel is a hole: a float mask is a hole from 0.5")
    return hole.expand(b, 1, h, w).to(torch.float32, memory_format=torch.contiguous_format)


def _hole(mask: Any) -> Any:
    """``mask`` as a bool tensor, True = hole (see :func:`_hole_mask`)."""
    import torch

    if mask.dtype == torch.bool:
        return mask
    if mask.dtype == torch.uint8:
        return mask > HOLE_ABOVE[8]  # as from a mask file of that depth
    if mask.dtype == getattr(torch, "uint16", None):  # torch has few uint16 ops
        return mask.to(torch.int32) > HOLE_ABOVE[16]
    if not mask.is_floating_point():
        return mask != 0
    return mask >= 0.5
