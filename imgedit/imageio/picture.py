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
            because the orientation is already applied to the pixels.
        icc_profile: raw ICC profile, or None.
        text: PNG tEXt/iTXt/zTXt chunks and similar text (JPEG comment as
            "Comment", XMP as "XML:com.adobe.xmp", TIFF description...).
        dpi: (x, y) dots per inch, or None.
        path: where the picture was read from, if anywhere.
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

        If the size changed, the alpha plane is resized to match (bilinear).

        Raises:
            ShapeError: ``rgb`` is not (H, W, 3).
        """
        rgb = as_rgb(rgb, "Picture.with_rgb")
        alpha = self.alpha
        if alpha is not None and alpha.shape != rgb.shape[:2]:
            import cv2  # lazy: keeps `import imgedit` cheap

            size = (rgb.shape[1], rgb.shape[0])
            resized = cv2.resize(alpha.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
            alpha = np.clip(resized, 0.0, 1.0)
        return dataclasses.replace(self, rgb=rgb, alpha=alpha, text=dict(self.text))
