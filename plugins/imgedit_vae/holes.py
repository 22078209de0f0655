"""Random hole masks for training and evaluating inpainting, after LaMa's
scheme (Suvorov et al. 2021): irregular brush strokes, a random walk of
thick line segments, plus boxes, in three kinds (thin, medium, thick).
Masks covering more than ``max_hole`` of the image are redrawn.

Sizes are given for a 256-px image and scale with the shorter side, so a
512-px image gets strokes twice as wide. All randomness comes from the
caller's ``torch.Generator``: the same seed gives the same masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from imgedit.errors import UsageError


@dataclass(frozen=True)
class HoleKind:
    strokes: tuple[int, int]  # number of strokes, inclusive range
    vertices: int  # segments per stroke, at most
    max_len: float  # segment length, px at 256
    max_width: float  # brush width, px at 256
    box_prob: float  # chance of adding boxes too
    boxes: tuple[int, int]
    box_size: tuple[float, float]  # box side range, px at 256


KINDS: dict[str, HoleKind] = {
    "thin": HoleKind(strokes=(4, 50), vertices=4, max_len=40, max_width=10, box_prob=0.0, boxes=(0, 0), box_size=(0, 0)),
    "medium": HoleKind(strokes=(4, 5), vertices=4, max_len=100, max_width=50, box_prob=0.3, boxes=(1, 5), box_size=(10, 50)),
    "thick": HoleKind(strokes=(1, 5), vertices=4, max_len=200, max_width=100, box_prob=0.3, boxes=(1, 3), box_size=(30, 150)),
}


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _draw(height: int, width: int, kind: HoleKind, generator: torch.Generator) -> np.ndarray:
    import cv2

    scale = min(height, width) / 256.0
    mask = np.zeros((height, width), np.uint8)
    for _ in range(_randint(generator, *kind.strokes)):
        x, y = _uniform(generator, 0, width), _uniform(generator, 0, height)
        for _ in range(_randint(generator, 1, kind.vertices)):
            angle = _uniform(generator, 0, 2 * math.pi)
            length = _uniform(generator, 10 * scale, max(10.0, kind.max_len) * scale)
            brush = max(1, int(_uniform(generator, 5 * scale, max(5.0, kind.max_width) * scale)))
            nx = min(max(x + length * math.cos(angle), 0), width - 1)
            ny = min(max(y + length * math.sin(angle), 0), height - 1)
            cv2.line(mask, (int(x), int(y)), (int(nx), int(ny)), 1, brush)
            x, y = nx, ny
    if kind.box_prob and float(torch.rand((), generator=generator)) < kind.box_prob:
        for _ in range(_randint(generator, *kind.boxes)):
            bw = int(_uniform(generator, *kind.box_size) * scale)
            bh = int(_uniform(generator, *kind.box_size) * scale)
            bx, by = _randint(generator, 0, max(0, width - bw)), _randint(generator, 0, max(0, height - bh))
            mask[by : by + bh, bx : bx + bw] = 1
    return mask


def random_hole_mask(
    height: int, width: int, kind: str, generator: torch.Generator, max_hole: float = 0.5, tries: int = 20
) -> torch.Tensor:
    """One random hole mask.

    Args:
        height, width: mask size in px.
        kind: ``"thin"``, ``"medium"`` or ``"thick"``.
        generator: random source.
        max_hole: masks covering more than this share of the image are redrawn.
        tries: redraws before the last mask is shrunk by erosion to fit.

    Returns:
        ``(1, H, W)`` float mask, 1 = hole, with at least one hole pixel
        (so on an image of under ``1 / max_hole`` pixels, one pixel covers
        more than ``max_hole``).

    Raises:
        UsageError: unknown ``kind``.
    """
    if kind not in KINDS:
        raise UsageError(f"hole kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for _ in range(tries):
        mask = _draw(height, width, KINDS[kind], generator)
        if 0 < mask.mean() <= max_hole:
            break
    else:
        mask = _shrink(mask, max_hole)
    return torch.from_numpy(mask).float()[None]


def _shrink(mask: np.ndarray, max_hole: float) -> np.ndarray:
    """Erode ``mask`` (H, W) uint8 until it covers at most ``max_hole``; one
    centre pixel if nothing is left."""
    import cv2

    kernel = np.ones((5, 5), np.uint8)
    for _ in range(max(mask.shape)):  # each pass takes 2 px off every side: bounded
        if mask.mean() <= max_hole:
            break
        eroded = cv2.erode(mask, kernel)
        if np.array_equal(eroded, mask):
            # cv2's default border never erodes a mask that fills the image (a tiny
            # one): count outside as known; only here, so earlier masks stay the same
            eroded = cv2.erode(mask, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        mask = eroded
    if not mask.any():
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = 1
    return mask
