"""The conditional VAE itself: shapes, conditioning input, latent, KL."""

from dataclasses import replace

import pytest
import torch

from imgedit_vae.model import ConditionalVAE, VAEConfig, count_parameters, kl_divergence
from imgedit_vae.weight_surgery import grow_from

SMALL = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ConditionalVAE(SMALL).eval()
    torch.nn.init.normal_(m.decoder.head.weight, std=0.02)  # not the identity start, so outputs depend on inputs
    return m


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 5, 7), (2, 3, 17, 33), (1, 3, 64, 48), (1, 3, 15, 200)])
def test_any_size_in_same_size_out(model, shape):
    image = torch.rand(shape)
    out, mean, logvar = model(image, torch.zeros(shape[0], 1, *shape[-2:]))
    assert out.shape == image.shape
    assert mean.shape == logvar.shape
    assert mean.shape[:2] == (shape[0], SMALL.latent_channels)
    assert torch.isfinite(out).all()


def test_starts_as_the_identity_on_the_input():
    m = ConditionalVAE(SMALL)
    image = torch.rand(1, 3, 32, 32)
    out, _, _ = m(image, torch.rand(1, 1, 32, 32))
    assert torch.equal(out, image)


def test_condition_planes_change_the_output(model):
    image = torch.rand(1, 3, 32, 32)
    a, _, _ = model(image, torch.zeros(1, 1, 32, 32))
    b, _, _ = model(image, torch.full((1, 1, 32, 32), 0.2))
    assert (a - b).abs().max() > 1e-6


def test_mean_is_deterministic_and_samples_differ_by_seed(model):
    image, cond = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    assert torch.equal(model(image, cond)[0], model(image, cond)[0])
    s1 = model(image, cond, sample=True, generator=torch.Generator().manual_seed(1))[0]
    s1b = model(image, cond, sample=True, generator=torch.Generator().manual_seed(1))[0]
    s2 = model(image, cond, sample=True, generator=torch.Generator().manual_seed(2))[0]
    assert torch.equal(s1, s1b)
    assert not torch.equal(s1, s2)


def test_kl_is_zero_for_the_prior_and_positive_otherwise():
    zeros = torch.zeros(2, 4, 3, 3)
    assert kl_divergence(zeros, zeros).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_divergence(torch.ones_like(zeros), zeros).item() == pytest.approx(0.5)
    assert kl_divergence(zeros, torch.full_like(zeros, 1.0)).item() > 0


def test_gradients_reach_every_parameter(model):
    m = ConditionalVAE(SMALL)
    torch.nn.init.normal_(m.decoder.head.weight, std=0.02)
    out, mean, logvar = m(torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32), sample=True)
    (out.mean() + kl_divergence(mean, logvar)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_config_round_trip():
    cfg = VAEConfig(widths=(8, 16), blocks=(1, 2), latent_channels=3, cond_channels=2)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert "decoder_blocks" not in cfg.to_dict()  # cards written before it existed read the same
    deeper = replace(cfg, decoder_blocks=(1, 3))
    assert VAEConfig.from_dict(deeper.to_dict()) == deeper and deeper.to_dict()["decoder_blocks"] == [1, 3]
    assert len(ConditionalVAE(deeper).decoder.stages[1]) == 3 and len(ConditionalVAE(deeper).encoder.stages[1]) == 2
    assert cfg.multiple == 4
    assert count_parameters(ConditionalVAE(cfg)) > 0


def test_a_grown_model_computes_what_the_narrow_one_did_and_its_new_channels_learn(model):
    wide = ConditionalVAE(VAEConfig(widths=(12, 24, 16, 20), blocks=(1, 1, 1, 1), latent_channels=4))
    grow_from(wide, model.state_dict())
    image, cond = torch.rand(2, 3, 40, 24), torch.rand(2, 1, 40, 24)
    with torch.no_grad():
        assert torch.allclose(wide(image, cond)[0], model(image, cond)[0], atol=1e-5)
    # the zeroed weights from new channels into old ones get gradients: the new channels are not dead
    out, _, _ = wide(image, cond)
    (out - image.flip(-1)).abs().mean().backward()
    stem_into_old = wide.decoder.stages[0][0].conv1.weight.grad[:8, 8:]
    assert stem_into_old.abs().sum() > 0
    assert wide.decoder.head.weight.grad[:, 8:].abs().sum() > 0


def test_growing_refuses_weights_that_do_not_fit(model):
    narrow = ConditionalVAE(VAEConfig(widths=(4, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4))
    with pytest.raises(ValueError, match="does not fit"):
        grow_from(narrow, model.state_dict())
    shallower = ConditionalVAE(VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4,
                                         decoder_blocks=(1, 1, 1, 1)))
    deeper = ConditionalVAE(replace(SMALL, decoder_blocks=(1, 1, 1, 2)))
    grow_from(deeper, model.state_dict())
    with pytest.raises(ValueError, match=r"residual blocks this model lacks \(decoder.stages.3.1\)"):
        grow_from(shallower, deeper.state_dict())
    other = ConditionalVAE(VAEConfig(widths=(8, 16, 16), blocks=(1, 1, 1), latent_channels=4))
    with pytest.raises(ValueError, match="another architecture"):
        grow_from(other, model.state_dict())


def test_a_model_grown_deeper_computes_what_the_shallow_one_did_and_its_new_blocks_learn(model):
    deeper = ConditionalVAE(replace(SMALL, blocks=(2, 1, 1, 1), decoder_blocks=(1, 1, 2, 3)))
    grow_from(deeper, model.state_dict())
    image, cond = torch.rand(2, 3, 40, 24), torch.rand(2, 1, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(deeper(image, cond)[0], model(image, cond)[0], atol=1e-6, rtol=0)
    new = [deeper.encoder.stages[0][1], deeper.decoder.stages[2][1], deeper.decoder.stages[3][1], deeper.decoder.stages[3][2]]
    assert all(not block.conv2.weight.any() and block.conv1.weight.any() for block in new)
    out, _, _ = deeper(image, cond)
    (out - image.flip(-1)).abs().mean().backward()
    assert all(block.conv2.weight.grad.abs().sum() > 0 for block in new)  # each new block learns at once


def test_the_bridge_starts_silent_on_grown_weights_then_carries_the_deepest_level(model):
    bridged = ConditionalVAE(replace(SMALL, bridge=True))
    grow_from(bridged, model.state_dict())
    image, cond = torch.rand(2, 3, 40, 24), torch.rand(2, 1, 40, 24)
    with torch.no_grad():
        assert torch.equal(bridged(image, cond)[0], model(image, cond)[0])
    out, _, _ = bridged(image, cond)
    (out - image.flip(-1)).abs().mean().backward()
    assert bridged.decoder.bridge.weight.grad.abs().sum() > 0  # the new path learns at once
    # once it has weights, the deepest encoder level changes the output without the latent's help
    with torch.no_grad():
        torch.nn.init.normal_(bridged.decoder.bridge.weight, std=0.1)
        before = bridged(image, cond)[0]
        bridged.encoder.stages[-1][0].conv2.bias += 1.0
        assert (bridged(image, cond)[0] - before).abs().max() > 1e-4


def test_bridged_weights_into_a_bridgeless_model_say_what_it_lacks(model):
    bridged = ConditionalVAE(replace(SMALL, bridge=True))
    grow_from(bridged, model.state_dict())
    with pytest.raises(ValueError, match="have a bridge this model lacks"):
        grow_from(ConditionalVAE(SMALL), bridged.state_dict())


def test_growing_still_refuses_weights_that_lack_a_trained_parameter(model):
    for lacking in ("encoder.stem.bias", "decoder.head.weight"):  # the head starts at zero too: still refused
        tensors = {k: v for k, v in model.state_dict().items() if k != lacking}
        with pytest.raises(ValueError, match="another architecture"):
            grow_from(ConditionalVAE(SMALL), tensors)


INPAINT = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4, residual=False)


def hole(shape):
    mask = torch.zeros(shape[0], 1, *shape[-2:])
    mask[..., shape[-2] // 4 : shape[-2] // 2, shape[-1] // 4 : shape[-1] // 2] = 1
    return mask


@pytest.mark.parametrize("shape", [(1, 3, 9, 13), (2, 3, 40, 56)])
def test_inpaint_vae_keeps_known_pixels_and_fills_in_range(shape):
    from imgedit_vae.model import InpaintVAE

    torch.manual_seed(0)
    model = InpaintVAE(INPAINT).eval()
    image, mask = torch.rand(shape), hole(shape)
    out, raw, moments = model(image, mask)
    assert out.shape == raw.shape == image.shape
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    assert 0 <= out.min() and out.max() <= 1
    assert set(moments) == {"prior_mean", "prior_logvar"}


def test_inpaint_vae_ignores_hole_pixels_and_samples_vary():
    from imgedit_vae.model import InpaintVAE

    torch.manual_seed(0)
    model = InpaintVAE(INPAINT).eval()
    image = torch.rand(1, 3, 32, 32)
    mask = hole(image.shape)
    other = torch.where(mask.bool(), torch.rand_like(image), image)  # different content in the hole only
    assert torch.equal(model(image, mask)[0], model(other, mask)[0])
    a = model(image, mask, "sample", torch.Generator().manual_seed(1))[0]
    b = model(image, mask, "sample", torch.Generator().manual_seed(2))[0]
    a2 = model(image, mask, "sample", torch.Generator().manual_seed(1))[0]
    assert torch.equal(a, a2) and not torch.equal(a, b)
    _, _, moments = model(image, mask, "posterior", torch.Generator().manual_seed(0))
    assert {"post_mean", "post_logvar"} <= set(moments)
    with pytest.raises(ValueError):
        model(image, mask, "median")


def test_kl_between_gaussians():
    from imgedit_vae.model import kl_between

    m, lv = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3) * 0.1
    assert kl_between(m, lv, m, lv).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_between(m, lv, torch.zeros_like(m), torch.zeros_like(lv)).item() == pytest.approx(
        kl_divergence(m, lv).item(), rel=1e-5
    )


def test_discriminator_scores_patches_and_gives_features():
    from imgedit_vae.model import PatchDiscriminator

    d = PatchDiscriminator(width=8)
    score, features = d(torch.rand(2, 3, 64, 64), torch.zeros(2, 1, 64, 64))
    assert score.shape[:2] == (2, 1) and score.shape[-1] >= 4
    assert len(features) == 4 and all(f.shape[0] == 2 for f in features)


def test_ssim_known_values():
    from imgedit_vae.metrics import psnr, ssim

    clean = torch.rand(2, 3, 40, 48).mul(127).round().div(255)  # in [0, 0.5]: +10 levels never clips
    assert torch.allclose(ssim(clean, clean), torch.ones(2))
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1)
    worse = (clean + 0.2 * torch.randn_like(clean)).clamp(0, 1)
    assert (ssim(worse, clean) < ssim(noisy, clean)).all() and (ssim(noisy, clean) < 1).all()
    assert torch.isinf(psnr(clean, clean)).logical_not().all()  # clamped, not inf
    assert abs(float(psnr(clean + 10 / 255, clean)[0]) - 20 * torch.log10(torch.tensor(25.5)).item()) < 0.05
