"""How good are a generator's samples? Distances between two sets of images
that need no pretrained network (none is available offline), each defined
here exactly so that numbers are reproducible.

All sets are ``(n, 3, S, S)`` float in [0, 1] of one size and one ``n``;
every random choice is seeded (``seed``), so the same images give the same
numbers. Smaller is better for SWD and KID; the diversity ratio should be
near 1.

**Multi-scale sliced Wasserstein distance** (SWD; Karras et al., "Progressive
Growing of GANs", 2018, after their ``metrics/sliced_wasserstein.py``):

- each image, on the 0-255 scale, is split into a Laplacian pyramid (5x5
  binomial kernel ``[1, 4, 6, 4, 1] / 16``, mirrored borders, as
  ``cv2.pyrDown``/``pyrUp``) from full resolution down to 16x16: levels 64,
  32 and 16 for 64x64 images (the 16x16 level is the low-pass residual);
- at each level, 128 7x7 neighbourhoods per image (centres uniform, at least
  3 px from the border) become 147-d descriptors, normalised per colour
  channel to zero mean and unit variance within each set (as ProGAN does:
  SWD sees structure, not overall colour; KID sees colour);
- the distance is the mean over 4 repeats of: 512 random unit directions,
  both sets' descriptors projected on each, sorted, and the mean absolute
  difference of the sorted projections (the 1-D Wasserstein-1 distance);
- reported x1e3 per level and as the average of the levels, as in ProGAN.

**KID** (Binkowski et al., "Demystifying MMD GANs", 2018): the unbiased
estimate of MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d +
1)^3`` between feature vectors, averaged over 100 random subsets of
``min(1000, n // 2)`` images of each set (half, so that the subsets
differ when n is 1000 or less); mean and standard deviation over the
subsets, x1e3. Unbiased means it is about 0, and can be slightly negative,
for two samples of one distribution. That spread is mostly the reference
subsets' own, so ``evaluate`` also counts, subset by subset (the same
reference subset for both), how often a set's MMD^2 is below the
baseline's: a paired comparison that a difference inside the spread can
still pass or fail.

**Features** for KID and diversity come from :class:`imgedit.features.FeatureNet`,
a fixed CNN with random weights (736 features; defined there). Random
convolutional features separate image distributions surprisingly well
(texture, colour, coarse layout) but know nothing of faces: a low KID here
is not the same claim as a low KID on Inception features.

**Diversity**: the mean pairwise Euclidean distance between the features of
(at most the first 1000) images of a set, divided by the same for the
reference set. 1 = as varied as real images; much below 1 = mode collapse.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from imgedit.features import FEATURE_SEED, FeatureNet, features  # noqa: F401 - part of this module's API

SWD_MIN_RESOLUTION = 16
SWD_PATCH = 7
SWD_DESCRIPTORS_PER_IMAGE = 128
SWD_REPEATS = 4
SWD_DIRECTIONS = 512
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
DIVERSITY_IMAGES = 1000

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSS5 = (_BINOMIAL[:, None] * _BINOMIAL[None, :]) / 256.0  # (5, 5), sums to 1


# --- sliced Wasserstein distance ------------------------------------------------


def _blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """5x5 binomial filter per channel, mirrored borders (scipy 'mirror' = torch 'reflect')."""
    kernel = (_GAUSS5 * gain).to(x.dtype).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def pyr_up(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    up = torch.zeros(b, c, 2 * h, 2 * w, dtype=x.dtype)
    up[:, :, ::2, ::2] = x
    return _blur(up, gain=4.0)


def laplacian_pyramid(images: torch.Tensor) -> list[torch.Tensor]:
    """``(N, 3, S, S)`` -> levels at S, S/2, ... 16 (band-pass, then the low-pass residual)."""
    levels = max(1, sum(1 for i in range(12) if images.shape[-1] >> i >= SWD_MIN_RESOLUTION))
    pyramid = [images.float()]
    for _ in range(1, levels):
        pyramid.append(pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - pyr_up(pyramid[-1])
    return pyramid


def _neighbourhoods(level: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """``SWD_DESCRIPTORS_PER_IMAGE`` random 7x7 neighbourhoods per image: ``(N*k, 3, 7, 7)``."""
    n, c, h, w = level.shape
    half, k = SWD_PATCH // 2, SWD_DESCRIPTORS_PER_IMAGE
    ys = rng.integers(half, h - half, size=(n * k, 1, 1, 1))
    xs = rng.integers(half, w - half, size=(n * k, 1, 1, 1))
    offsets = np.arange(-half, half + 1)
    image = np.arange(n * k).reshape(-1, 1, 1, 1) // k
    chan = np.arange(c).reshape(1, c, 1, 1)
    index = ((image * c + chan) * h + ys + offsets.reshape(1, 1, -1, 1)) * w + xs + offsets.reshape(1, 1, 1, -1)
    return level.numpy().reshape(-1)[index]


def swd_descriptors(images: torch.Tensor, seed: int = 0) -> list[np.ndarray]:
    """Per pyramid level, the normalised ``(N*128, 147)`` descriptors of a set.

    The neighbourhoods are drawn with ``seed``: two sets of the same size get
    the same positions (so a set compared with itself scores exactly 0).
    """
    rng = np.random.default_rng(seed)
    out = []
    for level in laplacian_pyramid(images.cpu() * 255.0):
        desc = _neighbourhoods(level, rng).astype(np.float32)  # (M, 3, 7, 7)
        desc -= desc.mean(axis=(0, 2, 3), keepdims=True)
        desc /= desc.std(axis=(0, 2, 3), keepdims=True) + 1e-8
        out.append(desc.reshape(desc.shape[0], -1))
    return out


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, seed: int = 0, chunk: int = 128) -> float:
    """Mean over repeats and directions of the 1-D Wasserstein-1 distance
    between the projections of two equal-sized descriptor sets."""
    if a.shape != b.shape:
        raise ValueError(f"descriptor sets differ in shape: {a.shape} vs {b.shape}")
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(SWD_REPEATS):
        dirs = rng.standard_normal((a.shape[1], SWD_DIRECTIONS))
        dirs = (dirs / np.sqrt((dirs**2).sum(axis=0, keepdims=True))).astype(np.float32)
        total = 0.0
        for start in range(0, SWD_DIRECTIONS, chunk):  # bounds memory: (M, chunk) at a time
            d = dirs[:, start : start + chunk]
            pa, pb = np.sort((a @ d).T, axis=1), np.sort((b @ d).T, axis=1)  # numpy sorts rows fast
            total += float(np.abs(pa - pb).sum(dtype=np.float64))
        results.append(total / (a.shape[0] * SWD_DIRECTIONS))
    return float(np.mean(results))


def swd_levels(images: torch.Tensor) -> list[int]:
    """Resolutions of the levels SWD reports for images of this size."""
    size = images.shape[-1]
    return [size >> i for i in range(len(laplacian_pyramid(images[:1])))]


# --- features, KID, diversity ---------------------------------------------------------


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def kid_subsets(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> np.ndarray:
    """The unbiased MMD^2 between feature sets ``a`` and ``b`` on each of
    ``KID_SUBSETS`` random subsets, ``(KID_SUBSETS,)``.

    Subsets hold ``KID_SUBSET_SIZE`` rows, or half of the smaller set when
    that is less: a subset as large as the set is the whole set every time,
    and the spread would read 0 whatever the sets. The estimate is unbiased
    at any subset size, so only the spread depends on it. The subsets depend
    only on ``seed`` and the sizes, so two candidate sets scored against one
    ``b`` meet the same subsets of it: their values can be compared pair by pair."""
    m = max(2, min(KID_SUBSET_SIZE, len(a) // 2, len(b) // 2))
    k_aa, k_bb, k_ab = (_poly_kernel(x, y).double().numpy() for x, y in ((a, a), (b, b), (a, b)))
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(KID_SUBSETS):
        i, j = torch.randperm(len(a), generator=g)[:m].numpy(), torch.randperm(len(b), generator=g)[:m].numpy()
        within = k_aa[np.ix_(i, i)].sum() - k_aa[i, i].sum() + k_bb[np.ix_(j, j)].sum() - k_bb[j, j].sum()
        values.append(within / (m * (m - 1)) - 2 * k_ab[np.ix_(i, j)].mean())
    return np.array(values)


def kid(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of :func:`kid_subsets`."""
    values = kid_subsets(a, b, seed)
    return float(np.mean(values)), float(np.std(values))


def mean_pairwise_distance(feats: torch.Tensor) -> float:
    """Mean Euclidean distance between distinct rows (the first ``DIVERSITY_IMAGES``)."""
    f = feats[:DIVERSITY_IMAGES].double()
    n = len(f)
    return float(torch.cdist(f, f).sum() / (n * (n - 1)))


# --- the baseline ---------------------------------------------------------------------


def pca_gaussian(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` samples of the Gaussian with the pixel mean and covariance of
    ``images``, drawn in its PCA basis (all components), clipped to [0, 1].

    The principal axes come from the eigenvectors of the small Gram matrix
    (N x N, not the D x D covariance): for centred data X (N x D) with
    ``X X^T = U diag(l) U^T``, the axes are ``diag(l)^-1/2 U^T X`` with
    variances ``l / (N - 1)``, so a sample is ``mean + c U^T X / sqrt(N - 1)``
    with ``c ~ N(0, I)`` over the components kept (eigenvalues above
    1e-9 of the largest).
    """
    flat = images.flatten(1).double()
    mean = flat.mean(dim=0)
    centred = flat - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)
    keep = eigenvalues > eigenvalues.max() * 1e-9
    coefficients = torch.randn(n, int(keep.sum()), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    samples = mean + (coefficients @ eigenvectors[:, keep].T) @ centred / (len(flat) - 1) ** 0.5
    return samples.float().clamp(0, 1).view(n, *images.shape[1:])


# --- the whole comparison ---------------------------------------------------------------


def evaluate(reference: torch.Tensor, candidates: dict[str, torch.Tensor], seed: int = 0,
             on_set: Optional[Callable[[str], None]] = None, baseline: Optional[str] = None) -> dict[str, dict]:
    """Score each candidate set against ``reference`` (same n and size).

    Args:
        baseline: the name of the candidate to beat: every other set also
            gets ``kid_below_baseline``, the share of the KID subsets (the
            same subsets of the reference for both) in which its MMD^2 is
            below the baseline's. The spread of KID is mostly the reference
            subsets', so this paired count says whether a difference of
            means inside that spread is real.

    Returns:
        ``{name: {"swd_x1e3": {resolution: value}, "swd_avg_x1e3", "kid_x1e3",
        "kid_std_x1e3", "diversity"[, "kid_below_baseline"]}}``.
    """
    net = FeatureNet()
    ref_desc, ref_feat = swd_descriptors(reference, seed), features(reference, net)
    ref_spread = mean_pairwise_distance(ref_feat)
    resolutions = swd_levels(reference)
    results, subsets = {}, {}
    for name, images in candidates.items():
        if images.shape != reference.shape:
            raise ValueError(f"set '{name}' has shape {tuple(images.shape)}, the reference {tuple(reference.shape)}")
        desc = swd_descriptors(images, seed)
        swd = [1e3 * sliced_wasserstein(r, d, seed + level) for level, (r, d) in enumerate(zip(ref_desc, desc))]
        feat = features(images, net)
        subsets[name] = kid_subsets(feat, ref_feat, seed)
        results[name] = {
            "swd_x1e3": dict(zip(resolutions, swd)),
            "swd_avg_x1e3": float(np.mean(swd)),
            "kid_x1e3": 1e3 * float(np.mean(subsets[name])),
            "kid_std_x1e3": 1e3 * float(np.std(subsets[name])),
            "diversity": mean_pairwise_distance(feat) / ref_spread,
        }
        if on_set:
            on_set(name)
    if baseline in subsets:
        for name in results:
            if name != baseline:
                results[name]["kid_below_baseline"] = float(np.mean(subsets[name] < subsets[baseline]))
    return results


def format_table(results: dict[str, dict], title: str) -> str:
    resolutions = list(next(iter(results.values()))["swd_x1e3"])
    table = [["set", *(f"SWD{r}" for r in resolutions), "SWDavg", "KIDx1e3", "KID<base", "divers."]]
    for name, r in results.items():
        below = f"{100 * r['kid_below_baseline']:.0f}%" if "kid_below_baseline" in r else "-"
        table.append([name, *(f"{v:.2f}" for v in r["swd_x1e3"].values()), f"{r['swd_avg_x1e3']:.2f}",
                      f"{r['kid_x1e3']:.2f}+-{r['kid_std_x1e3']:.2f}", below, f"{r['diversity']:.3f}"])
    # each column as wide as its widest cell, two spaces apart: KID can be negative or 4 digits
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [title] + ["  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths)))
                       for row in table]
    return "\n".join(lines)
