"""Tests for imgedit.noise.estimate_sigma."""

from __future__ import annotations

import pytest
import torch

from imgedit.errors import ShapeError
from imgedit.noise import estimate_sigma


def smooth_image(size: int = 256) -> torch.Tensor:
    """(1, 3, size, size) smooth mid-tone scene: gradients plus soft blobs."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.3 + 0.4 * x, 0.35 + 0.3 * y, 0.5 + 0.15 * torch.sin(3 * x + 2 * y)])
    for cx, cy, r, color in ((0.3, 0.3, 0.15, (0.7, 0.4, 0.3)), (0.7, 0.6, 0.2, (0.3, 0.6, 0.5))):
        d = ((x - cx) ** 2 + (y - cy) ** 2).sqrt()
        blob = torch.sigmoid((r - d) * 30)  # soft edge
        base = base * (1 - blob) + blob * torch.tensor(color)[:, None, None]
    return base[None]


def add_noise(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (image + torch.randn(image.shape, generator=g) * sigma / 255).clamp(0, 1)


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 50.0])
def test_estimate_close_to_truth(sigma):
    est = estimate_sigma(add_noise(smooth_image(), sigma)).item()
    assert abs(est - sigma) <= max(0.2 * sigma, 2.5), est


def test_clean_image_is_small():
    assert estimate_sigma(smooth_image()).item() < 3.0


def test_batch_gives_per_image_values():
    clean = smooth_image(128)
    batch = torch.cat([add_noise(clean, 10, seed=1), add_noise(clean, 40, seed=2), clean])
    est = estimate_sigma(batch)
    assert est.shape == (3,)
    assert est[0] == pytest.approx(10, rel=0.2)
    assert est[1] == pytest.approx(40, rel=0.2)
    assert est[2] < 3
    # Each image is estimated alone: batching does not mix them.
    assert est[1] == pytest.approx(estimate_sigma(batch[1:2])[0].item(), rel=1e-5)


def test_keeps_device_and_dtype():
    image = add_noise(smooth_image(64), 20).double()
    est = estimate_sigma(image)
    assert est.dtype == torch.float64 and est.device == image.device


@pytest.mark.parametrize("bad", [torch.rand(3, 16, 16), torch.zeros(1, 3, 16, 16, dtype=torch.uint8)])
def test_rejects_bad_input(bad):
    with pytest.raises(ShapeError):
        estimate_sigma(bad)


def test_runs_on_the_image_device(device):
    image = add_noise(smooth_image(64), 20).to(device)
    assert estimate_sigma(image).device == image.device


def test_sampled_estimate_matches_and_spans_the_frame():
    from imgedit.noise import estimate_sigma_sampled

    big = torch.nn.functional.interpolate(smooth_image(256), size=(1400, 1800), mode="bilinear")
    noisy = add_noise(big, 20.0)
    assert abs(estimate_sigma_sampled(noisy).item() - 20.0) < 2.0
    # small images fall back to the full estimate
    small = add_noise(smooth_image(128), 10.0)
    assert estimate_sigma_sampled(small).item() == estimate_sigma(small).item()
    # the crops cover the frame: noise only in the right three quarters is found
    part = big.clone()
    part[..., 450:] = noisy[..., 450:]
    assert abs(estimate_sigma_sampled(part, grid=4).item() - 20.0) < 2.0


@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (1, 3, 2, 2), (1, 3, 50, 1), (1, 3, 2, 16)])
def test_too_small_to_measure_gives_zero_like_a_clean_image(shape):
    from imgedit.noise import estimate_sigma_sampled

    noisy = torch.rand(shape, dtype=torch.float64)  # very noisy, but no 3x3 neighbourhood to measure it in
    for estimate in (estimate_sigma(noisy), estimate_sigma_sampled(noisy)):
        assert estimate.shape == (shape[0],) and estimate.dtype == torch.float64 and (estimate == 0).all()
    assert estimate_sigma(add_noise(smooth_image(3), 25)).item() > 0  # 3x3 is measured
