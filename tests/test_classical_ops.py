"""Tests for the classical OpenCV operations (plugins/imgedit_classical/ops.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from imgedit.errors import MaskError, ShapeError, UsageError
from imgedit.operations import Operation
from imgedit_classical import ops
from imgedit_classical.ops import OPERATIONS, denoise_nlm, inpaint_opencv, nlm_strength_h


def gradient_image(h: int = 64, w: int = 64) -> torch.Tensor:
    """(1, 3, h, w) smooth gradients: the ideal fill of any hole is known."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.5 + 0.2 * (x - y)])[None]


def hole_mask(h: int = 64, w: int = 64) -> torch.Tensor:
    mask = torch.zeros(1, 1, h, w)
    mask[..., 24:36, 20:40] = 1.0
    return mask


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1 / ((a - b) ** 2).mean())).item()


def noisy_smooth(sigma: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    clean = gradient_image(96, 96)
    g = torch.Generator().manual_seed(seed)
    return clean, (clean + torch.randn(clean.shape, generator=g) * sigma / 255).clamp(0, 1)


# ----------------------------------------------------------------- inpaint
@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_fills_hole_close_to_truth(method):
    truth, mask = gradient_image(), hole_mask()
    damaged = truth * (1 - mask)  # hole set to black: the fill must come from outside
    out = inpaint_opencv(damaged, mask, method=method, radius=5)
    hole = mask.expand_as(out) > 0.5
    assert (out[hole] - truth[hole]).abs().mean() < 0.05


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_keeps_known_pixels_bit_identical(method):
    image = gradient_image()
    image[..., :8, :8] = 0.123456  # not representable in 8 bits
    mask = hole_mask()
    out = inpaint_opencv(image, mask, method=method)
    known = mask.expand_as(out) < 0.5
    assert torch.equal(out[known], image[known])
    assert out.dtype == image.dtype and out.shape == image.shape


@pytest.mark.parametrize("method", ["telea", "ns"])
@pytest.mark.parametrize("radius", [3, 12])
def test_inpaint_works_on_the_holes_box_and_fills_as_over_the_whole_image(method, radius):
    # a small hole in a 48 MP photo converted the whole photo to 8 bits and back (5.3 s):
    # the crop must give the whole image's fill bit for bit
    import cv2
    import numpy as np

    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 96, 128, generator=generator)
    image = torch.nn.functional.avg_pool2d(image, 5, 1, 2)  # texture with some structure
    mask = torch.zeros(1, 1, 96, 128)
    mask[..., 0:9, 40:60] = 1  # at the border
    mask[..., 50:70, 100:110] = 1  # and a second hole far from it
    filled = inpaint_opencv(image, mask, method=method, radius=radius)
    hole8 = (mask[0, 0] > 0.5).numpy().astype(np.uint8) * 255
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    whole = ops._from_bgr8(cv2.inpaint(ops._to_bgr8(image[0]), hole8, float(radius), flag), image[0])
    assert torch.equal(filled[0], torch.where(mask[0] > 0.5, whole, image[0]))


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_fills_far_apart_holes_in_boxes_of_their_own_as_over_the_whole_image(method, monkeypatch):
    # two scratches in opposite corners of a scan were filled in one box the size of the scan
    # (24 MP: 6.1 s, 0.6 s in boxes of their own); here an L-shaped hole's box also takes in
    # a hole filled before it, whose fill it must keep
    import cv2
    import numpy as np

    generator = torch.Generator().manual_seed(5)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 300, 400, generator=generator), 5, 1, 2)
    mask = torch.zeros(1, 1, 300, 400)
    mask[..., 40:50, 40:50] = 1  # filled first, and inside the next hole's box
    mask[..., 150:156, 40:160] = 1  # an L, more than two margins from it: one arm
    mask[..., 45:156, 154:160] = 1  # and the other
    mask[..., 280:290, 380:395] = 1  # far away, at the border
    seen = []
    inpaint = cv2.inpaint
    monkeypatch.setattr(cv2, "inpaint", lambda src, *a: seen.append(src.shape[:2]) or inpaint(src, *a))
    filled = inpaint_opencv(image, mask, method=method, radius=5)
    hole8 = (mask[0, 0] > 0.5).numpy().astype(np.uint8) * 255
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    whole = ops._from_bgr8(inpaint(ops._to_bgr8(image[0]), hole8, 5.0, flag), image[0])
    assert torch.equal(filled[0], torch.where(mask[0] > 0.5, whole, image[0]))
    assert len(seen) == 3 and sum(h * w for h, w in seen) < 300 * 400 / 2


def test_inpaint_fills_nearby_holes_together():
    # holes within two margins of each other would read each other's pixels: one box
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:30, 10:20] = 1
    mask[..., 20:30, 30:40] = 1  # 10 px away; the margin at radius 5 is 7
    boxes = ops._hole_boxes(mask[0, 0] > 0.5, 7)
    assert boxes == [((13, 37, 3, 47), None)]
    assert ops._hole_boxes(torch.zeros(64, 64, dtype=torch.bool), 7) == []


def test_inpaint_batch_of_two_and_float64():
    image = torch.cat([gradient_image(), gradient_image().flip(-1)]).double()
    mask = torch.cat([hole_mask(), torch.zeros(1, 1, 64, 64)])  # second has no hole
    out = inpaint_opencv(image, mask)
    assert out.shape == (2, 3, 64, 64) and out.dtype == torch.float64
    assert torch.equal(out[1], image[1])
    assert (out[0] - image[0]).abs().max() < 0.1


def test_inpaint_single_mask_broadcasts_over_batch():
    image = torch.cat([gradient_image(), gradient_image()])
    out = inpaint_opencv(image, hole_mask())
    assert torch.equal(out[0], out[1])


def test_inpaint_errors():
    image = gradient_image()
    with pytest.raises(MaskError):
        inpaint_opencv(image, None)
    with pytest.raises(ShapeError):
        inpaint_opencv(image[0], hole_mask()[0])  # no batch dimension
    with pytest.raises(ShapeError):
        inpaint_opencv(image, torch.zeros(1, 1, 32, 32))  # mask of another size
    with pytest.raises(UsageError):
        inpaint_opencv(image, hole_mask(), method="magic")


# ----------------------------------------------------------------- denoise
def test_denoise_raises_psnr_at_sigma_25():
    clean, noisy = noisy_smooth(25)
    out = denoise_nlm(noisy, sigma=25.0)
    assert psnr(out, clean) > psnr(noisy, clean) + 3


def test_denoise_identities():
    _, noisy = noisy_smooth(15)
    assert torch.equal(denoise_nlm(noisy, sigma=0.0), noisy)
    assert torch.equal(denoise_nlm(noisy, sigma=15.0, strength=0.0), noisy)


def test_denoise_half_strength_is_between():
    clean, noisy = noisy_smooth(25)
    full = denoise_nlm(noisy, sigma=25.0)
    half = denoise_nlm(noisy, sigma=25.0, strength=0.5)
    assert torch.allclose(half, noisy + 0.5 * (full - noisy), atol=1e-6)
    assert psnr(noisy, clean) < psnr(half, clean) < psnr(full, clean)


def test_denoise_auto_uses_the_estimate(monkeypatch):
    import imgedit.noise

    clean, noisy = noisy_smooth(20)
    seen = []

    def fake_estimate(image):
        seen.append(image.shape)
        return torch.full((image.shape[0],), 20.0)

    monkeypatch.setattr(imgedit.noise, "estimate_sigma", fake_estimate)
    auto = denoise_nlm(noisy, sigma="auto")
    assert seen and torch.equal(auto, denoise_nlm(noisy, sigma=20.0))
    assert psnr(auto, clean) > psnr(noisy, clean) + 3


def test_denoise_preserves_shape_dtype_range():
    _, noisy = noisy_smooth(25)
    batch = torch.cat([noisy, noisy.flip(-1)]).double()
    out = denoise_nlm(batch)
    assert out.shape == batch.shape and out.dtype == torch.float64 and out.device == batch.device
    assert out.min() >= 0 and out.max() <= 1


def test_denoise_errors():
    _, noisy = noisy_smooth(5)
    with pytest.raises(ShapeError):
        denoise_nlm(noisy[0])
    with pytest.raises(ShapeError):
        denoise_nlm(noisy[:, :1])
    for bad in ({"sigma": -1.0}, {"sigma": "loud"}, {"strength": 1.5}):
        with pytest.raises(UsageError):
            denoise_nlm(noisy, **bad)


def test_a_gray_image_is_denoised_as_gray_and_better_than_the_colour_nlm_does():
    import cv2

    clean = gradient_image(96, 96).mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    g = torch.Generator().manual_seed(1)
    noisy = (clean + torch.randn(1, 1, 96, 96, generator=g).expand(-1, 3, -1, -1) * 25 / 255).clamp(0, 1)
    out = denoise_nlm(noisy, sigma=25.0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])  # gray stays gray
    h = nlm_strength_h(25.0)
    colour = cv2.fastNlMeansDenoisingColored(ops._to_bgr8(noisy[0]), None, h, h, ops.NLM_TEMPLATE, ops.NLM_SEARCH)
    assert psnr(out, clean) > psnr(ops._from_bgr8(colour, noisy[0])[None], clean) + 1


def test_nlm_rule():
    assert nlm_strength_h(20.0) == pytest.approx(ops.NLM_H_PER_SIGMA * 20.0)


# ----------------------------------------------------------------- declarations
def by_key() -> dict[str, Operation]:
    return {op.key: op for op in OPERATIONS}


def test_declarations():
    ops_ = by_key()
    assert set(ops_) == {"inpaint.telea", "inpaint.ns", "denoise.nlm"}
    for key in ("inpaint.telea", "inpaint.ns"):
        op = ops_[key]
        caps = op.capabilities
        assert caps.needs_mask and not caps.tileable and caps.precisions == ("fp32",)
        assert set(caps.devices) == {"cpu", "cuda", "mps"}
        radius = op.param("radius")
        assert (radius.type, radius.default, radius.minimum, radius.maximum) == (int, 5, 1, 50)
    den = ops_["denoise.nlm"]
    assert den.capabilities.tileable and den.capabilities.tile_overlap >= 13
    assert not den.capabilities.needs_mask
    assert den.param("sigma").allow_auto and den.param("sigma").default == "auto"
    assert den.param("strength").default == 1.0
    assert all(op.priority == 0 and op.description and "\n" not in op.description for op in OPERATIONS)


def test_create_builds_working_appliers():
    context = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32)
    ops_ = by_key()
    inpaint = ops_["inpaint.ns"].create(context, **ops_["inpaint.ns"].parse_params({"radius": "3"}))
    truth, mask = gradient_image(), hole_mask()
    out = inpaint(truth * (1 - mask), mask)
    assert (out - truth).abs().mean() < 0.01

    params = ops_["denoise.nlm"].parse_params({"sigma": "auto", "strength": "1"})
    denoise = ops_["denoise.nlm"].create(context, **params)
    clean, noisy = noisy_smooth(25)
    assert psnr(denoise(noisy, None), clean) > psnr(noisy, clean) + 3
    with pytest.raises(ShapeError):
        denoise(noisy[0], None)


def test_param_validation():
    den = by_key()["denoise.nlm"]
    with pytest.raises(UsageError):
        den.parse_params({"sigma": "300"})
    with pytest.raises(UsageError):
        by_key()["inpaint.telea"].parse_params({"radius": "0"})


def test_ops_stay_on_the_device(device):
    image, mask = gradient_image().to(device), hole_mask().to(device)
    assert inpaint_opencv(image, mask).device == image.device
    assert denoise_nlm(image, sigma=10.0).device == image.device


def test_import_is_cheap():
    import os
    import subprocess
    import sys

    code = "import sys, imgedit_classical.ops; print('torch' in sys.modules or 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


def test_nlm_auto_denoises_every_tile_at_the_whole_images_noise_level():
    from imgedit.pipeline import Pipeline

    torch.manual_seed(0)
    clean = torch.linspace(0, 1, 192).view(1, 1, 1, 192).expand(1, 3, 160, 192).clone()
    noise = torch.randn_like(clean) * (torch.linspace(12, 28, 192) / 255)  # more noise to the right: tiles differ
    noisy = (clean + noise).clamp(0, 1)
    built = Pipeline.parse("denoise method=nlm").build("cpu")
    whole = built.apply(noisy, tile=0)
    tiled = built.apply(noisy, tile=64)
    assert (whole - tiled).abs().max() <= 2 / 255  # rounding to 8 bits where tiles overlap, no level steps


def test_the_colour_nlm_keeps_the_image_s_colour():
    # OpenCV's colour NLM goes through 8-bit Lab: green and blue came out 1.5 levels darker on a flat patch
    g = torch.Generator().manual_seed(0)
    clean = torch.tensor([0.3, 0.55, 0.7]).view(1, 3, 1, 1).expand(1, 3, 96, 96)
    noisy = (clean + torch.randn(1, 3, 96, 96, generator=g) * 25 / 255).clamp(0, 1)
    out = denoise_nlm(noisy, sigma=25)
    shift = (out - clean).mean((0, 2, 3)) * 255
    assert shift.abs().max() < 0.5, shift.tolist()
    assert (out - clean).std() < (noisy - clean).std() / 3  # and still denoised
