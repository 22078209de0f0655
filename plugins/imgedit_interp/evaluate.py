"""How good are a latent model's morphs? The figures of ``imgedit eval interp``.

- **Reconstruction PSNR**: each image against the decoding of its latent
  (``decode(encode(x))``), 0-1 scale, averaged over images.
- For random pairs of images, a morph of ``frames`` frames (paced as
  ``imgedit interpolate`` paces it by default: ``even``, spherical for
  Gaussian latents) and the plain pixel cross-fade between the two
  originals, frame for frame:
  - **Step ratio**: the distance between consecutive frames in the feature
    space of :class:`imgedit.features.FeatureNet` (a fixed random CNN), largest
    over smallest along the morph. 1 = perfectly even; the target is <= 2.
    Beside it, the same ratio for the cross-fade of the pair, whose steps
    are exactly equal in pixels: what is left there is this feature space's
    own unevenness along a path (its ReLUs respond unevenly to equal pixel
    changes), which pacing by pixels cannot remove. ``even`` paces by eight
    other random networks, never this one, so this figure is not the one
    the frames were placed by (see :mod:`imgedit_interp.morph`).
  - **Realism**: for each interior frame, the distance in that feature space
    to the nearest real image of the evaluation set (the pair's own two
    images left out), for the morph and for the cross-fade at the same
    point. A morph frame should be nearer to some real face than the
    cross-fade's double exposure is.
  - **Sanity check of that measure**: the pair's own two real faces, each
    against the same set (both left out), beside their 50% cross-fade. A
    measure of realism must rank real faces above double exposures; this
    one does not: on the held-out faces64 images, in this feature space, in
    others (other layers, finer layout pooling) and in raw pixels, a real
    face was nearer to the real set than a cross-fade for only 9-16 of 64
    faces. A blend of two aligned faces lies near the middle of the set,
    where neighbours are close (concentration of measure), so nearest-
    neighbour distance rewards averaging. Normalising by the local density
    does not fix it: the "realism score" of Kynkaanniemi et al. (2019; each
    real face's 3rd-neighbour radius over its distance to the frame, the
    largest) put a real face above the 50% cross-fade for 25 of 64 faces
    (12 when the widest half of the radii are pruned, as they advise) on 32
    held-out pairs. Nor does a trained feature space: the critic of the
    shipped faces64 GAN (trained on faces, never on these held-out ones),
    its last layer as is, unit-normalised, or every layer's channel means,
    put a real face above the 50% cross-fade for 5, 12 and 6 of 64 faces
    (32 pairs). Nor does matching each place of the face alone (the
    nearest real face's features at the same place, averaged over places,
    from any of the first four layers): 6-9 of 64, or 26-37 of 64 with the
    features unit-normalised per place, about a coin toss. The report
    shows this count next to the morph's so the realism figure can be read
    for what it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imgedit.features import FeatureNet, features
from imgedit_interp.morph import cross_fade, path_latents


@dataclass
class PairResult:
    a: int
    b: int
    step_ratio: float
    fade_step_ratio: float  # ... of the pixel cross-fade of the same pair (even in pixels)
    morph_nn: list[float]  # nearest-real distance of each interior frame
    fade_nn: list[float]  # ... of the cross-fade of the inputs
    end_fade_nn: list[float]  # ... of the cross-fade of the morph's first and last frames
    real_nn: tuple[float, float] = (0.0, 0.0)  # ... of the pair's own real faces (both left out)

    @property
    def middle(self) -> tuple[float, float, float]:
        """(morph, cross-fade, end-frame cross-fade) nearest-real distances at t = 0.5 (or the frame nearest it)."""
        k = len(self.morph_nn) // 2
        return self.morph_nn[k], self.fade_nn[k], self.end_fade_nn[k]


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per image PSNR (dB) of ``(B, C, H, W)`` in [0, 1]."""
    mse = (x - y).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


@torch.no_grad()
def reconstruction_psnr(model, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """PSNR of ``decode(encode(x))`` for each of ``images`` ``(N, 3, S, S)`` in [0, 1]."""
    out = []
    for chunk in images.split(batch):
        chunk = chunk.to(model.device)
        out.append(psnr(model.decode(model.encode(chunk)), chunk).cpu())
    return torch.cat(out)


def random_pairs(n_images: int, count: int, seed: int) -> list[tuple[int, int]]:
    """``count`` pairs of distinct image indices, drawn with ``seed``, no image used twice where possible."""
    order = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed)).tolist()
    pairs = [(order[2 * i], order[2 * i + 1]) for i in range(min(count, n_images // 2))]
    return pairs


def step_ratio(frame_features: torch.Tensor) -> float:
    """Largest over smallest feature distance between consecutive frames;
    infinite where a step does not move (frames that repeat, or a model
    that gives one image for every frame: the least even morph, not the
    most)."""
    steps = (frame_features[1:] - frame_features[:-1]).norm(dim=1)
    smallest = float(steps.min())
    return float("inf") if smallest <= 1e-12 else float(steps.max()) / smallest


def nearest_distance(query: torch.Tensor, reference: torch.Tensor, exclude: list[int]) -> torch.Tensor:
    """For each row of ``query``, the distance to the nearest row of ``reference`` not in ``exclude``."""
    d = torch.cdist(query, reference)
    d[:, exclude] = float("inf")
    return d.min(dim=1).values


@torch.no_grad()
def evaluate_pairs(model, images: torch.Tensor, pairs: list[tuple[int, int]], frames: int, ease: str = "even",
                   net: FeatureNet | None = None) -> tuple[list[PairResult], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Morph and cross-fade each pair of ``images`` (``(N, 3, S, S)`` in [0, 1]).

    Returns:
        The results, and each pair's (morph frames, cross-fade frames) for a contact sheet.
    """
    net = net or FeatureNet()
    reference = features(images, net)
    results, videos = [], []
    for a, b in pairs:
        ends = images[[a, b]].to(model.device)
        latents = path_latents(model.encode(ends), frames, spherical=model.gaussian, ease=ease, decode=model.decode)
        morph = model.decode(latents).cpu()
        fade = cross_fade(ends.cpu(), frames)
        fm, ff, fe = (features(v, net) for v in (morph, fade, cross_fade(morph[[0, -1]], frames)))
        results.append(PairResult(a, b, step_ratio(fm), step_ratio(ff), *(nearest_distance(f[1:-1], reference, [a, b]).tolist()
                                                          for f in (fm, ff, fe)),
                                  real_nn=tuple(nearest_distance(reference[[a, b]], reference, [a, b]).tolist())))
        videos.append((morph, fade))
    return results, videos


def summarise(results: list[PairResult]) -> dict:
    """The figures the issue names, over all pairs."""
    ratios = [r.step_ratio for r in results]
    fade_ratios = [r.fade_step_ratio for r in results]
    middles = [r.middle for r in results]
    interior = [(m, f) for r in results for m, f in zip(r.morph_nn, r.fade_nn)]
    return {
        "pairs": len(results),
        "step_ratio_max": max(ratios),
        "step_ratio_mean": sum(ratios) / len(ratios),
        "fade_step_ratio_max": max(fade_ratios),
        "fade_step_ratio_mean": sum(fade_ratios) / len(fade_ratios),
        "morph_more_even_than_fade": sum(m < f for m, f in zip(ratios, fade_ratios)),
        "middle_morph_nearer": sum(m < f for m, f, _ in middles),
        "middle_morph_nearer_than_end_fade": sum(m < e for m, _, e in middles),
        "middle_morph_nn_mean": sum(m for m, _, _ in middles) / len(middles),
        "middle_fade_nn_mean": sum(f for _, f, _ in middles) / len(middles),
        "middle_end_fade_nn_mean": sum(e for _, _, e in middles) / len(middles),
        "interior_morph_nearer_fraction": sum(m < f for m, f in interior) / len(interior),
        # the sanity check: real faces against the cross-fade at t = 0.5, out of 2 per pair
        "real_nearer_than_fade": sum(real < f for r, (_, f, _) in zip(results, middles) for real in r.real_nn),
        "real_nn_mean": sum(sum(r.real_nn) for r in results) / (2 * len(results)),
    }
