"""The GAN's networks and DiffAugment: shapes, budgets, gradients, and each
augmentation doing what it says on a case with a known answer."""

import pytest
import torch

from imgedit_gan.augment import color, cutout, diff_augment, parse_policy, translation
from imgedit_gan.model import Discriminator, GANConfig, Generator, count_parameters

from conftest import TINY_GAN


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_generator_and_discriminator_shapes(size, device):
    cfg = GANConfig(image_size=size, z_dim=16, g_width=8, d_width=8)
    G, D = Generator(cfg).to(device), Discriminator(cfg).to(device)
    images = G(torch.randn(3, 16, device=device))
    assert images.shape == (3, 3, size, size)
    assert images.abs().max() <= 1
    assert D(images).shape == (3,)


def test_default_model_fits_the_budget():
    cfg = GANConfig()
    assert cfg.image_size == 64 and cfg.z_dim == 128
    assert 1_000_000 <= count_parameters(Generator(cfg)) <= 3_000_000
    assert count_parameters(Discriminator(cfg)) < 1_500_000


@pytest.mark.parametrize("size", [4, 48, 100])
def test_image_size_must_be_a_power_of_two(size):
    with pytest.raises(ValueError, match="power of two"):
        Generator(GANConfig(image_size=size))


def test_config_round_trips():
    cfg = GANConfig(**TINY_GAN)
    assert GANConfig.from_dict(cfg.to_dict()) == cfg


def test_discriminator_is_spectrally_normalised():
    with torch.random.fork_rng():  # fixed weights and inputs, without touching other tests' random state
        torch.manual_seed(0)
        D = Discriminator(GANConfig(**TINY_GAN))
        raw = [float(torch.linalg.matrix_norm(p.detach().flatten(1), ord=2))
               for name, p in D.named_parameters() if name.endswith("original")]
        for _ in range(20):  # power iterations run in training mode
            D(torch.randn(4, 3, 16, 16))
    assert len(raw) == 3 and all(abs(n - 1.0) > 0.2 for n in raw)  # unnormalised, these weights are far from 1
    normalised = [layer for layer in [*D.features, D.score] if hasattr(layer, "parametrizations")]
    assert len(normalised) == 3  # two convolutions at 16x16, the linear score
    for layer in normalised:
        weight = layer.weight.detach().flatten(1)
        assert float(torch.linalg.matrix_norm(weight, ord=2)) == pytest.approx(1.0, abs=0.05)


# --- DiffAugment ----------------------------------------------------------------------


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_augment_is_reproducible_and_keeps_the_shape():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    a = diff_augment(x, "color,translation,cutout", _gen(3))
    assert a.shape == x.shape and torch.equal(a, diff_augment(x, "color,translation,cutout", _gen(3)))
    assert not torch.equal(a, diff_augment(x, "color,translation,cutout", _gen(4)))
    assert torch.equal(diff_augment(x, "none", _gen()), x) and torch.equal(diff_augment(x, "", _gen()), x)


def test_augment_is_differentiable():
    x = (torch.rand(2, 3, 8, 8) * 2 - 1).requires_grad_(True)
    diff_augment(x, "color,translation,cutout", _gen()).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    x64 = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: color(t, _gen(1)), (x64,))
    assert torch.autograd.gradcheck(lambda t: translation(t, _gen(1)), (x64,))


def test_translation_shifts_content_and_fills_zeros():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 4] = 1.0  # one bright pixel
    out = translation(x, _gen())
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # moved by at most 1 px: stays inside
    moved = (out[:, 0, 3, 4] == 0).sum()
    assert moved > 0  # some images moved
    edge = torch.ones(64, 1, 8, 8)
    assert (translation(edge, _gen()) == 0).any()  # the border filled in


def test_cutout_zeros_a_quarter_or_less():
    x = torch.ones(32, 3, 16, 16)
    out = cutout(x, _gen())
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 64).all()
    assert torch.equal(out[:, 0], out[:, 2])  # the same square in every channel


def test_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation blur"):
        parse_policy("color,blur")
