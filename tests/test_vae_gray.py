"""The grayscale denoiser: a one-channel partner of the colour model that
takes the grayscale images (as DnCNN and FFDNet ship a gray and a colour
model), its start from colour weights, its training, and the routing."""

import json
import math
from dataclasses import replace

import pytest
import torch

from conftest import smooth_images, smooth_rgb, trained_tiny_denoiser
from imgedit.errors import UsageError
from imgedit.imagepool import ImagePool
from imgedit.models import sha256_file
from imgedit_vae.degrade import add_gaussian_noise, is_gray
from imgedit_vae.denoise import DenoiseApplier, create_denoise, denoise_vae, load_gray_denoiser
from imgedit_vae.metrics import psnr
from imgedit_vae.model import ConditionalVAE, VAEConfig
from imgedit_vae.weight_surgery import gray_from_colour
from imgedit_vae.operations import GRAY_MODEL_NAME, model_spec
from imgedit_vae.train_denoise import Trainer, TrainConfig, sigma_map

TINY = VAEConfig(widths=(8, 16, 16, 16), blocks=(1, 1, 1, 1), latent_channels=4)


def random_model(cfg: VAEConfig, seed: int) -> ConditionalVAE:
    torch.manual_seed(seed)
    model = ConditionalVAE(cfg)
    torch.nn.init.normal_(model.decoder.head.weight, std=0.05)  # it starts as the identity otherwise
    torch.nn.init.normal_(model.decoder.head.bias, std=0.05)
    return model.eval()


@pytest.fixture
def data(tmp_path):
    return smooth_images(tmp_path / "data")


def gray_batch(b=2, h=40, w=56, seed=0):
    y = torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(seed))
    return y.expand(b, 3, h, w).contiguous()


def test_gray_weights_from_colour_give_the_colour_models_output_on_gray_images():
    colour = random_model(TINY, 0)
    gray = ConditionalVAE(replace(TINY, image_channels=1)).eval()
    gray.load_state_dict(gray_from_colour(colour.state_dict()))
    image = gray_batch()
    cond = torch.full((2, 1, 40, 56), 0.1)
    with torch.no_grad():
        expected = colour(image, cond)[0].mean(1, keepdim=True)
        assert torch.allclose(gray(image[:, :1], cond)[0], expected, atol=1e-5)
        # on a colour image the two differ: the gray stem has lost the colours apart
        rgb = torch.rand(2, 3, 40, 56)
        assert not torch.allclose(gray(rgb[:, :1], cond)[0], colour(rgb, cond)[0].mean(1, keepdim=True), atol=1e-3)
    with pytest.raises(ValueError, match="not a colour model"):
        gray_from_colour(gray.state_dict())


def test_gray_training_reads_one_channel_and_a_step_lowers_the_loss(data):
    cfg = TrainConfig(steps=2, batch=2, patch=32, warmup=1, val_images=1, lr=1e-3, model=replace(TINY, image_channels=1))
    trainer = Trainer(cfg, ImagePool([data]), torch.device("cpu"))
    torch.nn.init.normal_(trainer.model.decoder.head.weight, std=0.01)
    noisy, cond, clean = trainer.batch()
    assert noisy.shape == clean.shape == (2, 1, 32, 32) and trainer.val_clean.shape[1] == 1
    # the patches are the luminance of the colour images, not one of their channels
    assert not torch.equal(clean, trainer.train_pool.patches(2, 32, torch.Generator().manual_seed(0))[:, :1])

    def loss() -> float:
        with torch.no_grad():
            trainer.model.eval()
            return float((trainer.model(noisy, cond)[0] - clean).abs().mean())

    before = loss()
    trainer.batch = lambda: (noisy, cond, clean)
    trainer.train_step()
    assert loss() < before
    # validation: the mean PSNR (a float, dB) of the one-channel model on the held-out gray crop at val_sigma
    score = trainer.validate()
    assert isinstance(score, float) and math.isfinite(score) and trainer.validate() == score
    assert trainer.val_clean.shape == trainer.val_noisy.shape == (1, 1, 128, 128)
    with torch.no_grad():
        sigma = torch.full((1,), cfg.val_sigma)
        out = trainer.model(trainer.val_noisy, sigma_map(sigma, trainer.val_noisy))[0]
    assert score == pytest.approx(float(psnr(out, trainer.val_clean).mean()), abs=1e-4)
    # one step from a near-identity start leaves about the noise of sigma 25: 20 log10(255 / 25) = 20.2 dB
    assert score == pytest.approx(20 * math.log10(255 / cfg.val_sigma), abs=1.0)


def test_gray_run_starts_from_a_colour_model_through_the_cli(data, tmp_path, invoke):
    colour_path = tmp_path / "colour.safetensors"
    colour = trained_tiny_denoiser(invoke, data, colour_path, tmp_path / "run1")

    cfg = TrainConfig(model=replace(colour.cfg, image_channels=1))
    trainer = Trainer(cfg, ImagePool([data]), torch.device("cpu"), init=colour_path)
    image, cond = gray_batch(1, 32, 48), torch.full((1, 1, 32, 48), 0.08)
    trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(trainer.model(image[:, :1], cond)[0], colour(image, cond)[0].mean(1, keepdim=True), atol=1e-5)

    gray_path = tmp_path / "gray.safetensors"
    result = invoke("train", "denoise", "--gray", "--data", data, "--steps", "1", "--batch", "2", "--patch", "32",
                    "--init", colour_path, "--widths", "8,16,16,16", "--out", tmp_path / "run2", "--export", gray_path, "-q")
    assert result.exit_code == 0, result.output
    card = json.loads(gray_path.with_suffix(".json").read_text())
    assert card["model_config"]["image_channels"] == 1 and card["name"] == GRAY_MODEL_NAME
    assert "grayscale" in card["description"] and "--gray" in card["training"]["commands"][-1]


def test_gray_images_go_to_the_gray_model_and_colour_ones_to_the_colour_model():
    colour = random_model(TINY, 1)
    gray_model = random_model(replace(TINY, image_channels=1), 2)
    batch = torch.cat([torch.rand(1, 3, 40, 56), gray_batch(1)])
    assert is_gray(batch).tolist() == [False, True]
    sigma = torch.tensor([20.0, 30.0])
    with torch.no_grad():
        out = denoise_vae(batch, colour, sigma, ensemble=1, gray_model=gray_model)
        alone = denoise_vae(batch, colour, sigma, ensemble=1)  # without a gray model, the colour model takes both
        level = torch.full((1, 1, 40, 56), 30.0 / 255)
        by_gray = gray_model(batch[1:, :1], level)[0].clamp(0, 1)
    assert torch.allclose(out[0], alone[0], atol=1e-6)  # batch of one vs two: float rounding only
    assert torch.allclose(out[1], by_gray[0].expand(3, -1, -1), atol=1e-6)
    assert is_gray(out[1:]).all() and is_gray(alone[1:]).all()
    assert not torch.allclose(out[1], alone[1], atol=1e-3)


def test_the_whole_image_decides_the_model_not_the_tile():
    colour = random_model(TINY, 1)
    gray_model = random_model(replace(TINY, image_channels=1), 2)
    applier = DenoiseApplier(colour, 20.0, 1.0, gray_model=gray_model)
    photo = torch.rand(1, 3, 64, 96)
    photo[..., :32, :48] = photo[:, :1, :32, :48]  # a gray corner, as a tile of it would be
    tile = photo[..., :32, :48]
    with torch.no_grad():
        by_photo = applier.prepare(photo)(tile)
        assert torch.allclose(by_photo, denoise_vae(tile, colour, 20.0), atol=1e-6)
        assert not torch.allclose(by_photo, applier(tile), atol=1e-3)  # the tile alone would go to the gray model
    assert applier.prepare(gray_batch(1)).gray_model is gray_model


def test_one_channel_weights_take_gray_images_only():
    gray_model = random_model(replace(TINY, image_channels=1), 3)
    image = gray_batch(1)
    with torch.no_grad():
        out = denoise_vae(image, gray_model, 25.0, ensemble=2)
    assert out.shape == image.shape and is_gray(out).all()
    with pytest.raises(UsageError, match="grayscale images only"):
        denoise_vae(torch.rand(1, 3, 40, 56), gray_model, 25.0)


def test_shipped_gray_model_verifies_and_is_used_for_gray_images():
    spec = model_spec(name=GRAY_MODEL_NAME)
    card = spec.card()
    assert sha256_file(spec.weights) == card["sha256"]
    assert card["model_config"]["image_channels"] == 1 and card["parameters"] <= 1_500_000
    gray_model = load_gray_denoiser("cpu")
    assert gray_model is not None and gray_model.cfg.image_channels == 1
    assert create_denoise().gray_model is gray_model
    assert create_denoise(weights=str(model_spec().weights)).gray_model is None  # a chosen file takes every image

    y = torch.from_numpy(smooth_rgb(96, 128, seed=5)).permute(2, 0, 1).float().mean(0) / 255
    clean = y.expand(1, 3, -1, -1).contiguous()
    noisy = add_gaussian_noise(clean, torch.tensor([25.0]), torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = create_denoise(sigma=25.0)(noisy)
    assert is_gray(out).all()
    assert float(psnr(out, clean) - psnr(noisy, clean)) > 6.0
