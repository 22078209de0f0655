"""Sampling from a generator: seeds, truncation, the latent-model protocol
(decode, encode by inversion), weights verification, the ``sample`` verb."""

import json
import signal

import pytest
import torch
from PIL import Image

from imgedit.errors import ShapeError, WeightsError
from imgedit.latents import LatentModel, load_latent_model
from imgedit.models import sha256_file
from imgedit_gan.catalog import CATALOG, MODEL_NAME
from imgedit.tensor import grid
from imgedit_gan.sampler import GANSampler, load_gan

from conftest import TINY_GAN, run_signalled_at_third_save, save_tiny_gan, save_tiny_vae


@pytest.fixture
def tiny_spec(tmp_path):
    return save_tiny_gan(tmp_path / "weights" / "tiny-gan.safetensors")


@pytest.fixture
def sampler(tiny_spec, device):
    return load_gan(tiny_spec, device)


def test_loaded_generator_follows_the_latent_protocol(sampler, device):
    assert isinstance(sampler, LatentModel) and sampler.gaussian
    assert sampler.latent_shape == (TINY_GAN["z_dim"],) and sampler.image_size == (16, 16)
    z = sampler.sample_latents(5, seed=1)
    assert z.shape == (5, 16) and z.device.type == device.type
    images = sampler.decode(z)
    assert images.shape == (5, 3, 16, 16) and 0 <= images.min() and images.max() <= 1


def test_seeds_reproduce_and_do_not_depend_on_n(sampler):
    a = sampler.sample(6, seed=3)
    assert torch.equal(a, sampler.sample(6, seed=3))
    assert torch.equal(sampler.sample_latents(6, seed=3)[:2], sampler.sample_latents(2, seed=3))
    for n in (1, 2, 3, 5, 64, 65):  # to the bit: each image is decoded in the same batch whatever n is
        assert torch.equal(sampler.sample(n, seed=3)[:6], sampler.sample(70, seed=3)[:n][:6]), n
    assert not torch.equal(a, sampler.sample(6, seed=4))
    assert (a[0] - a[1]).abs().max() > 1e-3  # different latents, different images


def test_truncation_zero_gives_the_same_image_for_every_seed(sampler):
    means = torch.cat([sampler.sample(2, seed=s, truncation=0.0) for s in range(3)])
    assert all(torch.equal(means[0], m) for m in means)
    half = sampler.sample(4, seed=0, truncation=0.5)
    full = sampler.sample(4, seed=0)
    assert ((half - means[0]).abs().mean()) < ((full - means[0]).abs().mean())


def test_encode_inverts_the_generator(sampler):
    target_z = sampler.sample_latents(3, seed=11) * 0.8
    images = sampler.decode(target_z)
    z = sampler.encode(images, steps=200)
    assert z.shape == target_z.shape
    reconstruction = sampler.decode(z)
    assert (reconstruction - images).abs().mean() < 0.02
    assert sampler.last_inversion_psnr.shape == (3,) and (sampler.last_inversion_psnr > 28).all()
    assert torch.allclose(sampler.last_inversion_error, (reconstruction - images).abs().mean(dim=(1, 2, 3)), atol=1e-6)
    # images of another size are resized to the model's first
    assert sampler.encode(torch.nn.functional.interpolate(images, size=(32, 32)), steps=5).shape == (3, 16)


def test_encode_takes_a_wide_image_s_centred_square_as_the_face_vae_does(sampler):
    # it squashed a (64, 192) photo to (16, 16); the face VAE, and the CLI, cut the centred square
    face = sampler.decode(sampler.sample_latents(1, seed=5))
    wide = torch.cat([torch.rand(1, 3, 16, 16), face, torch.rand(1, 3, 16, 16)], dim=3)
    assert torch.equal(sampler.encode(wide, steps=3), sampler.encode(face, steps=3))


def test_wrong_shapes_are_typed_errors(sampler):
    with pytest.raises(ShapeError, match=r"latents: expected shape \(B, 16\), got \(2, 8\)"):
        sampler.decode(torch.zeros(2, 8))
    with pytest.raises(ShapeError, match="3 channels"):
        sampler.encode(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ShapeError, match="shape \\(B, C, H, W\\)"):
        sampler.encode(torch.zeros(3, 16, 16))


def test_empty_batches_give_empty_results(sampler):
    assert sampler.sample(0).shape == (0, 3, 16, 16)
    assert sampler.decode(torch.zeros(0, 16)).shape == (0, 3, 16, 16)
    assert sampler.encode(torch.zeros(0, 3, 16, 16)).shape == (0, 16) and sampler.last_inversion_psnr.shape == (0,)


def test_encode_refuses_images_on_a_0_255_scale(sampler):
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\] \(divide 8-bit values by 255\), got 0 to 255"):
        sampler.encode(torch.linspace(0, 255, 3 * 16 * 16).view(1, 3, 16, 16), steps=1)
    with pytest.raises(ValueError, match="got nan"):
        sampler.encode(torch.full((1, 3, 16, 16), float("nan")), steps=1)
    sampler.encode(torch.rand(1, 3, 16, 16) * 1.2 - 0.1, steps=1)  # a resize's overshoot is fine


def test_fp16_weights_sample_like_fp32(tiny_spec, tmp_path):
    from imgedit.models import load_weights, save_weights

    half = save_weights({k: v.half() if v.is_floating_point() else v for k, v in load_weights(tiny_spec).items()},
                        tmp_path / "half.safetensors", tiny_spec.card())
    a, b = load_gan(tiny_spec).sample(8, seed=0), load_gan(half).sample(8, seed=0)
    assert (a - b).abs().max() < 1 / 255


def test_weights_with_a_wrong_sha256_are_refused(tiny_spec):
    card = json.loads(tiny_spec.card_path.read_text())
    card["sha256"] = "0" * 64
    tiny_spec.card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_gan(tiny_spec)


def test_weights_of_another_model_are_refused(tmp_path):
    from imgedit.models import save_weights

    spec = save_weights({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.safetensors",
                        {"model_config": TINY_GAN})
    with pytest.raises(WeightsError, match="weights do not fit this model"):
        load_gan(spec)


def test_sample_refuses_another_plugins_weights_naming_what_they_are(tmp_path, invoke):
    from imgedit.models import save_weights

    style = save_weights({"w": torch.zeros(1)}, tmp_path / "mosaic.safetensors",
                         {"architecture": "imgedit_style.model.StyleNet", "description": "Fast style network: mosaic",
                          "model_config": {"res_blocks": 5}})
    result = invoke("sample", "--model", style.weights, "-o", tmp_path / "out")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "is not a latent model" in result.output and "imgedit_style.model.StyleNet" in result.output
    assert "res_blocks" not in result.output and not (tmp_path / "out").exists()


def test_grid_lays_images_out_row_by_row():
    images = torch.zeros(5, 3, 4, 4)
    images[4] = 1.0
    sheet = grid(images, columns=3, gutter=1)
    assert sheet.shape == (3, 2 * 5 + 1, 3 * 5 + 1)
    assert sheet[:, 6:10, 6:10].eq(1).all() and sheet[:, 1:5, 1:5].eq(0).all()


# --- the sample verb --------------------------------------------------------------------


def test_sample_writes_n_files_then_refuses_to_overwrite(tiny_spec, tmp_path, invoke):
    out = tmp_path / "out"
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "5", "--seed", "2", "-o", out)
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"tiny-gan-seed2-{i:04d}.png" for i in range(5)]
    with Image.open(files[0]) as image:
        assert image.size == (16, 16) and image.mode == "RGB"
    before = files[0].read_bytes()
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "5", "--seed", "2", "-o", out)
    assert result.exit_code == 2 and "exists" in result.output and "--overwrite" in result.output
    assert files[0].read_bytes() == before
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "5", "--seed", "2", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert files[0].read_bytes() == before  # same seed, same image
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_sample_grid_writes_one_contact_sheet(tiny_spec, tmp_path, invoke):
    sheet = tmp_path / "sheet.png"
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "6", "--grid", "-o", sheet, "--truncation", "0.5")
    assert result.exit_code == 0, result.output
    with Image.open(sheet) as image:  # 3 columns x 2 rows of 16 px with 2 px gutters
        assert image.size == (3 * 18 + 2, 2 * 18 + 2)
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "4", "--grid", "-o", tmp_path / "folder")
    assert result.exit_code == 0 and (tmp_path / "folder" / "tiny-gan-seed0-n4.png").is_file()


def test_sample_errors_are_one_line(tmp_path, invoke, monkeypatch, user_home):
    from imgedit import registry

    monkeypatch.setenv("IMGEDIT_WEIGHTS", str(tmp_path / "no-weights"))  # as if the shipped model were not trained
    registry.reset()  # the user_home fixture resets it again afterwards
    result = invoke("sample", "-n", "2", "-o", tmp_path / "out")
    assert result.exit_code == 1  # the install lacks a model, as an edit verb's missing model: not a usage error
    assert "has no weights yet" in result.output and "imgedit train gan" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = invoke("sample", "--model", "nope", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "unknown latent model 'nope'" in result.output and MODEL_NAME in result.output
    result = invoke("sample", "--model", "nope", "-o", tmp_path / "one.png")
    assert result.exit_code == 2 and "without --grid" in result.output
    result = invoke("sample", "--truncation", "1.5", "-o", tmp_path / "out")
    assert result.exit_code == 2
    result = invoke("sample", "-n", "5000", "--grid", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "at most 1024" in result.output
    assert not (tmp_path / "out").exists()


def test_user_models_are_latent_models(user_home):
    save_tiny_gan(user_home / "weights" / "imgedit_gan" / "mine.safetensors", description="mine")
    save_tiny_gan(user_home / "weights" / "imgedit_vae" / "not-a-gan.safetensors", architecture="other")
    model = load_latent_model("mine", "cpu")
    assert isinstance(model, GANSampler) and model.sample(1, 0).shape == (1, 3, 16, 16)
    with pytest.raises(Exception, match="unknown latent model 'not-a-gan'"):
        load_latent_model("not-a-gan", "cpu")


# --- the shipped model -----------------------------------------------------------------

SHIPPED = CATALOG.shipped_spec()


@pytest.mark.skipif(not SHIPPED.weights.is_file(), reason="faces64-gan is not trained yet")
def test_shipped_weights_verify_load_and_fit_the_budget():
    card = SHIPPED.card()
    assert sha256_file(SHIPPED.weights) == card["sha256"]
    assert 1_000_000 <= card["parameters"] <= 3_000_000 and SHIPPED.weights.stat().st_size < 8_000_000
    assert card["training"]["steps"] > 0 and card["training"]["commands"]
    assert "NON-COMMERCIAL RESEARCH USE ONLY" in card["data_licence"]
    model = load_latent_model(MODEL_NAME, "cpu")
    assert model.image_size == (64, 64)
    images = model.sample(4, seed=0)
    assert images.shape == (4, 3, 64, 64) and images.std() > 0.05


# --- the sample verb's checks before any work --------------------------------------------


def test_nan_truncation_is_refused_on_the_command_line_and_in_python(tiny_spec, tmp_path, invoke):
    from imgedit.errors import UsageError
    from imgedit_gan.commands import sample_command

    result = invoke("sample", "--model", tiny_spec.weights, "-n", "2", "--truncation", "nan", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "not a finite number" in result.output
    with pytest.raises(UsageError, match="truncation must be in"):  # NaN scaled every latent to NaN: black images
        sample_command.callback(model=str(tiny_spec.weights), count=2, seed=0, output=tmp_path / "out", as_grid=False,
                                truncation=float("nan"), device="cpu", overwrite=False, quiet=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999"])
def test_seeds_outside_32_bits_are_usage_errors(tiny_spec, tmp_path, invoke, seed):
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "1", "--seed", seed, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "0<=x<=4294967295" in result.output, result.output
    assert "unexpected" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("count", [1_000_001, 100_000_000])
def test_huge_n_is_refused_at_once(tiny_spec, tmp_path, invoke, monkeypatch, count):
    import tracemalloc

    from imgedit_gan import commands

    def not_reached(*args, **kwargs):
        raise AssertionError("the work went on past a refused -n")

    for later_step in ("_existing", "load_latent_model_argument", "_check_memory", "_latents"):
        monkeypatch.setattr(commands, later_step, not_reached)
    monkeypatch.setattr("imgedit.atomic.check_writable_folder", not_reached)  # imported when the verb runs
    assert count > commands.MAX_SAMPLES
    tracemalloc.start()
    try:
        result = invoke("sample", "--model", tiny_spec.weights, "-n", count, "-o", tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 2 and f"-n {count}: at most 1000000 images per run" in result.output, result.output
    assert "the work went on" not in result.output and not (tmp_path / "out").exists()
    assert peak < 20_000_000  # no list of the paths built first: 1e6 of them take about 280 MB


def test_grid_refuses_a_file_name_it_cannot_write(tiny_spec, tmp_path, invoke):
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "4", "--grid", "-o", tmp_path / "sheet.gif")
    assert result.exit_code == 2 and "sheet.gif: a contact sheet is written as .png" in result.output
    assert not (tmp_path / "sheet.gif").exists()  # not made as a folder
    assert invoke("sample", "--model", tiny_spec.weights, "-n", "4", "--grid", "-o", tmp_path / "sheet.webp").exit_code == 0
    assert Image.open(tmp_path / "sheet.webp").format == "WEBP"


def test_an_existing_file_as_the_folder_is_refused_before_the_model_loads(tmp_path, invoke):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = invoke("sample", "--model", "nope", "-n", "2", "-o", afile)  # an unknown model: it never gets that far
    assert result.exit_code == 2 and "afile is a file" in result.output and afile.read_text() == "mine"


def test_sampling_reports_progress_unless_quiet(tiny_spec, tmp_path, invoke, monkeypatch):
    from imgedit.verbs import StageProgress

    monkeypatch.setattr(StageProgress, "interval", 0.0)  # a line per image instead of one per 10 s
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "3", "-o", tmp_path / "out")
    assert result.exit_code == 0 and "sampling: 3/3 images (100%)" in result.output, result.output
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "3", "-o", tmp_path / "quiet", "-q")
    assert result.exit_code == 0 and result.output == "" and len(list((tmp_path / "quiet").iterdir())) == 3


# --- --model, exact samples, --overwrite, SIGTERM -----------------------------------------


def test_a_vae_file_samples_as_it_does_by_name(user_home, tmp_path, invoke):
    vae = save_tiny_vae(user_home / "weights" / "imgedit_interp" / "my-vae.safetensors")
    by_name = invoke("sample", "--model", "my-vae", "-n", "3", "-o", tmp_path / "by-name")
    by_file = invoke("sample", "--model", vae.weights, "-n", "3", "-o", tmp_path / "by-file")
    assert by_name.exit_code == 0 and by_file.exit_code == 0, by_file.output  # was: "not a GAN generator", exit 1
    assert [p.read_bytes() for p in sorted((tmp_path / "by-name").iterdir())] == \
        [p.read_bytes() for p in sorted((tmp_path / "by-file").iterdir())]


def _bad_models(tmp_path):
    """--model values that cannot be used, and what the error says of each."""
    from imgedit.models import save_weights

    wrong_sha = save_tiny_gan(tmp_path / "wrong-sha.safetensors")
    wrong_sha.card_path.write_text(json.dumps({**json.loads(wrong_sha.card_path.read_text()), "sha256": "0" * 64}))
    style = save_weights({"w": torch.zeros(1)}, tmp_path / "style.safetensors",
                         {"architecture": "imgedit_style.model.StyleNet", "model_config": {}})
    no_card = save_tiny_gan(tmp_path / "no-card.safetensors")
    no_card.card_path.unlink()
    return [(tmp_path / "missing.safetensors", "missing.safetensors: no such file"), (wrong_sha.weights, "sha256 mismatch"),
            (style.weights, "is not a latent model: its card says imgedit_style.model.StyleNet"),
            (no_card.weights, "no model card no-card.json"), ("nope", "unknown latent model 'nope'")]


@pytest.mark.parametrize("verb", [["sample", "-n", "1", "-o", "out"], ["interpolate", "--seeds", "1,2", "-o", "out.gif"]])
def test_a_bad_model_is_a_one_line_usage_error_in_both_verbs(tmp_path, invoke, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    for model, message in _bad_models(tmp_path):
        result = invoke(*verb, "--model", model)
        assert result.exit_code == 2 and message in result.output, (model, result.output)
        assert len(result.output.strip().splitlines()) == 1 and not any(tmp_path.glob("out*")), result.output


def test_image_i_of_a_seed_is_the_same_to_the_bit_whatever_n_is(tiny_spec, tmp_path, invoke, monkeypatch):
    import imgedit_gan.sampler as sampler_module

    written = {}
    monkeypatch.setattr(sampler_module, "save_image", lambda image, path, **kw: written.setdefault(path.name, image))
    monkeypatch.setattr(sampler_module, "save_grid", lambda images, path, **kw: written.setdefault(path.name, images))
    for n in (70, 1, 2, 3, 5, 65):
        assert invoke("sample", "--model", tiny_spec.weights, "-n", n, "--seed", "3", "-o", tmp_path / f"n{n}").exit_code == 0
    assert invoke("sample", "--model", tiny_spec.weights, "-n", 3, "--seed", "3", "--grid", "-o", tmp_path).exit_code == 0
    images = [written[f"tiny-gan-seed3-{i:04d}.png"] for i in range(70)]
    assert all(torch.equal(a, b) for a, b in zip(written["tiny-gan-seed3-n3.png"], images))
    assert not torch.equal(images[0], images[1])


def test_overwrite_leaves_one_run_of_a_seed_and_the_users_other_files(tiny_spec, tmp_path, invoke):
    out = tmp_path / "mix"
    assert invoke("sample", "--model", tiny_spec.weights, "-n", "6", "-o", out).exit_code == 0
    assert invoke("sample", "--model", tiny_spec.weights, "-n", "2", "--seed", "1", "-o", out).exit_code == 0
    mine = {"notes.txt": b"mine", "tiny-gan-seed0-0009.jpg": b"mine", "tiny-gan-seed0-final.png": b"mine"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "3", "--truncation", "0", "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("tiny-gan-seed0-????.png")) == [f"tiny-gan-seed0-{i:04d}.png" for i in range(3)]
    assert len(list(out.glob("tiny-gan-seed1-*.png"))) == 2  # another seed's run is whole: not ours to remove
    assert all((out / name).read_bytes() == data for name, data in mine.items())
    for path in out.glob("tiny-gan-seed0-000?.png"):
        path.unlink()
    (out / "tiny-gan-seed0-0004.png").write_bytes(b"an earlier run's")
    result = invoke("sample", "--model", tiny_spec.weights, "-n", "3", "-o", out)  # its names are free, but it would mix
    assert result.exit_code == 2 and "tiny-gan-seed0-0004.png exists" in result.output, result.output


def test_sigterm_stops_sampling_as_ctrl_c_does(tiny_spec, tmp_path):
    out = tmp_path / "out"
    result = run_signalled_at_third_save("SIGTERM", "sample", "--model", tiny_spec.weights, "-n", "6", "-o", out)
    assert result.returncode == 128 + signal.SIGTERM, result  # was: killed (-15), silently
    assert result.stderr.strip() == "Error: stopped by SIGTERM; each image written so far is complete", result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"tiny-gan-seed0-{i:04d}.png" for i in range(2)]  # no temporary file
    assert all(Image.open(p).size == (16, 16) for p in out.iterdir())
