"""NumPy arrays and PIL images for :func:`imgedit.run`: taken as the
``(1, 3, H, W)`` float tensor the pipeline edits, and the result given back
in the caller's kind, dtype and layout.

Imported by :mod:`imgedit.api` only when such a picture arrives, so
``import imgedit`` stays cheap; PIL is imported only for a PIL image.

    >>> import numpy as np
    >>> image, layout = from_picture(np.full((4, 6, 3), 255, np.uint8))
    >>> tuple(image.shape), float(image.max())
    ((1, 3, 4, 6), 1.0)
    >>> to_picture(image * 0.5, layout)[0, 0].tolist()   # rounded, as 127.5 -> 128
    [128, 128, 128]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from imgedit.errors import ShapeError, UsageError

#: What an image array may be: its shape and its sample types.
IMAGE_ARRAY = "an (H, W), (H, W, 3) or (H, W, 4) NumPy array"
_IMAGE_DTYPES = "uint8 (0-255), uint16 (0-65535) or float (0-1)"


@dataclass(frozen=True)
class Layout:
    """How a picture was given, to give its result back alike."""

    dtype: np.dtype  # the samples' type: uint8, uint16 or a float
    gray: bool  # one colour channel: (H, W), or PIL's L, LA and I;16
    alpha: Optional[np.ndarray]  # (H, W) in the input's samples, carried to the result unchanged
    pil: bool  # given as a PIL image: returned as one
    info: Optional[dict] = None  # a PIL image's colour profile, EXIF and dpi, for its result: saved, it is the same photo


def is_picture(value: Any) -> bool:
    """Whether ``value`` is a NumPy array or a PIL image (PIL is looked
    for only where the caller imported it: no PIL image exists otherwise)."""
    if isinstance(value, np.ndarray):
        return True
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(value, pil_image.Image)


def kind_of(picture: Any) -> str:
    """``picture``'s kind, for messages: "a NumPy array" or "a PIL image"."""
    return "a NumPy array" if isinstance(picture, np.ndarray) else "a PIL image"


def from_picture(picture: Any) -> tuple[torch.Tensor, Layout]:
    """``picture`` as a fresh ``(1, 3, H, W)`` float32 tensor, scaled to
    [0, 1] by its dtype (a float array as it is), and its :class:`Layout`.

    Raises:
        UsageError: an array that is not 2-D or 3-D (not an image).
        ShapeError: another number of channels, a dtype that is not an
            image's (bool is a mask), no pixels, or a PIL mode of 32-bit samples.
    """
    pil = not isinstance(picture, np.ndarray)
    samples, info = _pil_samples(picture) if pil else (picture, None)
    samples = _native(samples)
    _check_image_array(samples, allowed_channels=(2, 3, 4) if pil else (3, 4))  # 2: PIL's LA, gray + alpha
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    color = samples if channels == 1 else samples[..., : 3 if channels >= 3 else 1]
    alpha = samples[..., -1].copy() if channels in (2, 4) else None  # a copy: the caller may change theirs
    layout = Layout(dtype=samples.dtype, gray=channels <= 2, alpha=alpha, pil=pil, info=info)
    return torch.from_numpy(_unit_planes(color, samples.dtype))[None], layout


def _pil_samples(image: Any) -> tuple[np.ndarray, dict]:
    """A PIL image's samples as the file reader takes them: L, LA, RGB,
    RGBA or 16-bit gray; other modes (P, 1, CMYK...) converted to one of
    those. And the ``info`` its result keeps: the colour profile where it
    still applies (not after CMYK was converted), EXIF and dpi."""
    from imgedit.imageio.decode import pillow_pixels

    if image.mode in ("I", "F"):  # 32-bit samples: no white point is known
        raise ShapeError("image", "a PIL image of 8-bit or I;16 samples (convert to I;16, L or RGB)",
                         f"mode {image.mode}")
    samples, icc, _ = pillow_pixels(image)  # 16-bit gray as uint16
    info = {key: image.info[key] for key in ("exif", "dpi") if key in image.info}
    if icc:
        info["icc_profile"] = icc
    return samples, info


def _check_image_array(samples: np.ndarray, allowed_channels: tuple[int, ...]) -> None:
    if samples.ndim not in (2, 3):  # not an image: a batch, say, which goes as a tensor
        raise UsageError(f"target must be a (B, 3, H, W) tensor, {IMAGE_ARRAY}, a PIL image, or paths; got a NumPy "
                         f"array of shape {samples.shape} (for a (B, C, H, W) batch: torch.from_numpy(array))")
    if samples.ndim == 3 and samples.shape[2] not in allowed_channels:
        raise ShapeError("image", IMAGE_ARRAY, f"shape {samples.shape}")
    if samples.dtype == np.bool_:
        raise ShapeError("image", f"{_IMAGE_DTYPES} samples", "bool (a bool array is a mask: pass it as mask=)")
    if not (samples.dtype.kind == "f" or samples.dtype in (np.uint8, np.uint16)):
        raise ShapeError("image", f"{_IMAGE_DTYPES} samples", samples.dtype)
    if min(samples.shape[:2]) == 0:
        raise ShapeError("image", "an image with H, W > 0", f"shape {samples.shape}")


def _unit_planes(color: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` samples as a new ``(3, H, W)`` float32
    array in [0, 1] (gray repeated as RGB, as files are read)."""
    planes = color[None] if color.ndim == 2 else np.moveaxis(color, 2, 0)
    unit = np.empty((3, *planes.shape[1:]), np.float32)
    unit[...] = planes  # one pass: cast, and gray broadcast to 3 channels
    if dtype.kind == "u":
        unit /= np.float32(np.iinfo(dtype).max)
    return unit


def to_picture(result: torch.Tensor, layout: Layout) -> Any:
    """The pipeline's ``(1, 3, H, W')`` result in the input's kind and
    dtype: integers rounded and clipped, floats as they are (as a tensor's
    result). A gray input's result comes back gray where its channels
    agree to one 8-bit level (the rule a gray file's result is written by);
    the input's alpha comes back unchanged (repeated per panel of
    ``samples=K`` fills side by side). PIL has no 16-bit colour: a colour
    result of a 16-bit gray image comes back as 8-bit RGB."""
    from imgedit.imageio.encode import is_gray

    rgb = result[0].permute(1, 2, 0).numpy()  # (H, W', 3) float32, a view
    gray = layout.gray and is_gray(rgb)
    color = _gray_plane(rgb) if gray else rgb
    dtype = np.dtype(np.uint8) if layout.pil and not gray else layout.dtype
    samples = _samples(color, dtype)
    if layout.alpha is not None:
        samples = np.dstack((samples, _fitted_alpha(layout.alpha, samples.shape[:2], dtype)))
    return _pil_image(samples, layout.info or {}) if layout.pil else samples


def _gray_plane(rgb: np.ndarray) -> np.ndarray:
    """One plane for channels that agree: the first where they are equal
    (exact for an edit that keeps gray), else their mean."""
    first = rgb[..., 0]
    if np.array_equal(first, rgb[..., 1]) and np.array_equal(first, rgb[..., 2]):
        return first
    return rgb.mean(axis=2, dtype=np.float32)


def _samples(unit: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] floats as a new C-ordered array of ``dtype``: integers
    rounded (half to even) and clipped, not truncated."""
    if dtype.kind == "f":
        return unit.astype(dtype, order="C")
    top = np.float32(np.iinfo(dtype).max)
    scaled = np.multiply(unit, top, dtype=np.float32, order="C")
    np.clip(scaled, 0, top, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(dtype)


def _fitted_alpha(alpha: np.ndarray, size: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """The input's alpha for a result of ``size``: itself, once per panel
    of fills side by side, or (a result of another size) resized."""
    from imgedit.imageio.picture import fit_plane

    height, width = alpha.shape
    if size[0] == height and size[1] % width == 0:
        return np.tile(alpha, (1, size[1] // width)).astype(dtype, copy=False)  # the input's own values
    top = np.iinfo(alpha.dtype).max if alpha.dtype.kind == "u" else 1
    return _samples(fit_plane(alpha.astype(np.float32) / np.float32(top), size), dtype)


def _pil_image(samples: np.ndarray, info: dict) -> Any:
    """Samples as a PIL image: L, LA, RGB, RGBA, or I;16 for 16-bit gray;
    with the input's ``info`` (a gray profile only on a gray result: on
    RGB pixels it is invalid, as a file's is dropped)."""
    from PIL import Image

    from imgedit.imageio.profiles import profile_for_pixels

    if samples.dtype.kind == "u" and samples.dtype.itemsize == 2:
        samples = samples.astype(np.uint16, copy=False)  # native byte order: I;16, also for an I;16B input
    image = Image.fromarray(samples)
    image.info.update({key: value for key, value in info.items() if key != "icc_profile"})
    icc = profile_for_pixels(info.get("icc_profile"), gray=samples.ndim == 2 or samples.shape[2] == 2)
    if icc:
        image.info["icc_profile"] = icc
    return image


def mask_tensor(mask: Any, size: tuple[int, int]) -> torch.Tensor:
    """A NumPy or PIL mask for an image of ``size`` (H, W) as a ``(1, 1, H, W)``
    tensor that :func:`imgedit.api._hole_mask` reads as it reads a tensor:
    bool as it is, uint8 above 127, uint16 above 32767, other integers
    nonzero, floats from 0.5. A PIL mask is read as a mask file is: white = hole.

    Raises:
        ShapeError: not (H, W) of the image's size, or not numbers.
    """
    if not isinstance(mask, np.ndarray):
        from imgedit.masks import pil_hole

        mask = pil_hole(mask)
    hole = _native(mask)
    if hole.shape != tuple(size):
        raise ShapeError("mask", f"an (H, W) = {tuple(size)} array or PIL image, white = hole", f"shape {hole.shape}")
    if hole.dtype.kind not in "biuf":
        raise ShapeError("mask", "bool, integer or float values", hole.dtype)
    if hole.dtype.kind in "iu" and hole.dtype not in (np.uint8, np.uint16):
        hole = hole != 0  # 0/1 labels, in a type torch may not hold (uint32)
    if hole.dtype.kind == "f" and hole.dtype.itemsize > 8:
        hole = hole.astype(np.float64)  # float128: torch holds no such type
    # as it is, so that the tensor's reader says what it says of a tensor (a uint8 mask of 0/1: mask.bool())
    return torch.from_numpy(np.ascontiguousarray(hole))[None, None]


def _native(values: np.ndarray) -> np.ndarray:
    """``values`` in this machine's byte order (a big-endian ``>u2`` from
    PIL's I;16B or a FITS file), as the dtype checks and torch take them."""
    return values if values.dtype.isnative else values.astype(values.dtype.newbyteorder("="))
