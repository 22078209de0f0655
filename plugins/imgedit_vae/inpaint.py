"""Learned inpainting with the VAE (``inpaint.vae``).

Each hole is filled on a crop around it (the hole plus context), at a
working resolution where the hole is about as wide as the holes the model
was trained on; the fill is scaled back and pasted at full resolution, so a
24-megapixel photo with a small hole runs the model over a small crop only.
Holes whose context windows overlap share one crop. A hole thin beside its
crop (a scratch across a large photo) is filled in pieces, each on a crop
of its own small enough to be worked on at the scale the hole's width asks
for. A hole thinner than the training holes (a 1-px scratch) is shown to
the model grown by a pixel; only the user's hole is pasted.

Known pixels are copied from the input bit for bit. The seam is hidden
inside the hole: the colour offset between the fill and the known pixels
just outside the hole is spread smoothly into the hole's rim (worked out
on the crop scaled down where that spread is wide).

Without a seed the prior's mean is decoded (one deterministic fill); with a
seed, the deterministic fill plus one latent draw's departure from the
prior's mean (one of many plausible fills, the same for the same seed).
The deterministic fill is the mean of fills made at several working
scales (``WORK_RADII``), each over flipped and rotated copies of the crop
(:mod:`imgedit_vae.ensemble`): the model errs differently at each scale and
orientation, so the mean is nearer the truth. How many copies: ``ensemble``,
or by default as many as fit ``ENSEMBLE_BUDGET``. Near the hole's edge that
mean gives way to a fill made at full size (``FINE_RAMP``), which carries
on the known pixels' fine detail where the coarse scales blur it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from imgedit.errors import MaskError, ShapeError
from imgedit.tensor import interpolate
from imgedit_vae.degrade import is_gray
from imgedit_vae.ensemble import MAX_COPIES, dihedral_mean
from imgedit_vae.grain import add_grain, grain_level
from imgedit_vae.loading import load_vae
from imgedit_vae.model import InpaintVAE
from imgedit_vae.operations import INPAINT_MODEL_NAME, model_spec

# The model was trained on 128-px patches with LaMa's masks scaled to them:
# half-widths of 1-3 px (thin), up to 12 (medium) and 25 (thick). A hole
# wider than WORK_RADIUS is worked on at a scale that brings it down to that.
# Chosen on the training run's 8 validation photos (never trained on) with
# the 16 000-step model, thin/medium/thick whole-image PSNR: 8 px
# 30.55/27.93/23.35, 12 px 30.95/28.09/23.74, 16 px 31.11/28.32/23.71,
# 24 px 31.16/28.25/23.81. Larger costs time (a larger working crop).
WORK_RADIUS = 16.0
# The deterministic fill averages fills made at these radii (16 first: a
# seeded fill adds one draw made there). On the 8 validation photos with
# mask seeds 0-2, thin/medium/thick whole-image PSNR: 16 px alone
# 31.43/27.80/23.17; 16, 24, 32 px with 8 copies each 31.70/28.05/23.60; 16
# px with 8 copies 31.67/27.97/23.37; adding 48 px or a 5-radius set did not
# add to that.
WORK_RADII = (WORK_RADIUS, 24.0, 32.0)
# Model pixels (all scales, all copies) one crop's default fill may take,
# and the full-size fill's own budget (FINE_BUDGET, below). The model runs at
# about 0.55 M pixels a second on two AVX2 cores, so the two set the time of
# a fill. On the 8 validation photos (mask seeds 0-2), thin/medium/thick
# whole-image PSNR and the worst 512x512 fill on two AVX2 cores:
# 1 M + 1 M 31.700/28.293/23.813 in 3.06 s; 1 M + 0.3 M 31.700/28.278/23.797
# in 2.98 s; 0.6 M + 0.3 M 31.671/28.227/23.766 in 1.41 s (Kodak24 -0.01 dB
# each); one copy of each 31.489/28.128/23.717 in 1.17 s.
ENSEMBLE_BUDGET = 600_000
# Near the hole's edge a fill made at the finest scale (full size, or the
# crop down to MAX_WORK_SIDE) beats the coarse ones: it carries on the fine
# detail of the known pixels, which the coarse fills blur. Deep in a wide
# hole it is worse (the hole is wider than any the model was trained on).
# So the deterministic fill goes from the fine fill at the edge to the mean
# over WORK_RADII linearly over FINE_RAMP px of the finest scale. On the 8
# validation photos (mask seeds 0-2, medium/thick PSNR 28.18/23.64 before):
# ramps of 16, 24 and 32 px gave 28.26/23.76, 28.27/23.79, 28.26/23.78, and
# one fine copy instead of the budget's 28.24/23.77.
FINE_RAMP = 24.0
FINE_BUDGET = 300_000  # model pixels the fine fill's copies may take: one copy of a 512x512 crop
MAX_WORK_SIDE = 1024  # px: a crop's longest side at working resolution
MIN_CONTEXT = 32  # px of known context around a hole's bounding box, at least...
CONTEXT_SHARE = 0.5  # ...or this share of the box's longest side
# The training holes are at least 2-3 px wide; a thinner one (a 1-px
# scratch) lies on one phase of the model's 2x pixel-unshuffle and was
# filled with a wrong colour. The model is shown the hole grown by
# THIN_GROW px where it is thinner than THIN_WIDTH px; only the user's hole
# is pasted.
THIN_WIDTH = 3
THIN_GROW = 1
# A region whose hole is thin beside its crop (the crop, capped at
# MAX_WORK_SIDE, would be worked on at a coarser scale than the hole's
# width asks for: a scratch across a large photo) is filled in pieces: the
# hole within each TILE x TILE cell, on a crop of its own with context of
# PIECE_CONTEXT_SHARE of the piece's longest side (at least MIN_CONTEXT);
# the pieces share one ENSEMBLE_BUDGET. On two long lines across a 6000x3750
# photo, context of a half (as hole_regions gives) or an eighth with the
# budget per piece gave mean errors of 1.87/2.29 and 1.59/1.84 levels in
# 37/20 and 41/54 s, an eighth with one copy per piece 2.00/2.31 in 14/10 s.
TILE = 512
PIECE_CONTEXT_SHARE = 0.125
# The seam correction's blurs run on the crop scaled down by about
# width / HARMONISE_SIGMA (the offset is a smooth field), then scaled back.
HARMONISE_SIGMA = 8.0


@dataclass(frozen=True)
class Region:
    """A crop ``[top:bottom, left:right]`` holding one or more holes with their context."""

    top: int
    bottom: int
    left: int
    right: int

    def overlaps(self, other: "Region") -> bool:
        return self.top < other.bottom and other.top < self.bottom and self.left < other.right and other.left < self.right

    def union(self, other: "Region") -> "Region":
        return Region(min(self.top, other.top), max(self.bottom, other.bottom),
                      min(self.left, other.left), max(self.right, other.right))


@dataclass(frozen=True)
class Piece:
    """A crop to fill, and the part of it (``core``, in image coordinates)
    whose hole pixels that fill is pasted into."""

    crop: Region
    core: Region


def hole_regions(hole: np.ndarray) -> list[Region]:
    """Crops that cover every hole pixel of ``hole`` ((H, W) bool) with context around it."""
    import cv2

    h, w = hole.shape
    u8 = hole.astype(np.uint8)
    # Label the holes' bounding box only: a small hole in a 24 MP photo
    # would otherwise cost a labelling pass over the whole photo.
    left, top, box_w, box_h = cv2.boundingRect(u8)
    if not box_w:
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(u8[top : top + box_h, left : left + box_w], connectivity=8)
    regions = []
    for x, y, bw, bh, _ in stats[1:count].tolist():
        x, y = x + left, y + top
        margin = max(MIN_CONTEXT, int(CONTEXT_SHARE * max(bw, bh)))
        regions.append(Region(max(0, y - margin), min(h, y + bh + margin), max(0, x - margin), min(w, x + bw + margin)))
    merged = True
    while merged:  # crops that overlap become one, so no fill is pasted over another's context
        merged, out = False, []
        for region in regions:
            for i, other in enumerate(out):
                if region.overlaps(other):
                    out[i], merged = other.union(region), True
                    break
            else:
                out.append(region)
        regions = out
    return regions


def hole_radius(hole: np.ndarray) -> float:
    """The half-width in px of the widest part of ``hole`` ((h, w) bool), at least 1;
    a hole reaching the border is measured to the border."""
    import cv2

    framed = np.pad(hole.astype(np.uint8), 1)
    return max(1.0, float(cv2.distanceTransform(framed, cv2.DIST_L2, 3).max()))


def region_pieces(hole: np.ndarray, region: Region) -> list[Piece]:
    """The pieces that fill ``region`` of ``hole`` ((H, W) bool): the region
    itself, or, where its hole is thin beside it (even the first working
    radius would be capped by MAX_WORK_SIDE), the hole within each TILE-px
    cell of its bounding box, each on a crop of its own (with context,
    kept within the region)."""
    sub = hole[region.top : region.bottom, region.left : region.right]
    if finest_scale(sub) >= min(1.0, WORK_RADIUS / hole_radius(sub)):
        return [Piece(region, region)]
    rows, cols = np.nonzero(sub)
    pieces = []
    for top in range(int(rows.min()), int(rows.max()) + 1, TILE):
        for left in range(int(cols.min()), int(cols.max()) + 1, TILE):
            r, c = np.nonzero(sub[top : top + TILE, left : left + TILE])
            if not len(r):
                continue
            t, b, l, rt = top + r.min(), top + r.max() + 1, left + c.min(), left + c.max() + 1
            margin = max(MIN_CONTEXT, int(PIECE_CONTEXT_SHARE * max(b - t, rt - l)))
            crop = Region(region.top + max(0, t - margin), region.top + min(sub.shape[0], b + margin),
                          region.left + max(0, l - margin), region.left + min(sub.shape[1], rt + margin))
            cell = Region(region.top + top, region.top + top + TILE, region.left + left, region.left + left + TILE)
            core = Region(max(cell.top, crop.top), min(cell.bottom, crop.bottom),
                          max(cell.left, crop.left), min(cell.right, crop.right))  # holds the cell's hole
            pieces.append(Piece(crop, core))
    return pieces


def shown_hole(hole: np.ndarray) -> np.ndarray:
    """The hole the model is shown for ``hole`` ((h, w) bool): grown by
    THIN_GROW px where it is thinner than THIN_WIDTH px."""
    import cv2

    u8 = hole.astype(np.uint8)
    size = 2 * THIN_GROW + 1
    thin = u8 & (1 - cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((THIN_WIDTH, THIN_WIDTH), np.uint8)))
    if not thin.any():
        return hole
    return hole | (cv2.dilate(thin, np.ones((size, size), np.uint8)) > 0)


# A seeded fill adds this much of one draw's departure from the prior's
# mean: the whole of it left dark polka dots in a red parrot's fill. On the
# 8 validation photos (mask seed 0, 2 draws, benchmarks/inpaint_samples.py
# --draw-scales) the energy score medium/thick went 29.03/29.91 at 1.0,
# 26.62/29.82 at 0.7, 26.08/30.13 at 0.6 and 25.71/30.65 at 0.5 (lower is
# better); the seeded fills' PSNR 23.05/20.65 -> 24.83/22.01 dB at 0.7.
DRAW_SCALE = 0.7


def working_scales(hole: np.ndarray, radii: tuple[float, ...] = WORK_RADII) -> list[float]:
    """Distinct scales (<= 1, smallest first) for a crop whose hole is ``hole``
    ((h, w) bool): at each, the hole's half-width comes down to one of
    ``radii`` and the crop to at most MAX_WORK_SIDE."""
    radius = hole_radius(hole)
    return sorted({min(finest_scale(hole), r / radius) for r in radii})


def working_scale(hole: np.ndarray) -> float:
    """The scale of a seeded fill's draw: the hole's half-width down to WORK_RADIUS."""
    return working_scales(hole, (WORK_RADIUS,))[0]


def finest_scale(hole: np.ndarray) -> float:
    """Full size, or less where the crop is longer than MAX_WORK_SIDE."""
    return min(1.0, MAX_WORK_SIDE / max(hole.shape))


def edge_distance(hole: np.ndarray) -> np.ndarray:
    """For each pixel of ``hole`` ((h, w) bool), its distance in px to the
    nearest known pixel (0 outside the hole); the crop's border is not known
    pixels, so a hole reaching it is measured to the known ones."""
    import cv2

    framed = np.pad(hole.astype(np.uint8), 1, constant_values=1)
    return cv2.distanceTransform(framed, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def working_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """A crop of ``shape`` (..., h, w) at ``scale``, at least 16 px a side."""
    return max(16, round(shape[-2] * scale)), max(16, round(shape[-1] * scale))


def budget_copies(sizes: list[tuple[int, int]], budget: Optional[int] = None) -> int:
    """How many flipped/rotated copies (1-8) per scale fit ``budget`` model
    pixels (default ENSEMBLE_BUDGET)."""
    pixels = sum(h * w for h, w in sizes)
    return max(1, min(MAX_COPIES, (budget or ENSEMBLE_BUDGET) // pixels))


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == size:
        return t
    smaller = size[0] < t.shape[-2]
    return interpolate(t, size, "area") if smaller else interpolate(t, size, "bicubic", align_corners=False)


def _blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (1, C, H, W), zero outside."""
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=t.dtype, device=t.device)
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    taps = taps / taps.sum()
    c = t.shape[1]
    if t.device.type == "cpu" and t.dtype == torch.float32:
        # OpenCV's separable filter: 5-20x torch's grouped convolution on
        # the CPU (one channel at sigma 4 on a 512x512 crop: 1.4 against 35 ms).
        import cv2

        kernel = taps.numpy()
        planes = [cv2.sepFilter2D(plane, -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
                  for plane in t[0].contiguous().numpy()]
        return torch.from_numpy(np.stack(planes))[None]
    t = F.conv2d(t, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(t, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def harmonise(fill: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, width: float,
              factor: Optional[int] = None) -> torch.Tensor:
    """Shift ``fill`` near the hole's edge by the smoothed difference between
    ``image`` and ``fill`` on the known pixels just outside the hole, fading
    to nothing ``~2 * width`` px into the hole. Known pixels are not touched
    here (the caller copies them).

    The blurs run on the crop scaled down by ``factor`` (default: about
    ``width / HARMONISE_SIGMA``, at least 1) with area averaging, and the
    offset, a smooth field, is scaled back up bilinearly."""
    if factor is None:
        factor = max(1, int(width / HARMONISE_SIGMA))
    if factor == 1:
        band = (_blur(hole, width / 2) > 1e-3).to(fill.dtype) * (1 - hole)  # known rim around the hole
        offset = _blur((image - fill) * band, width) / (_blur(band, width) + 0.05)
        return fill + offset * hole
    h, w = hole.shape[-2:]
    size = (-(-h // factor), -(-w // factor))
    known = interpolate(1 - hole, size, "area")  # (1, 1, h', w'): share of known pixels
    difference = interpolate((image - fill) * (1 - hole), size, "area")
    rim = (_blur(1 - known, width / 2 / factor) > 1e-3).to(fill.dtype)  # the rim, as above, at this scale
    offset = _blur(difference * rim, width / factor) / (_blur(known * rim, width / factor) + 0.05)
    return fill + F.interpolate(offset, size=(h, w), mode="bilinear", align_corners=False) * hole


def _model_fill(model: InpaintVAE, known: torch.Tensor, hole: torch.Tensor, scale: float, copies: int,
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """The model's fill of the crop ``known`` (hole zeroed) made at ``scale``
    and scaled back: the mean over ``copies`` flipped/rotated copies of the
    prior's mean, or one draw with ``generator``."""
    size = working_size(known.shape, scale)
    small_hole = (_resize(hole, size) > 0.01).to(known.dtype)  # a pixel touched by the hole is hole
    small = _resize(known, size)
    if generator is None:  # image and hole travel together through the flips
        raw = dihedral_mean(lambda x: model(x[:, :3], x[:, 3:], "mean")[1], torch.cat([small, small_hole], 1), copies)
    else:
        _, raw, _ = model(small, small_hole, "sample", generator)
    return _resize(raw, tuple(known.shape[-2:]))


def _mean_fill(model: InpaintVAE, known: torch.Tensor, hole: torch.Tensor, hole_map: np.ndarray,
               ensemble: Optional[int]) -> torch.Tensor:
    """The deterministic fill of a crop before the seam correction: the mean
    over working scales and ``ensemble`` copies at each (``None``: by the
    budget), giving way to the finest scale's fill near the hole's edge."""
    scales = working_scales(hole_map)
    copies = budget_copies([working_size(known.shape, s) for s in scales]) if ensemble is None else ensemble
    fills = {s: _model_fill(model, known, hole, s, copies, None) for s in scales}
    fill = sum(fills.values()) / len(fills)
    fine_scale = finest_scale(hole_map)
    if fine_scale not in fills:
        fine_copies = budget_copies([working_size(known.shape, fine_scale)], FINE_BUDGET) if ensemble is None else ensemble
        fills[fine_scale] = _model_fill(model, known, hole, fine_scale, fine_copies, None)
    depth = torch.from_numpy(edge_distance(hole_map)).to(known)[None, None] * fine_scale
    weight = (1 - depth / FINE_RAMP).clamp(0, 1)
    return weight * fills[fine_scale] + (1 - weight) * fill


def fill_region(model: InpaintVAE, image: torch.Tensor, hole: torch.Tensor,
                generators: Sequence[Optional[torch.Generator]] = (None,), ensemble: Optional[int] = None) -> list[torch.Tensor]:
    """Fill ``hole`` ((1, 1, h, w), 1 = hole) in the crop ``image`` ((1, 3, h, w))
    once per generator; known pixels unchanged.

    ``None`` gives the deterministic fill (:func:`_mean_fill`). A generator
    gives a random fill: the deterministic fill plus :data:`DRAW_SCALE` of
    one draw's departure from the prior's mean, both decoded at the first
    radius. The draw adds
    what varies between plausible fills; the mean over scales and copies
    stays the best guess it varies around. On the 8 validation photos
    (mask seed 0) this took the energy score of two draws (lower is better)
    from 29.46 to 28.78 on medium holes and from 30.84 to 29.86 on thick
    ones (``benchmarks/inpaint_samples.py``), with the whole departure; 0.7
    of it scores better still (see :data:`DRAW_SCALE`)."""
    hole_map = shown_hole(hole[0, 0].cpu().numpy() > 0.5)
    shown = torch.from_numpy(hole_map).to(hole)[None, None]  # (1, 1, h, w): what the model sees as hole
    known = image * (1 - shown)
    mean = _mean_fill(model, known, shown, hole_map, ensemble)
    scale = working_scale(hole_map)
    prior_mean = _model_fill(model, known, shown, scale, 1, None) if any(g is not None for g in generators) else None
    width = max(2.0, 1.5 / scale)  # the first radius is also the coarsest scale of the mean
    out = []
    for generator in generators:
        departure = None if generator is None else _model_fill(model, known, shown, scale, 1, generator) - prior_mean
        fill = mean if departure is None else mean + DRAW_SCALE * departure
        fill = harmonise(fill.clamp(0, 1), image, hole, width=width)
        out.append(torch.where(hole > 0.5, fill.clamp(0, 1), image))
    return out


def _fill_piece(model: InpaintVAE, image: torch.Tensor, hole: torch.Tensor, i: int, piece: Piece,
                generators: Sequence[Optional[torch.Generator]], ensemble: Optional[int], outs: list[torch.Tensor],
                gray: bool, grain_seeds: Optional[Sequence[int]] = None) -> None:
    """Fill ``piece`` of batch item ``i`` and paste its core into each of
    ``outs``; ``gray``: the image is grayscale, so the fill is made so too;
    ``grain_seeds`` (one per fill): add the photo's grain to each fill, drawn from these."""
    crop, core = piece.crop, piece.core
    rows, cols = slice(crop.top, crop.bottom), slice(crop.left, crop.right)
    crop_image, crop_hole = image[i : i + 1, :, rows, cols].float(), hole[i : i + 1, :, rows, cols]
    filled = fill_region(model, crop_image, crop_hole.float(), generators, ensemble)
    level = grain_level(crop_image, ~crop_hole[0, 0].cpu().numpy()) if grain_seeds is not None else None
    inner = (slice(core.top - crop.top, core.bottom - crop.top), slice(core.left - crop.left, core.right - crop.left))
    for k, (out, fill) in enumerate(zip(outs, filled)):
        if gray:  # on the hole only: the mean of three equal values need not give the value back bit for bit
            fill = torch.where(crop_hole, fill.mean(1, keepdim=True).expand_as(fill), fill)
        if level is not None:  # a seed of its own for each crop: two holes do not get one pattern
            seed = int(grain_seeds[k] * 1_000_003 + crop.top * 40_009 + crop.left) % 2**62  # a piece's box is numpy ints
            fill = add_grain(fill, crop_hole, level, seed, gray)
        out[i, :, core.top : core.bottom, core.left : core.right] = fill[0, :, inner[0], inner[1]].to(image.dtype)


def _looks_gray(image: torch.Tensor) -> bool:
    """Whether ``image`` ((1, 3, H, W)) is grayscale; a colour photo shows it
    in a sparse sample, so only a gray one costs a pass over every pixel."""
    return bool(is_gray(image[..., ::16, ::16])) and bool(is_gray(image))


def inpaint_vae(
    image: torch.Tensor,
    mask: Optional[torch.Tensor],
    model: InpaintVAE,
    seed: Optional[int] = None,
    ensemble: Optional[int] = None,
    grain: bool = False,
) -> torch.Tensor:
    """Fill the holes of a batch with the VAE.

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1] (grayscale as 3 equal channels).
        mask: ``(B, 1, H, W)`` or ``(1, 1, H, W)``; values > 0.5 are the hole.
        model: from :func:`load_inpainter`, on ``image``'s device.
        seed: ``None`` for the deterministic fill, or the seed of one random
            plausible fill (the deterministic fill plus a draw from the latent).
        ensemble: flipped/rotated copies (1-8) of each working scale that the
            deterministic fill averages; ``None`` takes as many as fit
            ``ENSEMBLE_BUDGET``.
        grain: add Gaussian noise of the level measured around each hole
            to its fill (:mod:`imgedit_vae.grain`), drawn from ``seed`` (0
            without one), so the fill of a grainy photo does not show as a
            flat patch; it lowers PSNR.

    Returns:
        ``(B, 3, H, W)``, same dtype and device; pixels outside the hole are
        bit-identical to ``image``.

    Raises:
        ShapeError, MaskError: ``image`` or ``mask`` does not follow the contract.

    Example:
        >>> model = load_inpainter()
        >>> image = torch.rand(1, 3, 64, 64); mask = torch.zeros(1, 1, 64, 64); mask[..., 20:40, 20:40] = 1
        >>> out = inpaint_vae(image, mask, model)
        >>> bool((out[..., :20, :] == image[..., :20, :]).all())
        True
    """
    return inpaint_vae_fills(image, mask, model, [seed], ensemble, grain)[0]


def inpaint_vae_fills(
    image: torch.Tensor,
    mask: Optional[torch.Tensor],
    model: InpaintVAE,
    seeds: Sequence[Optional[int]],
    ensemble: Optional[int] = None,
    grain: bool = False,
    in_place: bool = False,
) -> list[torch.Tensor]:
    """One fill of the batch per seed, as :func:`inpaint_vae` makes it for
    that seed; the deterministic fill they share is made once. Each image's
    draws come from a generator of its own seeded with ``seed``, so an
    image gets the same fill alone or anywhere in a batch. ``in_place``:
    one seed's fill is pasted into ``image`` itself (the host's applier
    may edit its input: a 48 MP photo with a small hole need not be copied
    whole); the fill is the same, as the model sees only the known pixels."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ShapeError("inpaint image", "a (B, 3, H, W) float tensor", got)
    if mask is None:
        raise MaskError("inpaint: inpainting needs a hole mask, got none")
    b, _, h, w = image.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, b):
        raise ShapeError("inpaint mask", f"shape ({b}, 1, {h}, {w})", tuple(mask.shape))
    hole = (mask > 0.5).expand(b, 1, h, w)
    # in place only in a plain layout: an expanded tensor (one pixel in many places) cannot be written so
    dense = image.is_contiguous() or image.is_contiguous(memory_format=torch.channels_last)
    in_place = in_place and len(seeds) == 1 and dense
    outs = [image] if in_place else [image.clone() for _ in seeds]
    grain_seeds = [int(seed or 0) for seed in seeds] if grain else None
    with torch.inference_mode():
        for i in range(b):
            # Each image's draws start from its seed: its fill does not
            # depend on where it sits in the batch or what comes before it.
            generators = [None if seed is None else torch.Generator().manual_seed(int(seed)) for seed in seeds]
            hole_map = hole[i, 0].cpu().numpy()
            regions = hole_regions(hole_map)
            gray = bool(regions) and _looks_gray(image[i : i + 1])  # grayscale in, grayscale out
            for region in regions:
                pieces = region_pieces(hole_map, region)
                copies = ensemble
                if ensemble is None and len(pieces) > 1:  # the pieces share one budget
                    copies = budget_copies([(p.crop.bottom - p.crop.top, p.crop.right - p.crop.left) for p in pieces])
                for piece in pieces:
                    _fill_piece(model, image, hole, i, piece, generators, copies, outs, gray, grain_seeds)
        return outs


def load_inpainter(device: Union[str, torch.device] = "cpu", weights: Optional[Union[str, Path]] = None) -> InpaintVAE:
    """Load (once per device and file) the inpainting VAE in eval mode.

    Raises:
        WeightsError: missing file or card, sha256 mismatch, or weights that are not an inpainting VAE.
    """
    return load_vae(model_spec(weights, INPAINT_MODEL_NAME), InpaintVAE, device)


class InpaintApplier:
    """The ``inpaint.vae`` applier: one fill, or ``samples`` fills side by
    side (seeds ``seed``, ``seed + 1``, ...; ``seed`` defaults to 0 then)."""

    def __init__(self, model: InpaintVAE, samples: int = 1, seed: Optional[int] = None, ensemble: Optional[int] = None,
                 grain: bool = False):
        self.model, self.samples, self.seed, self.grain = model, int(samples), seed, bool(grain)
        self.ensemble = None if ensemble is None else int(ensemble)
        if self.samples > 1:  # tells the core the output is wider than the input
            self.output_shape = lambda shape: (*shape[:-1], shape[-1] * self.samples)

    def __call__(self, image: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if self.samples == 1:
            return inpaint_vae_fills(image, mask, self.model, [self.seed], self.ensemble, self.grain, in_place=True)[0]
        first = 0 if self.seed is None else int(self.seed)
        seeds = [first + k for k in range(self.samples)]
        return torch.cat(inpaint_vae_fills(image, mask, self.model, seeds, self.ensemble, self.grain), dim=-1)


def create_inpaint(context: Any = None, *, samples: int = 1, seed: Optional[int] = None, weights: str = "",
                   ensemble: Optional[int] = None, grain: bool = False) -> InpaintApplier:
    device = getattr(context, "device", torch.device("cpu"))
    return InpaintApplier(load_inpainter(device, weights or None), samples, seed, ensemble, grain)
