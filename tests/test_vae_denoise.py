"""The learned denoiser: shipped weights, the operation, the verb."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.errors import ShapeError, WeightsError
from imgedit.models import sha256_file
from imgedit_vae.degrade import add_gaussian_noise
from imgedit_vae.denoise import SIGMA_MAX, create_denoise, denoise_vae, load_denoiser, model_spec
from imgedit_vae.metrics import psnr

from conftest import smooth_rgb

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "photo.jpg"


@pytest.fixture(scope="module")
def model():
    return load_denoiser("cpu")


@pytest.fixture(scope="module")
def clean():
    """A 96x128 crop of the bundled photo, (1, 3, H, W) in [0, 1]."""
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB"))[100:196, 150:278]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255


def noisy_version(clean, sigma, seed=0):
    return add_gaussian_noise(clean, torch.tensor([float(sigma)]), torch.Generator().manual_seed(seed))


def test_shipped_weights_verify_and_match_the_card():
    spec = model_spec()
    card = spec.card()
    assert spec.weights.is_file()
    assert sha256_file(spec.weights) == card["sha256"]
    assert card["parameters"] <= 1_500_000
    assert card["training"]["steps"] > 0 and card["training"]["commands"]


def test_denoises_far_above_the_noisy_input(model, clean):
    noisy = noisy_version(clean, 25)
    with torch.inference_mode():
        out = denoise_vae(noisy, model, 25.0)
    gain = float(psnr(out, clean) - psnr(noisy, clean))
    assert gain > 6.0, gain


def test_more_sigma_means_more_smoothing(model, clean):
    noisy = noisy_version(clean, 25)
    changes = []
    with torch.inference_mode():
        for sigma in (5, 15, 25, 40, 60):
            changes.append(float((denoise_vae(noisy, model, sigma) - noisy).abs().mean()))
    assert all(a < b for a, b in zip(changes, changes[1:])), changes


def test_strength_and_zero_sigma(model, clean):
    noisy = noisy_version(clean, 25).clamp(0, 1)
    with torch.inference_mode():
        full = denoise_vae(noisy, model, 25.0)
        half = denoise_vae(noisy, model, 25.0, strength=0.5)
        assert torch.equal(denoise_vae(noisy, model, 0.0), noisy)
        # above the trained range the model is given its top, as the warning of a larger --sigma says
        assert torch.equal(denoise_vae(noisy, model, 150.0), denoise_vae(noisy, model, SIGMA_MAX))
    assert torch.allclose(half, (noisy + full) / 2, atol=1e-5)


def test_batch_with_per_image_sigma(model, clean):
    noisy = torch.cat([noisy_version(clean, 10), noisy_version(clean, 40, seed=1)])
    with torch.inference_mode():
        both = denoise_vae(noisy, model, torch.tensor([10.0, 40.0]))
        one = denoise_vae(noisy[1:], model, 40.0)
    assert torch.allclose(both[1:], one, atol=1e-5)


def test_grayscale_stays_grayscale(model, clean):
    gray = clean.mean(1, keepdim=True).expand(1, 3, *clean.shape[-2:]).contiguous()
    noisy = noisy_version(gray, 25)
    assert torch.equal(noisy[:, 0], noisy[:, 1])  # same noise on every channel
    with torch.inference_mode():
        out = denoise_vae(noisy, model, 25.0)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert psnr(out, gray) > psnr(noisy, gray) + 5


def test_auto_sigma_is_estimated_once_for_the_whole_image(clean):
    noisy = noisy_version(clean, 20)
    applier = create_denoise(None, sigma="auto").prepare(noisy)
    assert applier.per_image.shape == (1,)
    assert abs(float(applier.per_image[0]) - 20) < 3
    fixed = create_denoise(None, sigma=20.0)
    with torch.inference_mode():
        assert (applier(noisy) - fixed(noisy)).abs().max() < 0.02


def test_bad_input_and_bad_weights(model, tmp_path):
    with pytest.raises(ShapeError):
        denoise_vae(torch.rand(1, 1, 8, 8), model, 10.0)
    with pytest.raises(WeightsError):
        load_denoiser("cpu", tmp_path / "missing.safetensors")
    spec = model_spec()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(spec.weights.read_bytes())
    (tmp_path / "bad.json").write_text(json.dumps({**spec.card(), "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="sha256"):
        load_denoiser("cpu", bad)


def test_denoise_vae_is_the_default_method():
    from imgedit.registry import get_registry

    assert get_registry().get("denoise").method == "vae"


def test_tiled_matches_whole_within_an_8bit_level(clean):
    from imgedit.pipeline import Pipeline

    big = torch.nn.functional.interpolate(clean, scale_factor=3, mode="bicubic").clamp(0, 1)
    noisy = noisy_version(big, 25)
    built = Pipeline.parse("denoise sigma=25").build(device="cpu")
    whole = built.apply(noisy, tile=None)
    tiled = built.apply(noisy, tile=128)
    assert (whole - tiled).abs().max() < 1.5 / 255
    assert (whole - tiled).abs().mean() < 0.05 / 255


def test_tiles_on_the_unets_grid_match_the_whole_image(clean):
    # 520 rows in two 260-row cores would put the seam off the 1/16 grid
    # (up to 1.5 levels off, 0.07 on average); on it, the tiles compute
    # what the whole image does
    from imgedit.pipeline import Pipeline
    from imgedit.tiling import plan_tiles

    big = torch.nn.functional.interpolate(clean, size=(520, 300), mode="bicubic").clamp(0, 1)
    noisy = noisy_version(big, 25)
    built = Pipeline.parse("denoise sigma=25").build(device="cpu")
    assert [t.core.top for t in plan_tiles(520, 300, 300, 72, 16, 8)] == [0, 248]
    whole, tiled = built.apply(noisy, tile=None), built.apply(noisy, tile=300)
    assert (whole - tiled).abs().max() < 0.4 / 255
    assert (whole - tiled).abs().mean() < 0.005 / 255


def test_tiled_matches_whole_at_a_size_off_the_unets_grid():
    # 201x255 is no multiple of 16: the quarter-turned copy of the default
    # ensemble had its padding on the image's left and top, its grid
    # anchored at the far edges, and tiles gave another output (2.4 levels
    # here, 7.5 on a photo crop); every copy now shares the tile's grid
    from imgedit.pipeline import Pipeline

    image = torch.from_numpy(smooth_rgb(201, 255)).permute(2, 0, 1)[None].float() / 255
    noisy = noisy_version(image, 25)
    built = Pipeline.parse("denoise sigma=25").build(device="cpu")
    whole, tiled = built.apply(noisy, tile=None), built.apply(noisy, tile=96)
    assert (whole - tiled).abs().max() < 1.5 / 255
    assert (whole - tiled).abs().mean() < 0.05 / 255


def test_every_ensemble_copy_is_padded_on_the_images_bottom_and_right(model, clean, monkeypatch):
    shown = []
    forward = model.forward

    def spy(image, cond, *rest):
        shown.append(image[0, 0].clone())
        return forward(image, cond, *rest)

    monkeypatch.setattr(model, "forward", spy)
    odd = clean[..., :45, :67]
    with torch.inference_mode():
        denoise_vae(odd, model, 25.0, ensemble=4)
    # 45x67 padded to 48x80 before it is turned: the image sits at the top-left of every copy turned back
    assert [tuple(s.shape) for s in shown] == [(48, 80), (80, 48), (80, 48), (48, 80)]
    for (turns, mirror), s in zip(((0, False), (1, False), (3, False), (2, False)), shown):
        back = torch.rot90(s, -turns)
        assert torch.equal(back[:45, :67], odd[0, 0])


def test_cli_keeps_16_bit_and_grayscale(tmp_path, invoke, clean):
    import cv2

    noisy = noisy_version(clean, 15).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    rgb16 = (noisy * 65535).round().astype(np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])
    gray = (noisy.mean(-1) * 255).round().astype(np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    result = invoke("denoise", tmp_path / "c16.png", tmp_path / "g.png", "-o", tmp_path / "out", "--sigma", "15")
    assert result.exit_code == 0, result.output
    out16 = cv2.imread(str(tmp_path / "out" / "c16.png"), cv2.IMREAD_UNCHANGED)
    assert out16.dtype == np.uint16 and out16.shape == rgb16.shape
    assert np.abs(out16.astype(float) - rgb16).mean() > 100  # it did denoise
    with Image.open(tmp_path / "out" / "g.png") as g:
        assert g.mode == "L"


def test_each_symmetry_is_undone_exactly():
    from imgedit_vae.ensemble import DIHEDRAL, forward, inverse

    image = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    seen = set()
    for turns, mirror in DIHEDRAL:
        moved = forward(image, turns, mirror)
        assert moved.shape[-2:] == ((5, 7) if turns % 2 == 0 else (7, 5))
        assert torch.equal(inverse(moved, turns, mirror), image)
        seen.add(moved.flatten().tolist().__repr__())
    assert len(seen) == 8  # eight different copies, not one repeated


def test_ensemble_averages_the_copies_turned_back():
    from imgedit_vae.ensemble import dihedral_mean

    image = torch.rand(1, 3, 6, 9)
    calls = []

    def corner_marker(x):  # an orientation-dependent "model": brightens its top-left pixel
        calls.append(tuple(x.shape))
        out = x.clone()
        out[..., 0, 0] += 1.0
        return out

    assert torch.equal(dihedral_mean(corner_marker, image, 1), corner_marker(image))
    calls.clear()
    two = dihedral_mean(corner_marker, image, 2)
    assert len(calls) == 2
    # the second copy is the image turned a quarter (counter-clockwise): its marker lands top-right
    assert calls == [(1, 3, 6, 9), (1, 3, 9, 6)]
    assert torch.allclose(two[..., 0, 0], image[..., 0, 0] + 0.5)
    assert torch.allclose(two[..., 0, -1], image[..., 0, -1] + 0.5)
    assert torch.equal(two[..., 1:, :], image[..., 1:, :]) and torch.equal(two[..., 0, 1:-1], image[..., 0, 1:-1])
    calls.clear()
    four = dihedral_mean(corner_marker, image, 4)
    assert sorted(calls) == [(1, 3, 6, 9), (1, 3, 6, 9), (1, 3, 9, 6), (1, 3, 9, 6)]
    # the first four are the four turns: each corner gets a quarter of the marker
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert torch.allclose(four[..., corner[0], corner[1]], image[..., corner[0], corner[1]] + 0.25)
    identity = dihedral_mean(lambda x: x, image, 8)
    assert torch.allclose(identity, image) and identity is not image
    with pytest.raises(ValueError, match="1..8"):
        dihedral_mean(corner_marker, image, 9)


def test_ensemble_denoises_odd_sizes_and_grayscale(model, clean):
    odd = clean[..., :45, :67]
    noisy = noisy_version(odd, 25)
    gray = noisy.mean(1, keepdim=True).expand_as(noisy).contiguous()
    with torch.inference_mode():
        one = denoise_vae(noisy, model, 25.0, ensemble=1)
        four = denoise_vae(noisy, model, 25.0, ensemble=4)
        gray_out = denoise_vae(gray, model, 25.0, ensemble=2)
    assert four.shape == noisy.shape
    assert not torch.equal(one, four)  # the copies differ
    assert psnr(four, odd) > psnr(noisy, odd) + 6
    assert (four - one).abs().mean() < 3 / 255  # the same estimate, slightly averaged
    assert torch.equal(gray_out[:, 0], gray_out[:, 2])


def test_ensemble_param_reaches_the_cli(tmp_path, invoke, clean):
    noisy = (noisy_version(clean, 25).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "n.png")
    outs = {}
    for n in ("1", "2", "default"):
        asked = () if n == "default" else ("--ensemble", n)
        result = invoke("denoise", tmp_path / "n.png", "-o", tmp_path / f"o{n}", "--sigma", "25", *asked)
        assert result.exit_code == 0, result.output
        outs[n] = np.asarray(Image.open(tmp_path / f"o{n}" / "n.png"))
    assert not np.array_equal(outs["1"], outs["2"])
    assert np.array_equal(outs["default"], outs["2"])  # the default averages two copies
    result = invoke("denoise", tmp_path / "n.png", "-o", tmp_path / "o9", "--ensemble", "9")
    assert result.exit_code != 0 and "ensemble" in result.output
    assert not (tmp_path / "o9").exists() or not any((tmp_path / "o9").iterdir())


def test_bf16_on_the_cpu_denoises_as_well_as_fp32(clean, monkeypatch):
    from imgedit import devices
    from imgedit.pipeline import Pipeline

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)  # autocast runs (emulated) on any CPU
    noisy = noisy_version(clean, 25)
    full = Pipeline.parse("denoise sigma=25").build("cpu", "fp32").apply(noisy)
    half = Pipeline.parse("denoise sigma=25").build("cpu", "bf16").apply(noisy)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    assert (half - full).abs().mean() < 0.5 / 255
    assert abs(float(psnr(half, clean) - psnr(full, clean))) < 0.05


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 50), (50, 2)])
def test_denoise_auto_leaves_an_image_too_small_to_measure_as_nlm_does(size, tmp_path, invoke):
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tiny.png")
    for method in ("vae", "nlm"):
        out = tmp_path / f"{method}.png"
        result = invoke("denoise", tmp_path / "tiny.png", "--method", method, "-o", out)
        assert result.exit_code == 0, result.output
        # vae: sigma 0 is "no noise", the image exactly as it was; nlm measures its padded tiles, about 0
        assert np.abs(np.asarray(Image.open(out)).astype(int) - pixels).max() <= (0 if method == "vae" else 3), method


def test_eval_skips_images_smaller_than_the_ssim_window(tmp_path, invoke):
    rng = np.random.default_rng(1)
    for name, size in (("a_tiny.png", (8, 8)), ("b_thin.png", (40, 10)), ("c_ok.png", (16, 16))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / name)
    args = ("eval", "denoise", "--sigma", "25", "--ensemble", "1", "--json")
    result = invoke(*args, "--data", tmp_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["method"], r["images"]) for r in rows] == [("noisy", 1), ("vae", 1)]  # c_ok.png alone
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: skipping")]
    assert len(warnings) == 2 and "8x8 px" in warnings[0] and "10x40 px" in warnings[1]
    # --limit counts the images that can be scored
    assert json.loads(invoke(*args, "--data", tmp_path, "--limit", "1").stdout)["rows"][0]["images"] == 1

    result = invoke(*args, "--data", tmp_path / "a_tiny.png")
    assert result.exit_code == 2 and result.output.splitlines()[-1] == (
        f"Error: no image of at least 11x11 px (the SSIM window) in {tmp_path / 'a_tiny.png'}")


def test_weights_of_another_network_are_named_for_what_they_are():
    # 'eval denoise --weights faces64-gan.safetensors' said only "weights do not fit this model: 'widths'"
    from imgedit.errors import WeightsError
    from imgedit.models import shipped_weights_dir
    from imgedit_vae.denoise import load_denoisers
    from imgedit_vae.inpaint import load_inpainter

    gan = shipped_weights_dir() / "imgedit_gan" / "faces64-gan.safetensors"
    with pytest.raises(WeightsError, match=r"^model 'faces64-gan' is not a denoiser: its card says imgedit_gan"):
        load_denoisers("cpu", gan)
    with pytest.raises(WeightsError, match=r"^model 'denoise-vae' is not an inpainter"):
        load_inpainter("cpu", shipped_weights_dir() / "imgedit_vae" / "denoise-vae.safetensors")
