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

from imgedit.errors import BatchError, UsageError
from imgedit.masks import MaskOptions
from imgedit.pipeline import Pipeline
from imgedit.runner import RunOptions, Summary, default_workers, leave_out_own_outputs, run_files


def _options(output: Optional[Union[str, Path]], kwargs: dict[str, Any]) -> RunOptions:
    mask_names = {f.name for f in fields(MaskOptions)}
    run_names = {f.name for f in fields(RunOptions)}
    unknown = set(kwargs) - mask_names - run_names - {"recursive"}
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
    masks = MaskOptions(**{k: v for k, v in kwargs.items() if k in mask_names})
    chosen = {k: v for k, v in kwargs.items() if k in run_names}
    chosen.setdefault("workers", default_workers())
    return RunOptions(output=Path(output) if output is not None else None, masks=masks, **chosen)


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
        target: a ``(B, 3, H, W)`` tensor in [0, 1]; or a path / glob / folder /
            list of them, processed exactly like the CLI does.
        output: output file or folder for paths (default: beside the input).
        mask: for a tensor, the ``(B, 1, H, W)`` hole mask (1 = hole).
        **options: any :class:`RunOptions` or :class:`MaskOptions` field
            (``device``, ``tile``, ``overwrite``, ``mask_box``, ...) and
            ``recursive``.

    Returns:
        The result tensor (on the CPU) for a tensor; a :class:`Summary` for paths.

    Raises:
        UsageError: bad pipeline or options; BatchError: some files failed
        (the summary is on the exception as ``.summary``).
    """
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    import torch

    if isinstance(target, torch.Tensor):
        built = pipeline.build(options.get("device"), options.get("precision"))
        return built.apply(target.float().cpu(), mask, tile=options.get("tile", "auto"))
    from imgedit.inputs import expand_inputs

    targets = [target] if isinstance(target, (str, Path)) else list(target)
    recursive = bool(options.get("recursive", False))
    items = expand_inputs([str(t) for t in targets], recursive=recursive)
    run_options = _options(output, options)
    named = frozenset(Path(t) for t in targets if Path(t).is_file())
    items, _ = leave_out_own_outputs(pipeline, items, run_options, named)
    summary: Summary = run_files(pipeline, items, run_options)
    if summary.failed:
        error = BatchError(f"{len(summary.failed)} of {len(summary.results)} images failed: {summary.failed[0].error}")
        error.summary = summary  # type: ignore[attr-defined]
        raise error
    return summary
