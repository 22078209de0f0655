"""``imgedit eval inpaint``: PSNR and SSIM of fills, over the whole image and
over the hole alone, beside the classical fills, plus time per image.

Two kinds of cases:

* synthetic holes: every image of a folder gets one LaMa-style mask per
  kind (thin, medium, thick), drawn from a generator seeded with ``seed``
  once per kind, image by image in path order;
* ready-made pairs: ``DIR/**/images/NAME.*`` with ``DIR/**/masks/NAME.*``.
  Sets disagree on the mask's colours (EdgeConnect, LaMa: white = hole;
  MI-GAN: black = hole, often over most of the image, so the colour cannot
  be guessed from coverage): the caller says which.

Every output is clipped and rounded to 8 bits before scoring. A pair whose
image has its hole painted over (one flat colour, as EdgeConnect's
examples) has no ground truth inside the hole: it goes to the contact sheet
but is not scored. Images smaller than SSIM's 11x11 window, and pairs whose
mask has no hole, are skipped with a warning.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from imgedit.errors import UsageError
from imgedit.imageio import read_image
from imgedit.masks import load_mask_file
from imgedit_vae.evaluate_denoise import too_small
from imgedit_vae.holes import random_hole_mask
from imgedit_vae.metrics import psnr, ssim

logger = logging.getLogger("imgedit")

# method name -> fn(image (1, 3, H, W), mask (1, 1, H, W), 1 = hole) -> filled
Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Case:
    group: str  # mask kind ("thick") or pair set ("places2_256_freeform")
    name: str
    image: torch.Tensor  # (1, 3, H, W)
    mask: torch.Tensor  # (1, 1, H, W), 1 = hole
    scored: bool = True  # False: the hole is painted over, no ground truth there


@dataclass
class Row:
    group: str
    method: str
    psnr: float
    ssim: float
    hole_psnr: float
    hole_ssim: float
    seconds_per_image: float
    images: int


def _tensor(path: Path) -> torch.Tensor:
    return torch.from_numpy(read_image(path).rgb).permute(2, 0, 1)[None].contiguous()


def synthetic_cases(images: Sequence[tuple[Path, torch.Tensor]], kinds: Sequence[str], seed: int = 0) -> list[Case]:
    """One seeded random mask per image and kind."""
    cases = []
    for kind in kinds:
        generator = torch.Generator().manual_seed(seed)
        for path, image in images:
            h, w = image.shape[-2:]
            cases.append(Case(kind, path.name, image, random_hole_mask(h, w, kind, generator)[None]))
    return cases


def pair_cases(root: Path, hole_color: str = "white", limit: Optional[int] = None) -> list[Case]:
    """Image/mask pairs under ``root``, the hole being ``hole_color`` ("white" or "black") in the masks;
    the first ``limit`` usable ones per set. Images too small to score and masks without a hole
    are skipped with a warning.

    Raises:
        UsageError: no ``images/`` folder with matching ``masks/`` under ``root``,
            or an image without a mask.
        MaskError: a mask that cannot be read, or whose shape is not its image's
            (one drawn on a scaled copy is resized, as ``imgedit inpaint --mask`` does).
    """
    if hole_color not in ("white", "black"):
        raise UsageError(f"hole colour must be white or black, got {hole_color!r}")
    image_dirs = sorted(d for d in Path(root).rglob("images") if d.is_dir() and (d.parent / "masks").is_dir())
    if not image_dirs:
        raise UsageError(f"{root}: no images/ folder with a masks/ folder beside it")
    cases = []
    for image_dir in image_dirs:
        group = image_dir.parent.name
        files = sorted(f for f in image_dir.iterdir() if f.is_file())
        masks_by_stem = {m.stem: m for m in (image_dir.parent / "masks").iterdir() if m.is_file()}
        kept = 0
        for f in files:
            if limit and kept >= limit:
                break
            if f.stem not in masks_by_stem:
                raise UsageError(f"{f}: no mask named {f.stem}.* in {image_dir.parent / 'masks'}")
            image = _tensor(f)
            # read as 'imgedit inpaint --mask' reads it: guarded, thresholded at half range, resized when drawn smaller
            bright = load_mask_file(masks_by_stem[f.stem], tuple(image.shape[-2:]))
            hole = torch.from_numpy(bright if hole_color == "white" else ~bright).float()[None, None]
            if too_small(f, image):
                continue
            if not hole.any():  # nothing to fill: a perfect score that would lift the averages
                logger.warning("skipping %s: its mask %s has no %s hole", f, masks_by_stem[f.stem], hole_color)
                continue
            inside = image[0][:, hole[0, 0] > 0.5]  # (3, hole pixels)
            painted = float((inside.amax(1) - inside.amin(1)).max()) < 2 / 255
            cases.append(Case(group, f.name, image, hole, scored=not painted))
            kept += 1
    return cases


CLASSICAL = ("telea", "ns")  # inpaint methods scored beside the model, where a plugin registers them


def classical_methods() -> dict[str, Method]:
    """OpenCV's Telea and Navier-Stokes fills (imgedit_classical's, radius 5,
    taken from the registry as a pipeline takes them: this plugin imports no
    other), and scikit-image's biharmonic fill when it is installed."""
    from imgedit.registry import get_registry

    registered = {op.method: op for op in get_registry().methods("inpaint")}
    methods: dict[str, Method] = {name: registered[name].create(None) for name in CLASSICAL if name in registered}
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError:
        return methods

    def biharmonic(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = inpaint_biharmonic(image[0].permute(1, 2, 0).numpy(), (mask[0, 0] > 0.5).numpy(), channel_axis=-1)
        return torch.where(mask > 0.5, torch.from_numpy(out).permute(2, 0, 1)[None].float(), image)

    methods["biharmonic"] = biharmonic
    return methods


def evaluate(cases: Sequence[Case], methods: dict[str, Method], on_case: Optional[Callable[[], None]] = None) -> list[Row]:
    """Mean scores per (group, method) over the scored cases."""
    scores: dict[tuple[str, str], list[tuple[float, ...]]] = defaultdict(list)
    for case in cases:
        if case.scored:
            given = _blanked(case)
            for name, method in methods.items():
                start = time.perf_counter()
                out = method(given, case.mask)
                seconds = time.perf_counter() - start
                scores[case.group, name].append((
                    float(psnr(out, case.image)), float(ssim(out, case.image)),
                    float(psnr(out, case.image, case.mask)), float(ssim(out, case.image, case.mask)), seconds,
                ))
        if on_case:
            on_case()
    return [Row(group, name, *(float(np.mean(column)) for column in zip(*values)), len(values))
            for (group, name), values in scores.items()]


def _blanked(case: Case) -> torch.Tensor:
    """The image with its hole's pixels zeroed: what every method is given,
    so none sees the truth it is scored against (OpenCV's fills read hole
    pixels at the image border)."""
    return case.image * (case.mask <= 0.5)


def contact_sheet(cases: Iterable[Case], methods: dict[str, Method], count: int = 6, width: int = 256) -> torch.Tensor:
    """One row per case (the first ``count``): the input with its hole
    greyed out, each method's fill, the ground truth; each scaled to
    ``width`` px wide. Returns ``(3, H, W)`` in [0, 1]."""
    import torch.nn.functional as F

    rows = []
    for case in list(cases)[:count]:
        shown = torch.where(case.mask > 0.5, torch.full_like(case.image, 0.5), case.image)
        tiles = [shown, *(method(_blanked(case), case.mask) for method in methods.values()), case.image]
        h, w = case.image.shape[-2:]
        size = (max(1, round(h * width / w)), width)
        tiles = [F.pad(F.interpolate(t.clamp(0, 1), size=size, mode="area")[0], (2, 2, 2, 2), value=1.0) for t in tiles]
        rows.append(torch.cat(tiles, dim=-1))
    return torch.cat(rows, dim=-2) if rows else torch.zeros(3, 1, 1)


def format_table(rows: list[Row], title: str) -> str:
    lines = [title, f"{'masks':<22} {'method':<11} {'PSNR':>7} {'SSIM':>7} {'hole PSNR':>10} {'hole SSIM':>10} {'s/img':>7}"]
    for r in rows:
        lines.append(f"{r.group:<22} {r.method:<11} {r.psnr:7.2f} {r.ssim:7.4f} {r.hole_psnr:10.2f} {r.hole_ssim:10.4f} {r.seconds_per_image:7.3f}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
