"""Training data for any plugin: a pool of clean images held in memory,
random patches drawn from it with flips and rotations, or whole images as
squares of one size.

All randomness comes from one ``torch.Generator`` that the caller owns, so a
checkpoint that stores the generator's state resumes the exact same stream
of patches. Images are read with imgedit's own reader (EXIF orientation,
16-bit) and kept as uint8 to keep the pool small.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from imgedit.errors import ImgeditError, UsageError
from imgedit.imageio import read_image
from imgedit.inputs import expand_inputs
from imgedit.options import TRAINING_PHOTO_SIDE

__all__ = ["ImagePool", "dihedral", "luminance"]

logger = logging.getLogger("imgedit")

# Photos larger than this (longest side) are downscaled by an integer factor
# with area averaging: that removes most camera noise and JPEG artefacts, so
# the training targets are clean, and keeps the pool small.
MAX_SIDE = TRAINING_PHOTO_SIDE


def _load_rgb8(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; grayscale files are repeated to 3 channels."""
    import cv2

    picture = read_image(path)
    rgb = picture.rgb  # (H, W, 3) float32 in [0, 1]
    factor = int(np.ceil(max(rgb.shape[:2]) / MAX_SIDE))
    if factor > 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] // factor, rgb.shape[0] // factor), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray((rgb * 255.0 + 0.5).clip(0, 255).astype(np.uint8))


class ImagePool:
    """Clean training images in memory.

    Args:
        sources: files, folders or globs (as on the command line); folders are searched recursively.
        min_side: images smaller than this on either side are skipped (one warning counts them).
        what: what the images are, for the error message.

    Raises:
        UsageError: no usable image was found.
    """

    def __init__(self, sources: Iterable[str | Path], min_side: int = 64, what: str = "training images"):
        paths = sorted({item.path for item in expand_inputs([str(s) for s in sources], recursive=True)})
        self.what = what
        self.paths: list[Path] = []
        self.images: list[np.ndarray] = []
        too_small: list[Path] = []
        for path in paths:
            try:
                image = _load_rgb8(path)
            except ImgeditError as exc:  # one bad file must not stop a long training run
                logger.warning("skipping %s: %s", path, exc)
                continue
            if min(image.shape[:2]) >= min_side:
                self.paths.append(path)
                self.images.append(image)
            else:
                too_small.append(path)
        if not self.images:
            raise UsageError(f"no {what} of at least {min_side}x{min_side} px in {', '.join(map(str, sources))}")
        if too_small:  # once, with a count: a folder of thousands of thumbnails must not flood the terminal
            logger.warning("skipping %d image%s smaller than %dx%d px (e.g. %s)", len(too_small),
                           "s" if len(too_small) > 1 else "", min_side, min_side, too_small[0])

    def __len__(self) -> int:
        return len(self.images)

    def split(self, n_val: int) -> tuple["ImagePool", "ImagePool"]:
        """(train, validation): every k-th image goes to validation, n_val in all."""
        n_val = min(n_val, len(self) // 2)
        step = max(1, len(self) // max(n_val, 1))
        val_idx = set(range(0, len(self), step)[:n_val]) if n_val else set()
        return self.subset([i for i in range(len(self)) if i not in val_idx]), self.subset(sorted(val_idx))

    def subset(self, idx: list[int]) -> "ImagePool":
        """The images at positions ``idx`` (shared, not copied)."""
        pool = object.__new__(ImagePool)
        pool.what = self.what
        pool.paths = [self.paths[i] for i in idx]
        pool.images = [self.images[i] for i in idx]
        return pool

    def patches(self, n: int, size: int, generator: torch.Generator, gray_prob: float = 0.0,
                zoom: float = 1.0) -> torch.Tensor:
        """``n`` random ``size`` x ``size`` patches, (n, 3, size, size) float in [0, 1].

        Each patch comes from a random image, at a random position, under one
        of the 8 flips/rotations; with probability ``gray_prob`` it is turned
        to luminance (repeated on 3 channels), so one model serves grayscale.
        With ``zoom`` > 1 each patch is a square up to ``zoom`` times wider
        (log-uniform, as far as the image allows) scaled down to ``size``:
        the view of a model that works on photos at a fraction of full size.
        """
        out = torch.empty(n, 3, size, size)
        r = torch.rand(n, 4 if zoom <= 1 else 5, generator=generator)  # no extra draw: zoom 1 repeats old runs
        picks = torch.randint(len(self.images), (n,), generator=generator)
        for k in range(n):
            image = self.images[int(picks[k])]
            h, w = image.shape[:2]
            wanted = size if zoom <= 1 else round(size * zoom ** float(r[k, 4]))
            s = min(wanted, h, w)
            y, x = int(r[k, 0] * (h - s + 1)), int(r[k, 1] * (w - s + 1))
            out[k] = dihedral(_crop(image, y, x, s, size), int(r[k, 2] * 8))
            if r[k, 3] < gray_prob:
                out[k] = luminance(out[k])
        return out

    def warn_smaller_than(self, size: int, fate: str) -> None:
        """One warning, with a count, for the images smaller than ``size`` px
        on a side, saying their ``fate``: a model trained on them learns the blur."""
        small = [path for path, image in zip(self.paths, self.images) if min(image.shape[:2]) < size]
        if small:
            logger.warning("%d of the %d %s %s smaller than %dx%d px, %s (e.g. %s)", len(small), len(self.images),
                           self.what, "is" if len(small) == 1 else "are", size, size, fate, small[0])

    def center_crops(self, size: int) -> torch.Tensor:
        """One centre crop per image, (N, 3, size, size): a fixed validation batch."""
        crops = []
        for image in self.images:
            h, w = image.shape[:2]
            s = min(size, h, w)
            crops.append(_crop(image, (h - s) // 2, (w - s) // 2, s, size))
        return torch.stack(crops)

    def squares(self, size: int) -> torch.Tensor:
        """Every image as a ``size`` x ``size`` square: the centred square
        crop, resized with area averaging (bicubic when enlarging).
        Returns ``(N, 3, size, size)`` uint8, to keep a large pool small."""
        import cv2

        self.warn_smaller_than(size, "scaled up to it (blurred)")
        out = torch.empty(len(self), 3, size, size, dtype=torch.uint8)
        for k, image in enumerate(self.images):
            h, w = image.shape[:2]
            s = min(h, w)
            y, x = (h - s) // 2, (w - s) // 2
            square = image[y : y + s, x : x + s]
            if s != size:
                square = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)
            out[k] = torch.from_numpy(np.ascontiguousarray(square)).permute(2, 0, 1)
        return out


def _crop(image: np.ndarray, y: int, x: int, s: int, size: int) -> torch.Tensor:
    """The ``s`` x ``s`` square at (y, x) of a uint8 (H, W, 3) image as a
    (3, size, size) float tensor in [0, 1]; a small image is stretched to
    ``size``, a large one scaled down (area averaging, as the inpainter does)."""
    crop = torch.from_numpy(image[y : y + s, x : x + s]).permute(2, 0, 1).float() / 255.0
    if s != size:
        crop = torch.nn.functional.interpolate(crop[None], size=(size, size), mode="bilinear" if s < size else "area")[0]
    return crop


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/rotations of a (C, H, W) image (k in 0..7)."""
    if k >= 4:
        image = image.flip(-1)
    return torch.rot90(image, k % 4, dims=(-2, -1))


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (3, H, W) gray (BT.601 luma repeated on 3 channels)."""
    y = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    return y.expand(3, -1, -1).clone()
