"""Conversions between decoded pictures (NumPy, HWC) and the one tensor
contract: ``(B, C, H, W)`` float in [0, 1], RGB."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from imgedit.errors import ShapeError, UsageError
from imgedit.masks import HOLE_ABOVE, labels_not_holes

__all__ = [
    "IMAGE_RANGE",
    "center_square",
    "check_image",
    "check_unit_range",
    "copy_if_shared",
    "grid",
    "interpolate",
    "mask_to_tensor",
    "to_numpy",
    "to_tensor",
    "value_range",
    "write_tensor",
]


def check_image(image: torch.Tensor, what: str = "image") -> None:
    """Raise :class:`ShapeError` unless ``image`` is a float (B, C, H, W) tensor."""
    if not isinstance(image, torch.Tensor):
        raise ShapeError(what, "a torch.Tensor", type(image).__name__)
    if image.ndim != 4:
        raise ShapeError(what, "shape (B, C, H, W)", tuple(image.shape))
    if not image.is_floating_point():
        raise ShapeError(what, "a floating-point tensor", image.dtype)


# Resizes that PyTorch's MPS backend lacks or limits: area averaging only
# between sizes that divide exactly ("Adaptive pool MPS: input sizes must be
# divisible by output sizes"), bicubic before torch 2.6, and antialiased
# bilinear. They run on the CPU and the result goes back: a resize is small
# work beside the model's, and a photo of any size must work.
_CPU_RESIZE_DEVICES = ("mps",)


def interpolate(t: torch.Tensor, size: tuple[int, int], mode: str, **options: Any) -> torch.Tensor:
    """:func:`torch.nn.functional.interpolate` to ``size`` that works on every
    device: the modes MPS lacks or limits are computed on the CPU there."""
    if t.device.type in _CPU_RESIZE_DEVICES and (mode in ("area", "bicubic") or options.get("antialias")):
        return torch.nn.functional.interpolate(t.cpu(), size=size, mode=mode, **options).to(t.device)
    return torch.nn.functional.interpolate(t, size=size, mode=mode, **options)


# Values an image passed to a model may hold: a little overshoot (a resize's
# ringing) is fine; a 0-255 scale is not.
IMAGE_RANGE = (-0.5, 1.5)


def value_range(t: torch.Tensor) -> tuple[float, float]:
    """The least and the greatest value of ``t`` (both NaN where it holds a
    NaN), with one device sync. amin and amax, not aminmax: aminmax copies a
    tensor laid out other than contiguous, as a decoded photo is (HWC
    underneath): 277 MB more at 24 MP, and 9x the time."""
    t = t.detach()
    low, high = torch.stack((t.amin(), t.amax())).tolist()
    return low, high


def check_unit_range(images: torch.Tensor, what: str = "images") -> None:
    """Refuse images far outside [0, 1] (:data:`IMAGE_RANGE`), or not finite.

    Raises:
        ShapeError: e.g. "images: expected values in [0, 1] (divide 8-bit values by 255), got 0 to 255".
    """
    if not images.numel():
        return
    low, high = value_range(images)
    if not (IMAGE_RANGE[0] <= low and high <= IMAGE_RANGE[1]):  # NaN fails both
        raise ShapeError(what, "values in [0, 1] (divide 8-bit values by 255)", f"{low:.4g} to {high:.4g}")


def copy_if_shared(x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``x``, or a copy of it where it shares memory with ``source``: an
    applier may edit its input in place, so the host gives it a copy
    where ``source`` is still read (an overlapping tile, a caller's
    tensor), and no copy where a conversion or a pad made one already."""
    if x.untyped_storage().data_ptr() != source.untyped_storage().data_ptr():
        return x
    return x.clone(memory_format=torch.contiguous_format)  # contiguous: an expanded view has one pixel for many


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> (1, C, H, W) float32 tensor in [0, 1].

    Float values are taken as they are; uint8 is scaled by 1/255 and uint16
    by 1/65535, so a decoded 8- or 16-bit array is the image contract's
    [0, 1] (not 0-255). The tensor is a channels-last view of the array
    when it is float32 (no copy: the array must not be changed while the
    tensor is in use); torch operations accept it like any other
    (1, C, H, W) tensor.

    Raises:
        ShapeError: not (H, W, C), or values of another type (a bool or
            int32 array has no scale to read it by).
    """
    if rgb.ndim != 3:
        raise ShapeError("array", "shape (H, W, C)", rgb.shape)
    return torch.from_numpy(_unit_float32(rgb)).permute(2, 0, 1).unsqueeze(0)


# What an integer pixel's full scale is, by its dtype: the rest are not pixels.
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _unit_float32(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 on the [0, 1] scale: float32 as it is (no
    copy), other floats converted, uint8 and uint16 divided by their full scale."""
    if values.dtype.kind == "f":
        return np.asarray(values, dtype=np.float32)
    scale = _FULL_SCALE.get(values.dtype)
    if scale is None:
        raise ShapeError("array", "float, uint8 or uint16 values", values.dtype)
    return values.astype(np.float32) / np.float32(scale)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 array (a view where possible).

    Values are not clamped here: the image writer clips to [0, 1] while it
    quantises, so clamping twice would only cost time.
    """
    check_image(image)
    if image.shape[0] != 1:
        raise ShapeError("image", "batch size 1", image.shape[0])
    return image[0].detach().float().cpu().permute(1, 2, 0).numpy()


def write_tensor(image: torch.Tensor, path: "str | Path", **options: Any) -> Path:
    """Write a ``(C, H, W)`` or ``(1, C, H, W)`` image in [0, 1] to ``path``
    with :func:`imgedit.imageio.write_image` (atomic; ``options`` are its
    keyword arguments: ``overwrite``, ``durable``, ``quality``...)."""
    from imgedit.imageio import Picture, write_image

    image = image[None] if image.ndim == 3 else image
    return write_image(Picture(rgb=np.ascontiguousarray(to_numpy(image))), path, **options)


def mask_to_tensor(mask: np.ndarray) -> torch.Tensor:
    """(H, W) hole mask -> (1, 1, H, W) float32 tensor, 1 = hole, 0 = kept.

    Values are read as a mask file is (white = hole): bool as it is, uint8
    and uint16 above half their range (:data:`imgedit.masks.HOLE_ABOVE`: a
    blurred edge's grey is not all hole), other integers nonzero (0/1
    labels), floats from 0.5.

    Raises:
        ShapeError: not an (H, W) array of bool, integer or float values.
        UsageError: a float mask with NaN or infinity (neither hole nor kept).
        MaskError: a uint8 or uint16 mask with values but none a hole (0/1 labels).
    """
    if mask.ndim != 2:
        raise ShapeError("mask", "shape (H, W)", mask.shape)
    hole = _hole(mask)
    if mask.dtype in (np.uint8, np.uint16) and not hole.any() and mask.any():  # 0/1 labels read as a mask file
        raise labels_not_holes(8 * mask.itemsize, "mask.astype(bool)")
    return torch.from_numpy(hole.astype(np.float32))[None, None]


def _hole(mask: np.ndarray) -> np.ndarray:
    """``mask`` as a bool array, True = hole (see :func:`mask_to_tensor`)."""
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype in (np.uint8, np.uint16):
        return mask > HOLE_ABOVE[8 * mask.itemsize]  # as from a mask file of that depth
    if mask.dtype.kind in "iu":
        return mask != 0
    if mask.dtype.kind != "f":
        raise ShapeError("mask", "bool, integer or float values", mask.dtype)
    if not np.isfinite(mask).all():
        raise UsageError("mask values must be finite, got NaN or infinity")
    return mask >= 0.5


def grid(images: torch.Tensor, columns: Optional[int] = None, gutter: int = 2) -> torch.Tensor:
    """``(N, 3, H, W)`` images -> one ``(3, H', W')`` contact sheet, row by row
    (``columns`` defaults to a near-square layout), white gutters."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    sheet = torch.ones(c, rows * (h + gutter) + gutter, columns * (w + gutter) + gutter, dtype=images.dtype, device=images.device)
    for k in range(n):
        y, x = gutter + (k // columns) * (h + gutter), gutter + (k % columns) * (w + gutter)
        sheet[:, y : y + h, x : x + w] = images[k]
    return sheet


def center_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centred square crop of ``(B, C, H, W)`` images in [0, 1], resized to
    ``size`` x ``size`` (area averaging when shrinking, bicubic when enlarging)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    square = images[..., y : y + s, x : x + s]
    if s == size:
        return square
    if s > size:
        return interpolate(square, (size, size), "area")
    return interpolate(square, (size, size), "bicubic", align_corners=False).clamp(0, 1)
