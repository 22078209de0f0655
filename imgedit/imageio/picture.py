"""The :class:`Picture` dataclass: pixels plus the metadata needed to write them back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from imgedit.errors import ShapeError


def as_rgb(rgb: np.ndarray, where: str) -> np.ndarray:
    """``rgb`` as float32, checked to be a non-empty (H, W, 3) array.

    Raises:
        ShapeError: naming ``where`` when the shape is wrong.
    """
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ShapeError(where, "a non-empty (H, W, 3) array", rgb.shape)
    return rgb


@dataclass(frozen=True)
class SourceEncoding:
    """How the source file was compressed, for writing the same format back alike
    when the caller asks for no particular quality (``quality=None``).

    Attributes:
        lossless: a lossless WebP (VP8L); it is written back lossless.
        jpeg_quality: a JPEG's quality (1-100) estimated from its quantisation tables.
        subsampling: a JPEG's chroma subsampling as Pillow names it
            (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0), or None.
        progressive: a progressive JPEG.
    """

    lossless: bool = False
    jpeg_quality: Optional[int] = None
    subsampling: Optional[int] = None
    progressive: bool = False

    def is_lossy(self, format: Optional[str]) -> bool:
        """Whether a file of ``format`` encoded like this blurred its pixels
        (a colour painted on a JPEG bleeds past its edge)."""
        return format in ("JPEG", "MPO") or format == "WEBP" and not self.lossless


@dataclass
class Picture:
    """An image plus the metadata needed to write it back without loss.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], RGB; grayscale sources are
            replicated to 3 channels.
        alpha: (H, W) float32 in [0, 1], or None.
        format: Pillow format name of the source ("JPEG", "PNG", ...).
        bit_depth: bits per channel of the source, 8 or 16.
        grayscale: the source was single-channel; it is written back so.
        exif: raw EXIF (starting ``Exif\\0\\0``) with Orientation reset to 1,
            because the orientation is already applied to the pixels, and
            without the source's thumbnail (IFD1).
        icc_profile: raw ICC profile, or None.
        text: PNG tEXt/iTXt/zTXt chunks and similar text (JPEG comment as
            "Comment", XMP as "XML:com.adobe.xmp", TIFF description...).
        dpi: (x, y) dots per inch, or None.
        path: where the picture was read from, if anywhere.
        frames: frames (pages) in the source file; only the first is read.
            A camera JPEG's previews (MPO "Large Thumbnail" images) are not
            counted: ``previews`` says how many there are.
        encoding: how the source (of ``format``) was compressed.
        color_chunks: a PNG source's colour-space chunks (gAMA, cHRM,
            sRGB) by chunk type, as stored; written back to PNG, where a
            gamma-1.0 file without its gAMA would show far too dark.
    """

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    format: str = "PNG"
    bit_depth: int = 8
    grayscale: bool = False
    exif: Optional[bytes] = None
    icc_profile: Optional[bytes] = None
    text: dict[str, str] = field(default_factory=dict)
    dpi: Optional[tuple[float, float]] = None
    path: Optional[Path] = None
    frames: int = 1
    previews: int = 0
    encoding: SourceEncoding = field(default_factory=SourceEncoding)
    color_chunks: dict[str, bytes] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.rgb.shape[0])

    def with_rgb(self, rgb: np.ndarray) -> "Picture":
        """Returns a copy with new pixels and the same metadata.

        If the size changed, the alpha plane follows (:func:`fit_plane`):
        repeated per panel of a side-by-side sheet, else resized (bilinear).

        Raises:
            ShapeError: ``rgb`` is not (H, W, 3).
        """
        rgb = as_rgb(rgb, "Picture.with_rgb")
        alpha = None if self.alpha is None else fit_plane(self.alpha, rgb.shape[:2])
        return dataclasses.replace(self, rgb=rgb, alpha=alpha, text=dict(self.text))


def fit_plane(plane: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-pixel (H, W) plane (alpha, a hole mask...) fitted to an image of ``shape`` (H', W').

    An image as tall as the plane and a whole number of times as wide is a
    sheet of panels side by side (``inpaint --samples K``): the plane is
    repeated once per panel, so each panel keeps its own transparency.
    Any other size: the plane is resized (bilinear, float32 in [0, 1]).

    Example:
        >>> fit_plane(np.eye(2, dtype=np.float32), (2, 4)).tolist()
        [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]
    """
    height, width = int(shape[0]), int(shape[1])
    if plane.shape == (height, width):
        return plane
    if plane.shape[0] == height and width % plane.shape[1] == 0:
        return np.tile(plane, (1, width // plane.shape[1]))
    import cv2  # lazy: keeps `import imgedit` cheap

    resized = cv2.resize(plane.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, 1.0)
