"""The interpolation VAE: the network, one training step, exact resume, the
latent-model protocol, and the interpolate / train / eval verbs on tiny
models and data."""

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.checkpoint import load_checkpoint
from imgedit.errors import UsageError
from imgedit.features import ENSEMBLE_SEEDS, FEATURE_SEED
from imgedit.imageset import load_squares
from imgedit.latents import LatentModel, LatentModelSpec, load_latent_model
from imgedit.models import sha256_file
from imgedit.catalog import spec_for_file
from imgedit_interp.catalog import CATALOG, MODEL_NAME
from imgedit_interp.latent import load_vae
from imgedit_interp.model import FaceVAE, FaceVAEConfig, kl_divergence
from imgedit_interp.train import InterpTrainConfig, InterpTrainer, train_interp_vae, vae_loss

from conftest import TINY_VAE, blob_images, save_tiny_vae


def read_tensor(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def tiny_config(**kw):
    base = dict(steps=2, batch=4, val=2, val_every=1, checkpoint_every=1, warmup=1, model=FaceVAEConfig(**TINY_VAE))
    return InterpTrainConfig(**{**base, **kw})


@pytest.fixture
def data(tmp_path):
    return blob_images(tmp_path / "data")


@pytest.fixture
def tiny(tmp_path):
    return save_tiny_vae(tmp_path / "models" / "tiny-vae.safetensors")


def test_network_shapes_and_kl():
    cfg = FaceVAEConfig(**TINY_VAE)
    net = FaceVAE(cfg)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    recon, mu, logvar = net(x, torch.Generator().manual_seed(0))
    assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 8)
    assert torch.allclose(kl_divergence(torch.zeros(2, 8), torch.zeros(2, 8)), torch.zeros(2))
    assert (kl_divergence(mu, logvar) >= 0).all()
    with pytest.raises(ValueError, match="power of two"):
        FaceVAEConfig(image_size=24).levels


def test_latent_prior_whitens_the_encoder_means():
    net = FaceVAE(FaceVAEConfig(**TINY_VAE))
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5000, 8, generator=g) @ (2 * torch.eye(8) + torch.randn(8, 8, generator=g)) + 3.0  # correlated, off-centre
    assert torch.allclose(net.whiten(mu), mu) and torch.allclose(net.unwhiten(mu), mu)  # identity until fitted
    net.fit_latent_prior(mu)
    z = net.whiten(mu)
    assert z.mean(dim=0).abs().max() < 1e-3
    assert torch.allclose(torch.cov(z.T), torch.eye(8), atol=1e-2)
    assert torch.allclose(net.unwhiten(z), mu, atol=1e-3)


def test_training_steps_lower_the_loss(data):
    torch.manual_seed(0)
    trainer = InterpTrainer(tiny_config(lr=3e-3), load_squares([data], 16), load_squares([data], 16), torch.device("cpu"))
    x = trainer.batch()
    assert x.shape == (4, 3, 16, 16) and -1 <= x.min() and x.max() <= 1

    def loss():
        return vae_loss(trainer.model, x, trainer.cfg.beta, torch.Generator().manual_seed(5))["loss"].item()

    before = loss()
    for _ in range(20):
        metrics = trainer.train_step()
    assert trainer.step == 20 and {"loss", "mse", "kl"} <= set(metrics)
    assert loss() < before


def test_resume_continues_bit_for_bit(data, tmp_path):
    straight = train_interp_vae(tiny_config(steps=2), [data], tmp_path / "a", torch.device("cpu"))
    train_interp_vae(tiny_config(steps=1), [data], tmp_path / "b", torch.device("cpu"))
    checkpoint = tmp_path / "b" / "checkpoint.safetensors"
    assert load_checkpoint(checkpoint, kind="interp-vae")["step"] == 1
    resumed = train_interp_vae(tiny_config(steps=2), [data], tmp_path / "b", torch.device("cpu"), resume=checkpoint)
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert (tmp_path / "b" / "samples" / "step_000002.png").is_file()
    with pytest.raises(UsageError, match="a 'gan' checkpoint, not 'interp-vae'"):
        train_interp_vae(tiny_config(steps=2), [data], tmp_path / "c", torch.device("cpu"),
                         resume=_gan_checkpoint(tmp_path))


def _gan_checkpoint(tmp_path):
    from imgedit.checkpoint import save_checkpoint

    path = tmp_path / "gan.safetensors"
    save_checkpoint({"version": 1, "kind": "gan", "step": 0}, path)
    return path


def test_loaded_vae_follows_the_latent_protocol(tiny):
    model = load_vae(tiny, "cpu")
    assert isinstance(model, LatentModel) and model.latent_shape == (8,) and model.image_size == (16, 16)
    z = model.sample_latents(5, seed=1)
    assert torch.equal(z[:3], model.sample_latents(3, seed=1))  # image i of a seed does not depend on n
    images = model.decode(z)
    assert images.shape == (5, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    big = torch.rand(2, 3, 40, 30)  # not square, not the model's size: centre-cropped and resized
    assert model.encode(big).shape == (2, 8)
    assert torch.allclose(model.encode(big[:1]), model.encode(big)[:1], atol=1e-5)  # no batch dependence


def test_user_trained_vae_is_a_latent_model_by_name(user_home):
    save_tiny_vae(user_home / "weights" / "imgedit_interp" / "mine.safetensors")
    model = load_latent_model("mine", "cpu")
    assert model.decode(model.sample_latents(2, 0)).shape == (2, 3, 16, 16)


def test_interpolate_morphs_images_and_hits_both_ends(tiny, data, tmp_path, invoke):
    out = tmp_path / "frames"
    result = invoke("interpolate", data / "00.png", data / "05.png", "--model", tiny.weights, "--frames", 6, "-o", out)
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("frame_*.png"))
    assert len(files) == 6 and "encoded into tiny-vae" in result.output
    model = load_vae(tiny, "cpu")
    ends = torch.cat([read_tensor(data / n) for n in ("00.png", "05.png")])
    recon = model.decode(model.encode(ends))  # the first and last frames are the inputs' reconstructions
    for frame, expected in ((files[0], recon[0]), (files[-1], recon[1])):
        assert (read_tensor(frame)[0] - expected).abs().max() <= 1 / 255 + 1e-6



@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_a_morph_of_private_photos_is_private(tiny, data, tmp_path, invoke):
    # the edit verbs keep a 0600 photo's edit 0600; interpolate wrote 0644 files
    import stat

    os.chmod(data / "00.png", 0o600)
    before = os.umask(0o022)
    try:
        for output in (tmp_path / "morph.gif", tmp_path / "frames"):
            result = invoke("interpolate", data / "00.png", data / "05.png", "--model", tiny.weights, "--frames", 3,
                            "-o", output)
            assert result.exit_code == 0, result.output
            files = [output] if output.is_file() else sorted(output.glob("frame_*.png"))
            assert files and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    finally:
        os.umask(before)

def test_interpolate_gif_walk_between_seeds_with_loop(tiny, tmp_path, invoke):
    out = tmp_path / "walk.gif"
    result = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,5,9", "--frames", 4, "--loop", "--size", 32, "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        assert im.n_frames == 9 and im.size == (32, 32)
    again = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,5", "-o", out)
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.output


@pytest.mark.parametrize("args,message,code", [
    (["--seeds", "1"], "at least two images", 2),
    (["--seeds", "1,x"], "whole numbers", 2),
    (["a.png", "b.png", "--seeds", "1,2"], "not both", 2),
    (["--seeds", "1,2", "--model", "nope"], "unknown latent model 'nope'", 2),
    (["--seeds", "1,2", "-o", "x.avi"], r"\.gif, \.webp or \.mp4", 2),
    (["missing.png", "other.png"], r"no such file or folder: .*missing\.png", 2),  # as every verb says it
    (["--seeds", "-1,2"], r"from 0 to 4294967295", 2),  # torch would draw -1 as 2**32 - 1
    (["--seeds", "1,4294967296"], r"from 0 to 4294967295", 2),  # ... and 2**32 as 0
    (["--seeds", "1,99999999999999999999"], r"from 0 to 4294967295", 2),  # ... and overflow on this one
    (["--seeds", "1,2", "--frames", "100000000"], r"100000000 frames of 16x16 would need about .* of memory", 2),
])
def test_interpolate_errors_are_one_line(tiny, tmp_path, invoke, args, message, code):
    args = [str(tmp_path / a) if a.endswith(".png") else a for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny.weights)]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "o.gif")]
    result = invoke("interpolate", *args)
    assert result.exit_code == code and len(result.output.strip().splitlines()) == 1
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "o.gif").exists()


def test_nan_fps_is_refused_on_the_command_line(tiny, tmp_path, invoke):
    result = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,2", "--fps", "nan", "-o", tmp_path / "o.gif")
    assert result.exit_code == 2 and "'nan' is not a finite number" in result.output
    assert not (tmp_path / "o.gif").exists()


@pytest.mark.parametrize("make,name,message", [
    (lambda p: p.write_text("mine"), "afile", "afile is a file"),  # was: unexpected FileExistsError
    (lambda p: p.mkdir(), "dir.gif", "dir.gif is a folder"),  # was: unexpected IsADirectoryError
])
def test_output_problems_are_refused_before_the_model_loads(tmp_path, invoke, make, name, message):
    make(tmp_path / name)
    result = invoke("interpolate", "--model", "nope", "--seeds", "1,2", "-o", tmp_path / name, "--overwrite")
    assert result.exit_code == 2 and message in result.output, result.output  # not "unknown latent model"
    assert len(result.output.strip().splitlines()) == 1


def test_an_unwritable_place_is_a_one_line_error(tiny, invoke):
    import os

    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc, where no file can be made")
    result = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,2", "-o", "/proc/x.gif")
    assert result.exit_code == 2 and "cannot write in /proc" in result.output and ".tmp" not in result.output


def test_interpolate_reports_each_stage_unless_quiet(tiny, tmp_path, invoke, monkeypatch):
    from imgedit.verbs import StageProgress

    monkeypatch.setattr(StageProgress, "interval", 0.0)  # a line per step instead of one per 10 s
    result = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,2", "--frames", 3, "-o", tmp_path / "a.gif")
    assert result.exit_code == 0, result.output
    for stage in ("pacing: ", "decoding: 3/3 frames", "writing: 3/3 frames"):
        assert stage in result.output, result.output
    result = invoke("interpolate", "--model", tiny.weights, "--seeds", "1,2", "--frames", 3, "--fps", 120,
                    "-o", tmp_path / "b.gif", "-q")
    assert result.exit_code == 0 and result.output == ""  # no progress, no GIF warning, no summary
    assert (tmp_path / "b.gif").is_file()


def test_the_closing_hint_quotes_a_path_with_a_space(data, tmp_path, invoke):
    weights = tmp_path / "my vae.safetensors"
    result = invoke("train", "interp-vae", "--data", data, "--size", 16, "--z-dim", 8, "--steps", 1, "--batch", 4,
                    "--out", tmp_path / "run", "--export", weights, "-q")
    assert result.exit_code == 0, result.output
    assert f"--model '{weights}' -o morph.gif" in result.output


def test_gan_inversion_reports_progress(user_home, data, tmp_path, invoke, monkeypatch):
    from conftest import save_tiny_gan

    from imgedit.verbs import StageProgress
    from imgedit_gan.sampler import GANSampler

    save_tiny_gan(user_home / "weights" / "imgedit_gan" / "mine.safetensors")
    monkeypatch.setattr(StageProgress, "interval", 0.0)
    monkeypatch.setattr(GANSampler, "inversion_steps", 4)  # a tiny GAN inverts in a few steps as well as in 300
    result = invoke("interpolate", data / "00.png", data / "01.png", "--model", "mine", "--frames", 2, "--ease", "linear",
                    "-o", tmp_path / "m.gif")
    assert result.exit_code == 0, result.output
    assert "inverting 2 images: 4/4 steps (100%)" in result.output and "inverted into mine" in result.output


def test_model_without_the_protocol_is_refused(test_plugin, tmp_path, invoke):
    test_plugin("half", register_latent_models=lambda register: register(
        LatentModelSpec("half-model", "decodes only", load=lambda device: object())))
    result = invoke("interpolate", "--model", "half-model", "--seeds", "1,2", "-o", tmp_path / "o.gif")
    assert result.exit_code == 2 and "does not implement the latent-model protocol" in result.output


def test_a_gan_file_interpolates_as_it_does_by_name(user_home, tmp_path, invoke):
    from conftest import save_tiny_gan

    gan = save_tiny_gan(user_home / "weights" / "imgedit_gan" / "my-gan.safetensors")
    by_name = invoke("interpolate", "--model", "my-gan", "--seeds", "1,2", "--frames", 3, "-o", tmp_path / "by-name.gif")
    by_file = invoke("interpolate", "--model", gan.weights, "--seeds", "1,2", "--frames", 3, "-o", tmp_path / "by-file.gif")
    assert by_name.exit_code == 0 and by_file.exit_code == 0, by_file.output  # was: "must be an interpolation VAE"
    assert (tmp_path / "by-name.gif").read_bytes() == (tmp_path / "by-file.gif").read_bytes()


def test_empty_batches_and_0_255_images(tiny):
    model = load_vae(tiny, "cpu")
    assert model.decode(torch.zeros(0, 8)).shape == (0, 3, 16, 16) and model.encode(torch.zeros(0, 3, 16, 16)).shape == (0, 8)
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\] \(divide 8-bit values by 255\), got 0 to 255"):
        model.encode(torch.linspace(0, 255, 3 * 16 * 16).view(1, 3, 16, 16))


def test_interpolate_takes_folders_and_globs_in_name_order(tiny, data, tmp_path, invoke):
    (data / "notes.txt").write_text("not an image")
    (data / "sub").mkdir()  # no -r: its images are not keyframes
    blob_images(data / "sub", count=1)
    files = sorted(data.glob("*.png"))
    args = ("--model", tiny.weights, "--frames", 2, "--ease", "linear", "-q")
    assert invoke("interpolate", *files, *args, "-o", tmp_path / "files.gif").exit_code == 0
    result = invoke("interpolate", data, *args, "-o", tmp_path / "folder.gif")
    assert result.exit_code == 0, result.output  # was: "give at least two images"
    assert (tmp_path / "folder.gif").read_bytes() == (tmp_path / "files.gif").read_bytes()
    result = invoke("interpolate", data / "0[0-2].png", data / "00.png", *args[:-1], "-o", tmp_path / "glob.gif")
    assert "wrote 4 frames" in result.output and "morphing 4 images" in result.output  # 00 01 02, then 00 again
    result = invoke("interpolate", tmp_path / "nothing-*.png", *args, "-o", tmp_path / "none.gif")
    assert result.exit_code == 2 and "no files match" in result.output


@pytest.mark.parametrize("signal_name, exit_code, said", [
    ("SIGTERM", 143, "Error: stopped by SIGTERM; {out} is left as it was"),  # was: killed (-15), silently, staging left
    ("SIGINT", 130, "Interrupted."),  # Ctrl-C
])
def test_a_signal_while_writing_frames_leaves_the_folder_as_it_was(tiny, tmp_path, signal_name, exit_code, said):
    from conftest import run_signalled_at_third_save
    from imgedit_interp.animation import write_animation

    out = tmp_path / "frames"
    write_animation(torch.zeros(2, 3, 16, 16), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_signalled_at_third_save(signal_name, "interpolate", "--model", tiny.weights, "--seeds", "1,2",
                                         "--frames", "8", "--ease", "linear", "-o", out, "--overwrite", "-q")
    assert result.returncode == exit_code and result.stderr.strip() == said.format(out=out), result
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "models"]  # no staging folder


@pytest.mark.parametrize("count", [1, 2, 3])
def test_too_few_images_for_a_validation_image_is_a_usage_error(tmp_path, invoke, count):
    data = blob_images(tmp_path / "few", count=count)
    result = invoke("train", "interp-vae", "--data", data, "--size", 16, "--steps", 2, "--batch", 2,
                    "--out", tmp_path / "run", "--export", tmp_path / "iv.safetensors", "-q")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"Error: too few images to train on: {count} (after --holdout 0); "
                                     "at least 4 are needed, 1 of them for validation")
    assert not (tmp_path / "run").exists() and not (tmp_path / "iv.safetensors").exists()  # nothing was started


def test_train_command_exports_and_eval_measures(data, tmp_path, invoke, user_home):
    result = invoke("train", "interp-vae", "--data", data, "--size", 16, "--z-dim", 8, "--steps", 2, "--batch", 4,
                    "--holdout", 4, "--out", tmp_path / "run", "--name", "blobs", "-q")
    assert result.exit_code == 0, result.output
    spec = spec_for_file(user_home / "weights" / "imgedit_interp" / "blobs.safetensors")
    card = spec.card()
    assert card["training"]["steps"] == 2 and len(card["training"]["holdout"]["files"]) == 4
    assert card["sha256"] == sha256_file(spec.weights)
    assert load_latent_model("blobs", "cpu").latent_shape == (8,)  # usable by name at once

    result = invoke("eval", "interp", "--model", "blobs", "--data", data, "--held-out", "--pairs", 2, "--frames", 5,
                    "--record", "--json", "--sheet", tmp_path / "sheet.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["images"] == 4 and report["pairs"] == 2 and report["step_ratio_max"] >= 1
    assert report["fade_step_ratio_max"] >= 1 and 0 <= report["morph_more_even_than_fade"] <= 2
    assert all(p["fade_step_ratio"] >= 1 for p in report["per_pair"])
    assert 0 < report["reconstruction_psnr"] < 60 and 0 <= report["interior_morph_nearer_fraction"] <= 1
    assert 0 <= report["real_nearer_than_fade"] <= 4 and report["real_nn_mean"] > 0
    assert spec.card()["metrics"]["eval_interp"]["pairs"] == 2
    assert Image.open(tmp_path / "sheet.png").size == (5 * 18 + 2, 4 * 18 + 2)  # 2 pairs x (morph, fade) rows

    # judged by another random network: other figures, said so; one that paces the frames is flagged
    args = ("eval", "interp", "--model", "blobs", "--data", data, "--held-out", "--pairs", 2, "--frames", 5)
    other = json.loads(invoke(*args, "--json", "--feature-seed", 101).output)
    assert other["feature_seed"] == 101 and other["per_pair"] != report["per_pair"] and other["notes"] == []
    pacing = json.loads(invoke(*args, "--json", "--feature-seed", ENSEMBLE_SEEDS[0]).output)
    assert any("helped place the frames" in note for note in pacing["notes"])
    assert "(feature network of seed 101)" in invoke(*args, "--feature-seed", 101).output
    refused = invoke(*args, "--feature-seed", 101, "--record")
    assert refused.exit_code != 0 and "leave out --feature-seed" in refused.output
    assert spec.card()["metrics"]["eval_interp"]["feature_seed"] == FEATURE_SEED  # the recorded figures are untouched


SHIPPED = CATALOG.shipped_spec()


@pytest.mark.skipif(not SHIPPED.weights.is_file(), reason="faces64-vae is not trained yet")
def test_shipped_weights_verify_load_and_reconstruct():
    card = SHIPPED.card()
    assert sha256_file(SHIPPED.weights) == card["sha256"] and SHIPPED.weights.stat().st_size < 8_000_000
    assert card["training"]["steps"] > 0 and card["training"]["commands"]
    assert "NON-COMMERCIAL RESEARCH USE ONLY" in card["data_licence"]
    model = load_latent_model(MODEL_NAME, "cpu")
    assert model.image_size == (64, 64) and model.latent_shape == (256,)
    faces = model.decode(model.sample_latents(4, seed=0))
    again = model.decode(model.encode(faces))
    assert (again - faces).abs().mean() < 0.05  # its own decodings are near fixed points


def test_summary_counts_real_faces_against_the_cross_fade_as_a_sanity_check():
    from imgedit_interp.evaluate import PairResult, summarise

    # interior frames: 3; the middle one (index 1) is what is compared
    results = [
        PairResult(0, 1, 1.5, 1.8, morph_nn=[2, 1.0, 2], fade_nn=[2, 1.5, 2], end_fade_nn=[2, 1.2, 2], real_nn=(1.0, 2.0)),
        PairResult(2, 3, 2.5, 2.0, morph_nn=[2, 3.0, 2], fade_nn=[2, 2.0, 2], end_fade_nn=[2, 2.5, 2], real_nn=(2.5, 3.0)),
    ]
    summary = summarise(results)
    assert summary["middle_morph_nearer"] == 1 and summary["step_ratio_max"] == 2.5
    assert summary["fade_step_ratio_max"] == 2.0 and summary["fade_step_ratio_mean"] == pytest.approx(1.9)
    assert summary["morph_more_even_than_fade"] == 1  # 1.5 < 1.8; 2.5 is not < 2.0
    assert summary["real_nearer_than_fade"] == 1  # only 1.0 < 1.5; 2.0, 2.5 and 3.0 are not
    assert summary["real_nn_mean"] == (1.0 + 2.0 + 2.5 + 3.0) / 4


def utkface_faces(folder, count=6):
    """Blob images named as UTKFace's are: the first 20 characters shared, the end differing."""
    folder.mkdir(parents=True)
    for i, src in enumerate(sorted(blob_images(folder.parent / "blobs", count=count, size=16).iterdir())):
        Image.open(src).convert("RGB").save(folder / f"25_0_1_20170116{174525000 + i:09d}.jpg.chip.jpg", "JPEG")
    return folder


def test_eval_interp_text_says_what_was_reconstructed_and_tells_pairs_apart(tmp_path, invoke):
    spec = save_tiny_vae(tmp_path / "w" / "tiny.safetensors")
    faces = utkface_faces(tmp_path / "faces")
    result = invoke("eval", "interp", "--model", spec.weights, "--data", faces, "--limit", 2, "--pairs", 3, "--frames", 3)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{spec.weights} on 6 images of")
    assert "(on 2 of the 6 images: --limit)" in lines[1]
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("pair"))
    pairs = [line.split()[:2] for line in lines[header + 1:]]
    assert len(pairs) == 3 and len({name for pair in pairs for name in pair}) == 6  # every face told apart
    assert all(name.startswith("25_0_1_20170116") and name[-1].isdigit() for pair in pairs for name in pair)
    assert lines[header].index("step ratio") == lines[header + 1].index(" / ") - 6  # the header sits over its column


def test_eval_interp_record_keeps_held_out_figures_unless_overwrite(tmp_path, invoke):
    recorded = {"held_out": True, "images": 2000, "reconstructed": 2000, "pairs": 8}
    spec = save_tiny_vae(tmp_path / "w" / "tiny.safetensors", metrics={"eval_interp": recorded})
    before = spec.card_path.read_bytes()
    data = blob_images(tmp_path / "data", count=6, size=16)
    args = ("eval", "interp", "--model", spec.weights, "--data", data, "--pairs", 2, "--frames", 3)
    refused = invoke(*args, "--record")
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert "held-out" in refused.output and "--overwrite" in refused.output
    assert spec.card_path.read_bytes() == before

    spec.card_path.write_text(json.dumps({**json.loads(before), "metrics": {"eval_interp": {**recorded, "held_out": False}}}))
    fewer = invoke(*args, "--record")
    assert fewer.exit_code == 2 and "images=2000" in fewer.output and "images=6" in fewer.output, fewer.output
    assert invoke(*args, "--record", "--overwrite").exit_code == 0
    assert spec.card()["metrics"]["eval_interp"]["images"] == 6
    assert invoke(*args, "--record", "--limit", 3).exit_code == 2  # fewer reconstructed than recorded


def test_eval_interp_too_small_images_are_not_called_training_images(tmp_path, invoke):
    spec = save_tiny_vae(tmp_path / "w" / "tiny.safetensors")
    small = blob_images(tmp_path / "small", count=4, size=8)
    result = invoke("eval", "interp", "--model", spec.weights, "--data", small)
    assert result.exit_code == 2 and "no images of at least 16x16 px" in result.output
    assert "training" not in result.output


def test_eval_interp_refuses_a_sheet_it_could_not_write_before_morphing_or_recording(tmp_path, invoke, monkeypatch):
    import imgedit_interp.evaluate as evaluate

    def morphed(*args, **kwargs):
        raise AssertionError("morphed before the sheet was checked")

    monkeypatch.setattr(evaluate, "reconstruction_psnr", morphed)
    spec = save_tiny_vae(tmp_path / "w" / "tiny.safetensors")
    before = spec.card_path.read_bytes()
    data = blob_images(tmp_path / "data", count=6, size=16)
    result = invoke("eval", "interp", "--model", spec.weights, "--data", data, "--record", "--sheet", tmp_path / "morphs.txt")
    assert result.exit_code == 2 and "unknown image suffix" in result.output, result.output
    assert spec.card_path.read_bytes() == before


def test_a_morph_that_does_not_move_is_the_least_even_not_the_most():
    # all frames alike (a collapsed model) scored 0, better than a perfectly even morph's 1
    from imgedit_interp.evaluate import step_ratio

    assert step_ratio(torch.zeros(6, 4)) == float("inf")
    stalls = torch.tensor([[0.0], [1.0], [1.0], [2.0]])  # one step of nothing between two of 1
    assert step_ratio(stalls) == float("inf")
    assert step_ratio(torch.tensor([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
