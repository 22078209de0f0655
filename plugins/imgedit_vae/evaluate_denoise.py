"""``imgedit eval denoise``: PSNR, SSIM and speed on a folder of clean images
under the published protocol, beside classical baselines.

Protocol: clean image in [0, 1]; noise N(0, (sigma/255)^2) from a generator
seeded with ``seed`` once per sigma and drawn image by image in file order;
the noisy input is not clipped (``clip=True``: clipped to [0, 1] and rounded
to 8 bits, as a noisy file on disk is); every output is clipped and rounded
to 8 bits; PSNR and SSIM over all pixels and channels, averaged over images.
Grayscale files are one channel repeated: noise is the same on all three.
Images smaller than SSIM's 11x11 window are skipped with a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import torch

from imgedit.errors import ImgeditError, UsageError
from imgedit.imageio import read_image
from imgedit.inputs import expand_inputs
from imgedit_vae.degrade import add_gaussian_noise
from imgedit_vae.metrics import SSIM_WINDOW, psnr, ssim

logger = logging.getLogger("imgedit")

# method name -> fn(noisy (1, 3, H, W) on CPU, sigma) -> denoised
Method = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass
class Row:
    sigma: float
    method: str
    psnr: float
    ssim: float
    megapixels_per_s: Optional[float]
    images: int


def load_clean(sources: Sequence[str], limit: Optional[int] = None,
               min_side: int = SSIM_WINDOW) -> list[tuple[Path, torch.Tensor]]:
    """Clean images as (path, (1, 3, H, W) float in [0, 1]), in path order:
    the first ``limit`` of those at least ``min_side`` px on each side.
    Smaller ones are skipped with a warning (SSIM's window does not fit them),
    and so are files that cannot be read: one corrupt file in a benchmark
    folder must not cost the whole evaluation (training skips them too).

    Raises:
        UsageError: no image is large enough.
    """
    items = sorted(expand_inputs(list(sources), recursive=True), key=lambda f: str(f.path))
    images = []
    for item in items:
        if limit and len(images) >= limit:
            break
        try:
            rgb = torch.from_numpy(read_image(item.path).rgb).permute(2, 0, 1)[None].contiguous()
        except ImgeditError as exc:
            logger.warning("skipping %s: %s", item.path, exc)
            continue
        if too_small(item.path, rgb, min_side):
            continue
        images.append((item.path, rgb))
    if not images:
        raise UsageError(f"no image of at least {min_side}x{min_side} px (the SSIM window) in {', '.join(map(str, sources))}")
    return images


def too_small(path: Path, image: torch.Tensor, min_side: int = SSIM_WINDOW) -> bool:
    """Whether ``image`` ((1, C, H, W)) is too small to score; warns if so."""
    h, w = image.shape[-2:]
    if min(h, w) >= min_side:
        return False
    logger.warning("skipping %s: %dx%d px, smaller than the %dx%d px SSIM window", path, w, h, min_side, min_side)
    return True


def baseline_methods() -> dict[str, Method]:
    """The classical denoisers available here: OpenCV NLM where a plugin
    registers it (imgedit_classical, taken from the registry as a pipeline
    takes it: this plugin imports no other), scikit-image's wavelet
    (BayesShrink) and TV (Chambolle) when it is installed."""
    from imgedit.registry import get_registry

    methods: dict[str, Method] = {}
    nlm = {op.method: op for op in get_registry().methods("denoise")}.get("nlm")
    if nlm is not None:
        methods["nlm"] = lambda noisy, sigma: nlm.create(None, sigma=sigma)(noisy.clamp(0, 1), None)
    try:
        from skimage.restoration import denoise_tv_chambolle, denoise_wavelet
    except ImportError:
        return methods

    def skimage_method(fn: Callable) -> Method:
        def run(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
            array = noisy[0].permute(1, 2, 0).double().numpy()
            return torch.from_numpy(fn(array, sigma / 255.0)).permute(2, 0, 1)[None].float()

        return run

    methods["wavelet"] = skimage_method(
        lambda a, s: denoise_wavelet(a, sigma=s, channel_axis=-1, convert2ycbcr=True, method="BayesShrink", mode="soft", rescale_sigma=True)
    )
    # weight ~ sigma: the usual rule of thumb for Chambolle's TV at these levels
    methods["tv"] = skimage_method(lambda a, s: denoise_tv_chambolle(a, weight=0.9 * s, channel_axis=-1))
    return methods


def evaluate(
    images: list[tuple[Path, torch.Tensor]],
    sigmas: Iterable[float],
    methods: dict[str, Method],
    seed: int = 0,
    clip: bool = False,
    on_image: Optional[Callable[[], None]] = None,
) -> list[Row]:
    """Score every method at every sigma; the first row per sigma is the noisy input."""
    rows = []
    for sigma in sigmas:
        generator = torch.Generator().manual_seed(seed)
        scores: dict[str, list] = {name: [] for name in ["noisy", *methods]}
        seconds = {name: 0.0 for name in methods}
        pixels = 0
        for _, clean in images:
            noisy = add_gaussian_noise(clean, torch.tensor([float(sigma)]), generator, clip=torch.tensor([clip]))
            scores["noisy"].append((float(psnr(noisy, clean)), float(ssim(noisy, clean))))
            pixels += clean.shape[-1] * clean.shape[-2]
            for name, method in methods.items():
                start = time.perf_counter()
                out = method(noisy, float(sigma))
                seconds[name] += time.perf_counter() - start
                scores[name].append((float(psnr(out, clean)), float(ssim(out, clean))))
            if on_image:
                on_image()
        for name, values in scores.items():
            speed = pixels / 1e6 / seconds[name] if name in seconds and seconds[name] > 0 else None
            rows.append(Row(float(sigma), name, sum(v[0] for v in values) / len(values),
                            sum(v[1] for v in values) / len(values), speed, len(values)))
    return rows


def contact_sheet(
    images: list[tuple[Path, torch.Tensor]],
    sigma: float,
    methods: dict[str, Method],
    seed: int = 0,
    clip: bool = False,
    count: int = 4,
    crop: int = 160,
) -> torch.Tensor:
    """A grid to look at: one row per image (the first ``count``), columns
    noisy, each method, clean; centre crops of ``crop`` px at 1:1 so noise
    and detail are visible. Returns ``(3, H, W)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _, clean in images[:count]:
        noisy = add_gaussian_noise(clean, torch.tensor([float(sigma)]), generator, clip=torch.tensor([clip]))
        h, w = clean.shape[-2:]
        c = min(crop, h, w)
        y, x = (h - c) // 2, (w - c) // 2
        tiles = [noisy, *(method(noisy, float(sigma)) for method in methods.values()), clean]
        tiles = [t[0, :, y : y + c, x : x + c].clamp(0, 1) for t in tiles]
        tiles = [torch.nn.functional.pad(t, (2, 2, 2, 2), value=1.0) for t in tiles]  # white gutters
        rows.append(torch.cat(tiles, dim=-1))
    width = max(r.shape[-1] for r in rows)
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in rows], dim=-2)


def format_table(rows: list[Row], title: str) -> str:
    lines = [title, f"{'sigma':>5}  {'method':<10} {'PSNR':>7} {'SSIM':>7} {'MP/s':>7}"]
    for r in rows:
        speed = f"{r.megapixels_per_s:7.2f}" if r.megapixels_per_s is not None else f"{'-':>7}"
        lines.append(f"{r.sigma:>5g}  {r.method:<10} {r.psnr:7.2f} {r.ssim:7.4f} {speed}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
