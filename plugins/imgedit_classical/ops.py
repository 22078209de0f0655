"""Classical (weight-free) operations built on OpenCV: inpainting with Telea's
fast marching method or Navier-Stokes, and non-local-means denoising.

Every function follows the image contract: ``(B, 3, H, W)`` float RGB in
[0, 1] in, the same shape, dtype and device out. OpenCV runs on the CPU on
8-bit BGR, so each function converts per image and converts back; no BGR and
no uint8 leak out.

Importing this module is cheap (the plugin registers at start-up): torch,
numpy and OpenCV are imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from imgedit.errors import MaskError, ShapeError, UsageError
from imgedit.operations import Capabilities, Operation, Param

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch

__all__ = ["OPERATIONS", "denoise_nlm", "inpaint_opencv", "nlm_strength_h"]

INPAINT_METHODS = ("telea", "ns")

# NLM windows (OpenCV's recommended defaults): the output pixel depends on a
# (SEARCH + TEMPLATE - 1)-wide neighbourhood, radius 13; with the colour
# correction's blur (3 x NLM_CAST_BLUR), 37; tiles get 40.
NLM_TEMPLATE = 7
NLM_SEARCH = 21

# OpenCV's colour NLM works in 8-bit Lab and back, which shifts the colours
# (Kodak24's first 8 photos, clipped noise: mean R/G/B -0.1/-0.7/-1.2 levels at
# sigma 15, +0.4/-1.6/-2.2 at 25, +2.5/-5.1/-5.4 at 50; a warm cast a
# photographer saw). Adding back the low frequencies of what it took away
# (a Gaussian of this sigma, in px) puts most of it back (-0.1/-0.1/+0.2,
# -0.2/0.0/+0.7, -0.1/+1.2/+3.4 left: the clipped noise's own bias), and PSNR
# rises by 0.12/0.19/0.27 dB there; a 4-px blur gains more PSNR but leaves
# colour blotches at sigma 50, a 16-px one corrects less (0.07/0.12/0.18 dB).
NLM_CAST_BLUR = 8.0

# h = NLM_H_PER_SIGMA * sigma (both on 0-255), see nlm_strength_h.
NLM_H_PER_SIGMA = 0.55

# Grayscale images take OpenCV's one-channel NLM, which compares the gray
# values themselves (not Lab's lightness), so its h is near sigma. On 8 gray
# cbsd432 training photos, PSNR at sigma 15/25/50 (colour NLM, h = 0.55 sigma:
# 27.98/24.43/19.19): h = 0.7 sigma 28.57/26.22/24.08, 0.85 sigma
# 30.06/27.75/24.64, 1.0 sigma 30.07/27.58/24.21, 1.15 sigma 29.63/26.92/23.84.
NLM_GRAY_H_PER_SIGMA = 0.9


def _check_image(image: "torch.Tensor", what: str) -> None:
    """Raise ShapeError unless ``image`` is a (B, 3, H, W) float tensor."""
    import torch

    if not isinstance(image, torch.Tensor):
        raise ShapeError(what, "a (B, 3, H, W) float tensor", type(image).__name__)
    if image.ndim != 4 or image.shape[1] != 3:
        raise ShapeError(what, "shape (B, 3, H, W)", tuple(image.shape))
    if not image.is_floating_point():
        raise ShapeError(what, "a float tensor in [0, 1]", image.dtype)


def _check_mask(mask: Optional["torch.Tensor"], image: "torch.Tensor", what: str) -> None:
    import torch

    if mask is None:
        raise MaskError(f"{what}: inpainting needs a hole mask, got none")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] != 1:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ShapeError(f"{what} mask", "shape (B, 1, H, W)", got)
    b, _, h, w = image.shape
    if mask.shape[-2:] != (h, w) or mask.shape[0] not in (1, b):
        raise ShapeError(f"{what} mask", f"shape ({b}, 1, {h}, {w}) to match the image", tuple(mask.shape))


def _to_bgr8(image: "torch.Tensor") -> "np.ndarray":
    """(3, H, W) float RGB in [0, 1] -> (H, W, 3) uint8 BGR, contiguous for OpenCV."""
    import numpy as np

    rgb = image.detach().float().clamp(0, 1).mul(255).round().to("cpu").numpy().astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1])


def _from_bgr8(bgr: "np.ndarray", like: "torch.Tensor") -> "torch.Tensor":
    """(H, W, 3) uint8 BGR -> (3, H, W) float RGB in [0, 1] on ``like``'s device and dtype."""
    import numpy as np
    import torch

    rgb = np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1))
    return torch.from_numpy(rgb).to(device=like.device, dtype=like.dtype) / 255.0


def inpaint_opencv(
    image: "torch.Tensor", mask: Optional["torch.Tensor"], *, method: str = "telea", radius: int = 5
) -> "torch.Tensor":
    """Fill the hole with OpenCV's Telea (fast marching) or Navier-Stokes inpainting.

    OpenCV inpaints 3-channel images only in 8 bits, so the hole is filled
    from the 8-bit rounded image, but known pixels are copied from the input:
    they stay bit-identical (16-bit sources keep their precision there).

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1].
        mask: ``(B, 1, H, W)`` (or ``(1, 1, H, W)`` for the whole batch),
            values > 0.5 are the hole.
        method: ``"telea"`` or ``"ns"``.
        radius: neighbourhood radius in pixels considered around each filled pixel.

    Returns:
        ``(B, 3, H, W)`` tensor, same dtype and device as ``image``.

    Raises:
        ShapeError: ``image`` or ``mask`` does not follow the contract.
        MaskError: ``mask`` is None.
        UsageError: unknown ``method`` or ``radius`` < 1.

    Example:
        >>> image = torch.rand(1, 3, 32, 32)
        >>> mask = torch.zeros(1, 1, 32, 32); mask[..., 10:20, 10:20] = 1
        >>> inpaint_opencv(image, mask, method="ns").shape
        torch.Size([1, 3, 32, 32])
    """
    import cv2
    import numpy as np
    import torch

    _check_image(image, "inpaint image")
    _check_mask(mask, image, "inpaint")
    if method not in INPAINT_METHODS:
        raise UsageError(f"inpaint: method must be one of {', '.join(INPAINT_METHODS)}, got {method!r}")
    if int(radius) < 1:
        raise UsageError(f"inpaint: radius must be >= 1, got {radius}")
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    hole = (mask > 0.5).expand(image.shape[0], 1, *image.shape[-2:])  # (B, 1, H, W) bool
    out = image.clone()
    for k, h in enumerate(hole):
        # Only boxes around the holes, with a margin past the radius: both methods read no pixel further
        # from the hole, so the fill is the whole image's bit for bit (checked on Kodak, radius 1-12, 192 masks), and
        # small holes in a 48 MP photo are not converted to 8 bits and back whole (5.3 s -> well under one)
        for (top, bottom, left, right), own in _hole_boxes(h[0], int(radius) + 2):
            crop, crop_hole = image[k, :, top:bottom, left:right], h[:, top:bottom, left:right]
            h8 = crop_hole[0].to("cpu").numpy().astype(np.uint8) * 255  # (h, w), 255 = hole
            fill = _from_bgr8(cv2.inpaint(_to_bgr8(crop), h8, float(radius), flag), crop)
            paste = crop_hole if own is None else crop_hole & own.to(crop_hole.device)
            region = out[k, :, top:bottom, left:right]  # boxes may overlap: keep what another box filled
            region.copy_(torch.where(paste, fill, region))
    return out


#: What one more box costs, as pixels of a fill's work: its calls and copies (0.17 ms a box, 0.09 us a
#: pixel, on this project's 2-core machine). 10 000 one-pixel specks on a 4 MP scan took 1.7 s in boxes, 0.36 s whole.
BOX_COST_PIXELS = 2000


def _hole_boxes(hole: "torch.Tensor", margin: int) -> list:
    """Boxes ``(top, bottom, left, right)`` to fill ``hole`` ((H, W) bool) in,
    each with a margin, and which of its hole pixels are its own to paste
    (None: all of them).

    Holes further apart than two margins are filled in boxes of their own,
    where that is less than half the work of one box around them all,
    counting each box's own cost (:data:`BOX_COST_PIXELS`) (two
    scratches in opposite corners of a 24 MP scan), so no fill reads another
    hole's pixels; any other hole inside a box stays a hole there, as it is
    in the whole image, and is pasted from its own box."""
    import cv2
    import numpy as np
    import torch

    rows, cols = torch.nonzero(hole.any(1)), torch.nonzero(hole.any(0))
    if not len(rows):  # nothing to fill; cv2 would just copy
        return []
    height, width = hole.shape
    top, bottom = max(0, int(rows[0]) - margin), min(height, int(rows[-1]) + 1 + margin)
    left, right = max(0, int(cols[0]) - margin), min(width, int(cols[-1]) + 1 + margin)
    whole = [((top, bottom, left, right), None)]
    sub = hole[top:bottom, left:right].to("cpu").numpy().astype(np.uint8)
    # a square kernel: two holes' grown regions touch unless they are more than 2 * margin + 1 apart
    grown = cv2.dilate(sub, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    boxes = stats[1:, :4]  # x, y, w, h of each grown hole: its pixels plus the margin
    if count <= 2 or (int((boxes[:, 2] * boxes[:, 3]).sum()) + BOX_COST_PIXELS * len(boxes)) * 2 > sub.size:
        return whole
    labels = torch.from_numpy(labels)
    return [((top + y, top + y + h, left + x, left + x + w), labels[y:y + h, x:x + w] == index + 1)
            for index, (x, y, w, h) in enumerate(boxes.tolist())]


def nlm_strength_h(sigma: float) -> float:
    """OpenCV NLM filter strength ``h`` for noise std ``sigma`` (both on 0-255).

    Rule: ``h = 0.55 * sigma``, for both the luminance and the colour
    strength. OpenCV filters in 8-bit CIELab, where RGB noise of std sigma
    shows up smaller than sigma, so the textbook ``h ~ sigma`` over-smooths.
    Tuned on a smooth synthetic image and six Kodak crops at sigma 5/15/25/50:
    factors 0.55-0.6 gave the best PSNR at every level (e.g. sigma 25, Kodak:
    26.5 dB at 0.55, 25.0 at 0.9, 24.6 at 1.0; noisy input 20.2); 0.3 leaves
    noise, >= 0.8 washes out detail; separate colour strengths did not help.

    Args:
        sigma: noise std on 0-255.

    Returns:
        ``h`` for ``cv2.fastNlMeansDenoisingColored``.

    Example:
        >>> nlm_strength_h(20.0)
        11.0
    """
    return NLM_H_PER_SIGMA * float(sigma)


def _nlm_one(img: "torch.Tensor", sigma: float) -> "torch.Tensor":
    """Denoise one (3, H, W) image with NLM at noise level ``sigma`` (0-255);
    a gray one (equal channels) with the one-channel NLM, so it stays gray."""
    import cv2
    import numpy as np

    bgr = _to_bgr8(img)
    if _equal_channels(img):
        gray = cv2.fastNlMeansDenoising(np.ascontiguousarray(bgr[..., 0]), None, NLM_GRAY_H_PER_SIGMA * float(sigma),
                                        NLM_TEMPLATE, NLM_SEARCH)
        return _from_bgr8(np.repeat(gray[..., None], 3, axis=-1), img)
    h = nlm_strength_h(sigma)
    out = _from_bgr8(cv2.fastNlMeansDenoisingColored(bgr, None, h, h, NLM_TEMPLATE, NLM_SEARCH), img)
    return (out + _low_pass(img - out, NLM_CAST_BLUR)).clamp(0, 1)  # the colour cast of Lab's 8 bits taken back


def _low_pass(image: "torch.Tensor", sigma: float) -> "torch.Tensor":
    """A Gaussian blur of a (3, H, W) image, mirrored at its border."""
    import cv2
    import numpy as np
    import torch

    hwc = np.ascontiguousarray(image.detach().float().cpu().numpy().transpose(1, 2, 0))
    size = 2 * round(3 * sigma) + 1  # 3 sigma each side, which the tile overlap covers (OpenCV's own: 4 for floats)
    blurred = cv2.GaussianBlur(hwc, (size, size), sigma, borderType=cv2.BORDER_REFLECT)
    return torch.from_numpy(blurred.transpose(2, 0, 1)).to(device=image.device, dtype=image.dtype)


def _equal_channels(img: "torch.Tensor") -> bool:
    """Whether a (3, H, W) image is gray: its three channels equal."""
    import torch

    return bool(torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]))


def denoise_nlm(
    image: "torch.Tensor", *, sigma: Union[float, str] = "auto", strength: float = 1.0
) -> "torch.Tensor":
    """Remove Gaussian-like noise with OpenCV's non-local means (the colour
    version; gray images, with three equal channels, the one-channel one).

    Args:
        image: ``(B, 3, H, W)`` float RGB in [0, 1].
        sigma: noise std on the 0-255 scale, or ``"auto"`` to estimate it per
            image with :func:`imgedit.noise.estimate_sigma`. 0 returns the input.
        strength: in [0, 1]; blends ``out = image + strength * (denoised - image)``.

    Returns:
        ``(B, 3, H, W)`` tensor, same dtype and device as ``image``, in [0, 1].

    Raises:
        ShapeError: ``image`` does not follow the contract.
        UsageError: ``sigma`` is negative or not a number/"auto"; ``strength``
            is outside [0, 1].

    Example:
        >>> noisy = (torch.full((1, 3, 64, 64), 0.5) + torch.randn(1, 3, 64, 64) * 0.1).clamp(0, 1)
        >>> denoise_nlm(noisy, sigma=25.0).shape
        torch.Size([1, 3, 64, 64])
    """
    import torch

    _check_image(image, "denoise image")
    auto = isinstance(sigma, str)
    if auto and sigma.lower() != "auto":
        raise UsageError(f"denoise: sigma must be a number or 'auto', got {sigma!r}")
    if not auto and not float(sigma) >= 0:
        raise UsageError(f"denoise: sigma must be >= 0, got {sigma}")
    if not 0.0 <= float(strength) <= 1.0:
        raise UsageError(f"denoise: strength must be in [0, 1], got {strength}")
    if float(strength) == 0.0 or (not auto and float(sigma) == 0.0):
        return image.clone()
    if auto:
        from imgedit.noise import estimate_sigma

        sigmas = [float(s) for s in estimate_sigma(image)]
    else:
        sigmas = [float(sigma)] * image.shape[0]
    outs = [_nlm_one(img, s) if s > 0 else img for img, s in zip(image, sigmas)]
    denoised = torch.stack(outs)
    return (image + float(strength) * (denoised - image)).clamp(0, 1)


def _create_inpaint(method: str):
    def create(context: Any = None, *, radius: int = 5):
        radius = int(radius)

        def apply(image: "torch.Tensor", mask: Optional["torch.Tensor"]) -> "torch.Tensor":
            return inpaint_opencv(image, mask, method=method, radius=radius)

        return apply

    return create


class _NlmApplier:
    """:func:`denoise_nlm` as an applier. With ``sigma="auto"`` the host
    calls :meth:`prepare` on the whole image before tiling it, so every tile
    is denoised at the image's noise level: estimated per tile, the levels
    differed by up to 2 and the tiles' results by up to 18/255."""

    def __init__(self, sigma: Union[float, str], strength: float, levels: Optional[list] = None):
        self.sigma, self.strength, self.levels = sigma, strength, levels

    def prepare(self, image: "torch.Tensor", mask: Optional["torch.Tensor"] = None) -> "_NlmApplier":
        if not (isinstance(self.sigma, str) and self.sigma.lower() == "auto"):  # other text: denoise_nlm refuses it
            return self
        from imgedit.noise import describe_estimate, estimate_sigma_sampled, settle_estimate

        prepared = _NlmApplier(self.sigma, self.strength, settle_estimate(estimate_sigma_sampled(image)))
        prepared.note = describe_estimate(prepared.levels)
        return prepared

    def __call__(self, image: "torch.Tensor", mask: Optional["torch.Tensor"] = None) -> "torch.Tensor":
        # Denoising uses no mask; it is accepted for the common applier signature.
        if self.levels is None or len(self.levels) != image.shape[0]:  # called without prepare: per call
            return denoise_nlm(image, sigma=self.sigma, strength=self.strength)
        import torch

        return torch.cat([denoise_nlm(one[None], sigma=level, strength=self.strength)
                          for one, level in zip(image, self.levels)])


def _create_denoise(context: Any = None, *, sigma: Union[float, str] = "auto", strength: float = 1.0):
    return _NlmApplier(sigma, strength)


_RADIUS = Param("radius", int, 5, help="inpainting neighbourhood radius in pixels", minimum=1, maximum=50)

# The ops copy to CPU numpy themselves, so any device works (the result goes
# back to the input's device); OpenCV works in 8 bits, so fp32 only.
_INPAINT_CAPS = Capabilities(
    devices=("cpu", "cuda", "mps"), precisions=("fp32",), tileable=False,
    memory_mb_per_megapixel=60.0, needs_mask=True,
)
_DENOISE_CAPS = Capabilities(
    devices=("cpu", "cuda", "mps"), precisions=("fp32",), tileable=True,
    tile_overlap=40, memory_mb_per_megapixel=80.0,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        name="inpaint", method="telea", create=_create_inpaint("telea"), params=(_RADIUS,),
        capabilities=_INPAINT_CAPS, priority=0,
        description="Fill the hole by Telea's fast marching method (OpenCV); quick, best for small holes",
    ),
    Operation(
        name="inpaint", method="ns", create=_create_inpaint("ns"), params=(_RADIUS,),
        capabilities=_INPAINT_CAPS, priority=0,
        description="Fill the hole by Navier-Stokes fluid-flow inpainting (OpenCV); smooth fills for thin holes",
    ),
    Operation(
        name="denoise", method="nlm", create=_create_denoise, capabilities=_DENOISE_CAPS, priority=0,
        params=(
            Param("sigma", float, "auto", help="noise std on the 0-255 scale, or auto",
                  allow_auto=True, minimum=0, maximum=255),
            Param("strength", float, 1.0, help="blend with the input: 0 = unchanged, 1 = fully denoised",
                  minimum=0, maximum=1),
        ),
        description="Remove noise by non-local means (OpenCV), noise level given or estimated",
    ),
)
