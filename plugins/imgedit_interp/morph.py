"""The latents of a morph or a walk: a path through keyframe latents, one
latent per frame.

``frames`` is the number of frames of one transition, both ends included,
so a morph between two images with ``frames=16`` is 16 frames long, and K
keyframes give ``(K - 1) * (frames - 1) + 1`` frames: consecutive transitions
share their keyframe. With ``loop`` a last transition returns to the first
keyframe, whose frame is not repeated at the end, so the animation loops
without a stutter: ``K * (frames - 1)`` frames.

Within a transition the point ``t`` goes from 0 to 1 at constant speed
in the latent space (``linear``), eased (``smooth``: slow at the keyframes,
Hermite smoothstep; ``sine``: half a cosine), or ``even``: at constant
speed in how the *image* looks, so every frame changes the picture by the
same amount (the decoder does not turn equal latent steps into equal image
changes: faces often hold still, then change quickly). ``even`` decodes a
dense path (``DENSE_PER_FRAME`` points per frame), measures the distance
between neighbours in :func:`imgedit.features.ensemble_features` (eight
random feature networks, none of them the one ``imgedit eval interp``
judges with), and places the frames at equal distances along it.

Why an ensemble: one random network's steps are uneven by another's
measure (they respond unevenly to the same change), but their mean is
what any one draw scatters around. On 32 held-out faces64 pairs (seed 0),
the largest over smallest step along a 9-frame morph, worst pair (pairs
over 2), by the evaluation network and by five other random networks
(seeds 101-105) that paced nothing (the rows above the last with 8 dense
steps per frame; on the last row the coarser path now used moved no figure
by more than 0.01):

| paced by | eval network | seeds 101 / 102 / 103 / 104 / 105 |
|---|---|---|
| pixels (before) | 3.11 (6) | 3.02 / 2.96 / 2.84 / 2.94 / 3.24 |
| 1 network (seed 1) | 1.69 (0) | 1.75 / 2.30 / 5.34 (17) / 1.71 / 1.70 |
| 4 networks | 2.06 (1) | 1.77 / 1.90 / 2.72 (7) / 1.75 / 1.97 |
| 8 networks (``even``) | 1.84 (0) | 1.72 / 1.80 / 2.65 (7) / 1.62 / 1.77 |

One network alone paces well for some networks and badly for others; the
ensemble does for all but seed 103, which no ensemble tried brought under 2.
Pacing costs about 0.8 s per transition on 2 CPU cores. The latents are
interpolated spherically when the model's latents are Gaussian (see
:func:`imgedit.latents.interpolate`), linearly otherwise.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from imgedit.errors import UsageError
from imgedit.features import ensemble_features
from imgedit.latents import interpolate

EASINGS: dict[str, Callable[[float], float]] = {
    "linear": lambda t: t,
    "smooth": lambda t: t * t * (3 - 2 * t),
    "sine": lambda t: 0.5 - 0.5 * math.cos(math.pi * t),
}


# The dense path ``even`` measures: DENSE_PER_FRAME steps per frame, at most
# DENSE_MAX_STEPS per transition (its cost: each point is decoded and run
# through eight feature networks). On 8 held-out faces64 pairs the eval
# network's worst step ratio at 9/16/60 frames was 1.65/1.68/1.69 with 8
# steps per frame and no limit, and the same with 2 per frame or with these
# limits (at 60 frames a fifth of the time).
DENSE_PER_FRAME = 4
DENSE_MAX_STEPS = 64
EASE_NAMES = (*EASINGS, "even")

Decoder = Callable[[torch.Tensor], torch.Tensor]
Measure = Callable[[torch.Tensor], torch.Tensor]  # (N, *image) -> (N, F): rows whose distances are the steps


def transition_times(frames: int, ease: str = "linear") -> list[float]:
    """The ``frames`` points of one transition, 0 first and 1 last, eased
    (``even`` needs the decoder: see :func:`even_times`).

    Raises:
        UsageError: fewer than 2 frames or an unknown easing.
    """
    if frames < 2:
        raise UsageError(f"--frames must be at least 2 (both ends of a transition), got {frames}")
    if ease not in EASINGS:
        raise UsageError(f"unknown easing '{ease}' (known: {', '.join(EASE_NAMES)})")
    return [EASINGS[ease](j / (frames - 1)) for j in range(frames)]


def dense_points(frames: int) -> int:
    """How many points of a transition of ``frames`` frames ``even`` decodes and measures."""
    return min(DENSE_PER_FRAME * (frames - 1), max(DENSE_MAX_STEPS, frames - 1)) + 1


@torch.no_grad()
def even_times(decode: Decoder, a: torch.Tensor, b: torch.Tensor, frames: int, spherical: bool = True,
               measure: Measure = ensemble_features) -> list[float]:
    """The ``frames`` points of the transition from latent ``a`` to ``b``
    (each ``(1, *shape)``) at which the decoded image has moved equal
    distances in ``measure`` (0 first, 1 last)."""
    dense = torch.linspace(0, 1, dense_points(frames))
    images = decode(torch.cat([interpolate(a, b, float(t), spherical) for t in dense]))
    points = measure(images).flatten(1).float().cpu()
    travelled = torch.cat([torch.zeros(1), (points[1:] - points[:-1]).norm(dim=1).cumsum(0)])  # (D,)
    if travelled[-1] <= 0:  # the two keyframes decode alike: any pacing is even
        return torch.linspace(0, 1, frames).tolist()
    wanted = torch.linspace(0, float(travelled[-1]), frames)
    right = torch.searchsorted(travelled, wanted).clamp(1, len(dense) - 1)
    left = right - 1
    span = (travelled[right] - travelled[left]).clamp_min(1e-12)
    t = dense[left] + (wanted - travelled[left]) / span * (dense[right] - dense[left])
    t[0], t[-1] = 0.0, 1.0
    return t.tolist()


def path_latents(keys: torch.Tensor, frames: int, loop: bool = False, spherical: bool = True,
                 ease: str = "linear", decode: Optional[Decoder] = None, measure: Measure = ensemble_features) -> torch.Tensor:
    """One latent per frame along the keyframe latents ``keys`` ``(K, *shape)``.

    Args:
        decode: the model's decoder; needed only by ``ease="even"``.
        measure: what ``even`` makes equal steps in (see :func:`even_times`).

    Returns:
        ``(N, *shape)`` with N as in the module docstring; frame
        ``k * (frames - 1)`` is keyframe ``k`` exactly.

    Raises:
        UsageError: fewer than 2 keyframes, fewer than 2 frames, an unknown easing.
    """
    if keys.shape[0] < 2:
        raise UsageError(f"a morph needs at least 2 keyframes, got {keys.shape[0]}")
    if ease == "even" and decode is None:
        raise ValueError("ease='even' needs the model's decoder")
    fixed = transition_times(frames, "linear" if ease == "even" else ease)  # checks frames and ease
    ends = list(range(1, keys.shape[0])) + ([0] if loop else [])
    out = []
    for start, end in zip(range(len(ends)), ends):
        a, b = keys[start : start + 1], keys[end : end + 1]
        times = even_times(decode, a, b, frames, spherical, measure) if ease == "even" else fixed
        out += [a if t == 0 else interpolate(a, b, t, spherical) for t in times[:-1]]  # the end starts the next one
    if not loop:
        out.append(keys[-1:])
    return torch.cat(out)


def frame_count(keyframes: int, frames: int, loop: bool) -> int:
    """How many frames :func:`path_latents` returns."""
    return (keyframes if loop else keyframes - 1) * (frames - 1) + (0 if loop else 1)


def cross_fade(images: torch.Tensor, frames: int, loop: bool = False, ease: str = "linear") -> torch.Tensor:
    """The plain pixel cross-fade along keyframe images ``(K, C, H, W)``, frame
    for frame like :func:`path_latents` (the baseline a morph should beat;
    a linear cross-fade is already even in pixel distance)."""
    return path_latents(images, frames, loop=loop, spherical=False, ease="linear" if ease == "even" else ease)
