"""The learned noise-level estimator (``imgedit train sigma``): its training
routine on tiny data, its features and per-image estimate on images with a
known answer, and the shipped estimator behind ``denoise --sigma auto``."""

import json

import pytest
import torch

from conftest import smooth_images, smooth_rgb
from imgedit.models import sha256_file
from imgedit_vae.operations import DENOISE, MODELS, SIGMA_MODEL_NAME
from imgedit_vae.sigma_net import SigmaNet, SigmaNetConfig, estimate_sigma_learned, patch_grid
from imgedit_vae.train_sigma import TrainConfig, Trainer, degrade, jpeg, train

TINY_NET = SigmaNetConfig(widths=(4, 4, 8, 8), patch=32, grid=2)


def tiny_config(**kw):
    base = dict(steps=2, batch=4, warmup=1, val_images=1, val_crop=48, val_every=1, checkpoint_every=1, model=TINY_NET)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def data(tmp_path):
    return smooth_images(tmp_path / "data", count=3, height=100, width=108)  # the 48-px crops, cut at twice that


@pytest.fixture(scope="module")
def net():
    """An untrained estimator as training starts it: it reads the classical
    (Immerkaer) estimate of each patch, so its answer is known."""
    torch.manual_seed(0)
    return SigmaNet(SigmaNetConfig(classical_input=True, jpeg_input=True)).eval()


def smooth(height=256, width=256, seed=0):
    """(1, 3, H, W) smooth colour image in [0, 1]."""
    return torch.from_numpy(smooth_rgb(height, width, seed=seed)).permute(2, 0, 1)[None].float() / 255


def noisy(clean, sigma, quality=0, clip=True, seed=0):
    n = len(clean)
    return degrade(clean, torch.full((n,), float(sigma)), torch.full((n,), clip), torch.full((n,), quality), seed)


# --- training ---------------------------------------------------------------------------


def test_patches_can_be_cut_at_twice_the_size_and_scaled_down(data):
    """With source_scale 2 each patch is cut at twice its size and
    area-averaged, so a checkerboard of single pixels comes out flat."""
    from imgedit.imagepool import ImagePool
    from imgedit_vae.train_sigma import scaled_down

    board = (torch.arange(8)[:, None] + torch.arange(8)[None]) % 2
    assert torch.equal(scaled_down(board.float().expand(1, 3, 8, 8), 2), torch.full((1, 3, 4, 4), 0.5))
    cut = []
    trainer = Trainer(tiny_config(source_scale=2), ImagePool([data], min_side=96), torch.device("cpu"))
    trainer.train_pool.patches = lambda n, size, g, gray=0.0: cut.append(size) or torch.zeros(n, 3, size, size)
    noisy, _ = trainer.batch()
    assert cut == [(32 + 8) * 2] and noisy.shape == (4, 3, 32, 32)
    assert TrainConfig.from_dict(tiny_config(source_scale=2).to_dict()).source_scale == 2
    old = {k: v for k, v in tiny_config(source_scale=2).to_dict().items() if k != "source_scale"}
    assert TrainConfig.from_dict(old).source_scale == 1  # a run from before resumes as it was


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(data, tmp_path):
    from imgedit.imagepool import ImagePool

    trainer = Trainer(tiny_config(lr=3e-3, warmup=1), ImagePool([data], min_side=96), torch.device("cpu"))
    batch = trainer.batch()
    assert batch[0].shape == (4, 3, 32, 32) and batch[1].shape == (4,)
    assert 0 <= float(batch[0].min()) and float(batch[0].max()) <= 1
    trainer.batch = lambda: batch  # the same batch again: the step must have learnt from it
    with torch.no_grad():
        before = float(trainer.loss(trainer.model.forward_sqrt(batch[0]), batch[1]))
    metrics = trainer.train_step()
    with torch.no_grad():
        after = float(trainer.loss(trainer.model.forward_sqrt(batch[0]), batch[1]))
    assert metrics["loss"] == pytest.approx(before, rel=1e-5)
    assert after < before, (before, after)


def test_checkpoint_resumes_to_the_same_state(data, tmp_path):
    straight = train(tiny_config(steps=3), [data], tmp_path / "a", torch.device("cpu"))
    train(tiny_config(steps=2), [data], tmp_path / "b", torch.device("cpu"))
    resumed = train(tiny_config(steps=3), [data], tmp_path / "b", torch.device("cpu"),
                    resume=tmp_path / "b" / "checkpoint.safetensors")
    assert resumed.step == 3
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert straight.history[-1]["val_mae"] == resumed.history[-1]["val_mae"]


def test_cli_trains_and_exports_a_usable_estimator(tmp_path, invoke):
    data = smooth_images(tmp_path / "data", count=3, height=264, width=272)  # the CLI's 128 px validation crops, cut at 2x
    target = tmp_path / "sigma.safetensors"
    result = invoke("train", "sigma", "--data", data, "--steps", "1", "--batch", "2", "--out", tmp_path / "run",
                    "--export", target, "-q")
    assert result.exit_code == 0, result.output
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["architecture"] == "imgedit_vae.sigma_net.SigmaNet" and card["sha256"] == sha256_file(target)
    assert card["training"]["steps"] == 1 and "imgedit train sigma" in card["training"]["commands"][0]
    from imgedit.catalog import spec_for_file
    from imgedit.models import load_model

    loaded = load_model(spec_for_file(target), lambda c: SigmaNet(SigmaNetConfig.from_dict(c)))  # sha256 checked
    assert estimate_sigma_learned(smooth(80, 96), loaded.eval()).shape == (1,)
    # what the closing line says works: denoise reads sigma=auto with it
    assert result.output.strip().splitlines()[-1] == f"Use it: imgedit denoise photo.jpg --sigma-weights {target}"
    photo, out = data / "0.png", tmp_path / "out"
    denoise = ("denoise", photo, "-o", out, "--sigma-weights", target, "--json")
    assert json.loads(invoke(*denoise).stdout)["done"] == 1
    assert json.loads(invoke(*denoise).stdout)["skipped"] == 1
    result = invoke("train", "sigma", "--data", data, "--steps", "2", "--resume", tmp_path / "run",
                    "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(target.with_suffix(".json").read_text())["training"]["steps"] == 2  # its own model, updated
    assert json.loads(invoke(*denoise).stdout)["done"] == 1  # the estimator retrained in place: the image is redone


def test_sigma_weights_of_another_kind_are_a_usage_error(tmp_path, invoke):
    from imgedit.models import shipped_weights_dir

    photo = smooth_images(tmp_path / "in", count=1) / "0.png"
    denoiser = shipped_weights_dir() / "imgedit_vae" / "denoise-vae.safetensors"
    result = invoke("denoise", photo, "-o", tmp_path / "out.png", "--sigma-weights", denoiser)
    assert result.exit_code == 2 and "model 'denoise-vae' is not a noise-level estimator" in result.output
    assert not (tmp_path / "out.png").exists()


def test_degradations_clip_quantise_and_jpeg():
    clean = smooth(64, 64)
    out = noisy(clean, 50)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(out, (out * 255).round() / 255)  # 8-bit levels
    gray = clean.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    for image in (clean[0], gray[0]):
        back = jpeg(image, 90)
        assert back.shape == image.shape and float((back - image).abs().mean()) < 2 / 255
    assert torch.equal(jpeg(gray[0], 75)[0], jpeg(gray[0], 75)[2])  # gray stays gray


# --- the network and the per-image estimate ----------------------------------------------


def test_patch_grid_covers_the_image_within_bounds():
    corners = patch_grid(300, 500, 64, 8)
    assert len(corners) == 8 * 8
    assert min(y for y, _ in corners) == 0 and max(y for y, _ in corners) == 300 - 64
    assert max(x for _, x in corners) == 500 - 64
    assert patch_grid(64, 64, 64, 8) == [(0, 0)]


def test_any_size_gray_or_colour_gives_one_estimate_per_image():
    net = SigmaNet(TINY_NET).eval()
    for shape in ((2, 3, 40, 50), (1, 1, 33, 90), (1, 3, 10, 7), (1, 3, 1, 1)):
        est = estimate_sigma_learned(torch.rand(shape), net)
        assert est.shape == (shape[0],) and bool(((est >= 0) & (est <= 75)).all())


def test_the_shipped_estimator_reads_sigma_auto_for_the_vae_denoiser():
    from imgedit.models import verify
    from imgedit_vae import denoise
    from imgedit_vae.operations import model_spec

    spec = model_spec(name=SIGMA_MODEL_NAME)
    assert SIGMA_MODEL_NAME in DENOISE.weights and any(s.name == SIGMA_MODEL_NAME for s in MODELS)  # in the journal key
    assert verify(spec)[0]
    applier = denoise.create_denoise(sigma="auto", ensemble=1)
    assert isinstance(applier.sigma_net, SigmaNet)
    clean = smooth(128, 160)
    for sigma in (0, 25):
        image = noisy(clean, sigma, seed=3)
        prepared = applier.prepare(image)
        learned = float(estimate_sigma_learned(image, applier.sigma_net)[0])
        assert float(prepared.per_image[0]) == pytest.approx(learned, abs=0.005)  # as said: to 0.01
        assert abs(learned - sigma) < 3, (sigma, learned)  # a trained estimator, not a stub
    assert denoise.create_denoise(sigma=25, ensemble=1).sigma_net is None  # a given sigma needs no estimate


def test_without_the_estimators_weights_sigma_auto_is_classical_and_says_so(tmp_path, monkeypatch, caplog):
    from imgedit.noise import estimate_sigma_sampled
    from imgedit_vae import denoise

    monkeypatch.setattr(denoise, "model_spec", lambda weights=None, name=None: type("Spec", (), {"weights": tmp_path / "none"})())
    assert denoise.load_sigma_net("cpu") is None
    assert "sigma-net is not installed" in caplog.text and str(tmp_path / "none") in caplog.text
    image = noisy(smooth(96, 96), 15, seed=1)
    assert torch.equal(denoise.estimate_noise(image, None), estimate_sigma_sampled(image).float())


def test_a_fresh_estimator_starts_as_the_classical_one(net):
    """Its head's last layer is zero: every patch reads sqrt(Immerkaer) through a softplus."""
    for sigma in (10, 25, 50):  # not clipped: clipping lowers the classical reading (to 45 here at 50)
        est = float(estimate_sigma_learned(noisy(smooth(), sigma, clip=False, seed=sigma), net)[0])
        assert abs(est - sigma) <= 1.0 + 0.05 * sigma, (sigma, est)
    assert float(estimate_sigma_learned(smooth(), net)[0]) < 2  # clean reads low
    gray = smooth(seed=3).mean(1, keepdim=True)  # (1, 1, H, W): read as 3 equal channels
    assert float(estimate_sigma_learned(noisy(gray.expand(-1, 3, -1, -1), 20), net)[0]) == pytest.approx(20, abs=2)


def test_jpeg_features_tell_jpeg_from_white_noise(net):
    clean = smooth(64, 64)
    white = net.features(noisy(clean, 15, seed=1))[1][0]  # immerkaer, clipped, half-res immerkaer, blockiness x, y
    jpeg75 = net.features(noisy(clean, 15, quality=75, seed=1))[1][0]
    assert white[2] == pytest.approx(float(white[0]), rel=0.1)  # white noise: the same level at half resolution
    assert jpeg75[2] > 1.1 * jpeg75[0]  # JPEG takes the fine noise more than the coarse
    assert max(jpeg75[3], jpeg75[4]) > max(white[3], white[4]) + 0.02  # and leaves an 8x8 grid
    assert float(net.features(noisy(clean * 0 + 1, 30))[1][0, 1]) > 0.4  # white clipped: seen


def test_patch_predictions_are_pooled_by_the_configured_quantile(monkeypatch):
    net = SigmaNet(TINY_NET).eval()
    values = torch.arange(1.0, 5.0)  # 4 patches (2x2 grid): 1, 2, 3, 4
    monkeypatch.setattr(net, "forward", lambda x: values[: len(x)])
    image = torch.rand(1, 3, 64, 64)
    assert len(patch_grid(64, 64, 32, 2)) == 4
    net.cfg = SigmaNetConfig(widths=TINY_NET.widths, patch=32, grid=2, quantile=0.5)
    assert float(estimate_sigma_learned(image, net)[0]) == pytest.approx(2.5)
    net.cfg = SigmaNetConfig(widths=TINY_NET.widths, patch=32, grid=2, quantile=0.0)
    assert float(estimate_sigma_learned(image, net)[0]) == pytest.approx(1.0)


def test_models_says_where_your_own_sigma_net_goes(invoke, user_home):
    import shutil

    from imgedit.models import shipped_weights_dir

    mine = user_home / "weights" / "imgedit_vae"
    mine.mkdir(parents=True)
    for ext in (".safetensors", ".json"):  # what 'imgedit train sigma' exports by default
        shutil.copy(shipped_weights_dir() / "imgedit_vae" / f"{SIGMA_MODEL_NAME}{ext}", mine / f"{SIGMA_MODEL_NAME}{ext}")
    lines = [line for line in invoke("models").output.splitlines() if str(mine) in line]
    assert len(lines) == 1 and lines[0].endswith("pass this file to denoise --sigma-weights)")
