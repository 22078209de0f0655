"""``imgedit style`` (files, folders, pipelines, --style-image), ``imgedit
eval style``, one-line errors with exit code 2, and the shipped styles."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.models import ModelSpec, save_weights, shipped_weights_dir, verify
from imgedit_style.catalog import ARCHITECTURE, SHIPPED, shipped_specs
from imgedit_style.model import StyleNet, StyleNetConfig
from imgedit_style.stylize import load_style_net, rgb_to_ycbcr

TINY = {"widths": [4, 8, 8], "res_blocks": 1, "skips": True}
TINY_LOSS_NET = {"kind": "random", "seed": 1, "widths": [8, 16], "convs": 1, "kernel": 3, "pool": "avg",
                 "zero_mean": True, "content_stage": 2}


def save_tiny_style(path, painting, seed=0):
    """An untrained tiny style network saved as a user would train one."""
    torch.manual_seed(seed)
    net = StyleNet(StyleNetConfig(**TINY))
    for layer in (net.to_rgb, net.from_photo):  # a new network returns the photo: make this one change it
        torch.nn.init.normal_(layer.weight, std=0.05)
    card = {"architecture": ARCHITECTURE, "model_config": TINY, "description": "tiny",
            "style": {"image": str(painting), "style_size": 32, "loss_net": TINY_LOSS_NET}}
    return save_weights(net.state_dict(), path, card)


def write_png(path, h=23, w=31, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([60 + 120 * x / w, 60 + 120 * y / h, 90 + 40 * np.sin(x / 3)], -1) + rng.normal(0, 3, (h, w, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def painting(tmp_path):
    return write_png(tmp_path / "painting.png", 40, 40, seed=1)


@pytest.fixture
def tiny_style(user_home, painting):
    spec = save_tiny_style(user_home / "weights" / "imgedit_style" / "tiny.safetensors", painting)
    return spec


@pytest.fixture
def photo(tmp_path):
    return write_png(tmp_path / "photo.png")


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_style_a_file_keeps_its_size(invoke, tiny_style, photo, tmp_path):
    result = invoke("style", photo, "--style", "tiny", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (23, 31, 3) and np.abs(out.astype(int) - np.asarray(Image.open(photo)).astype(int)).mean() > 2


def test_a_photo_styled_below_its_size_says_so_and_how_to_style_it_at_full_size(invoke, tiny_style, tmp_path):
    wide = write_png(tmp_path / "wide.png", 40, 1100)  # longer than scale=auto's 1024 px
    result = invoke("style", wide, "--style", "tiny", "-o", tmp_path / "auto.png")
    assert result.exit_code == 0 and result.stderr.strip() == (
        f"wrote {tmp_path / 'auto.png'} (styled at 1024 px and scaled up to 1100: --scale 1100 styles it at full size)")
    full = invoke("style", wide, "--style", "tiny", "-o", tmp_path / "full.png", "--scale", "1100")
    assert full.exit_code == 0 and full.stderr.strip() == f"wrote {tmp_path / 'full.png'}"  # asked for: nothing to say
    small = invoke("style", write_png(tmp_path / "small.png"), "--style", "tiny", "-o", tmp_path / "small-out.png")
    assert small.stderr.strip() == f"wrote {tmp_path / 'small-out.png'}"


def test_strength_zero_and_preserve_color_on_the_command_line(invoke, tiny_style, photo, tmp_path):
    result = invoke("style", photo, "--style", "tiny", "--strength", "0", "-o", tmp_path / "same.png")
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), np.asarray(Image.open(photo)))
    result = invoke("style", photo, "--style", "tiny", "--preserve-color", "-o", tmp_path / "kept.png")
    assert result.exit_code == 0, result.output

    def chroma(path):
        return rgb_to_ycbcr(torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)[None].float() / 255)[:, 1:]

    error = (chroma(tmp_path / "kept.png") - chroma(photo)).abs()
    # 8-bit rounding, and the few pixels whose new luminance cannot carry the old chroma within [0, 1]
    assert error.mean() < 0.003 and error.flatten().quantile(0.98) < 0.005


def test_folders_and_pipelines(invoke, tiny_style, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (h, w) in enumerate([(17, 33), (40, 25)]):
        write_png(folder / f"{i}.png", h, w, seed=i)
    result = invoke("style", folder, "--style", "tiny", "-o", tmp_path / "styled")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "styled" / "1.png").size == (25, 40)
    result = invoke("run", "-p", "denoise sigma=5 | style name=tiny strength=0.5 scale=32", folder, "-o", tmp_path / "piped")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "piped" / "0.png").size == (33, 17)


def test_style_image_by_optimisation(invoke, user_home, photo, painting, tmp_path):
    result = invoke("style", photo, "--style-image", painting, "--steps", "3", "--style-size", "32", "-o", tmp_path / "opt.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "opt.png").size == (31, 23)


def test_unknown_style_lists_the_known_ones(invoke, tiny_style, photo, tmp_path):
    line = one_line_error(invoke("style", photo, "--style", "nope", "-o", tmp_path / "x.png"), "unknown style 'nope'")
    assert all(name in line for name in (*SHIPPED, "tiny"))
    one_line_error(invoke("style", photo, "-o", tmp_path / "x.png"), "--style NAME", "--style-image")
    one_line_error(invoke("run", "-p", "style name=nope", photo, "-o", tmp_path / "x.png"), "unknown style 'nope'", "tiny")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("typed, meant", [("mosiac", "mosaic"), ("Mosaic", "mosaic"), ("TINY", "tiny"), ("tinny", "tiny")])
def test_an_unknown_style_close_to_a_known_one_is_suggested(invoke, tiny_style, photo, tmp_path, typed, meant):
    line = one_line_error(invoke("style", photo, "--style", typed, "-o", tmp_path / "x.png"),
                          f"unknown style '{typed}'; did you mean {meant}? (known: ")
    assert all(name in line for name in (*SHIPPED, "tiny"))
    one_line_error(invoke("run", "-p", f"style name={typed}", photo, "-o", tmp_path / "x.png"), f"did you mean {meant}?")


def test_an_unknown_style_far_from_every_known_one_gets_no_suggestion(invoke, tiny_style, photo, tmp_path):
    line = one_line_error(invoke("style", photo, "--style", "zzzzzz", "-o", tmp_path / "x.png"), "unknown style 'zzzzzz'")
    assert "did you mean" not in line


def test_a_folder_given_as_the_painting_is_called_a_folder(invoke, user_home, photo, tmp_path):
    folder = photo.parent  # a folder of photos, not a painting
    one_line_error(invoke("style", photo, "--style-image", folder, "-o", tmp_path / "x.png"),
                   f"style image {folder} is a folder, not an image")
    one_line_error(invoke("train", "style", "--style-image", folder, "--data", folder, "--out", tmp_path / "run"),
                   f"style image {folder} is a folder, not an image")
    assert not (tmp_path / "run").exists() and not (tmp_path / "x.png").exists()


def test_a_pipeline_with_an_unknown_style_fails_before_any_image_is_read(invoke, tiny_style, photo, tmp_path):
    from imgedit.errors import UsageError
    from imgedit.pipeline import Pipeline

    line = one_line_error(invoke("run", "-p", "denoise sigma=5 | style name=nope", photo.parent, "-o", tmp_path / "out"),
                          "stage 2 (style): unknown style 'nope'")
    assert "style: unknown" not in line  # the stage is named once
    assert not (tmp_path / "out").exists()  # no journal, no output folder: nothing was started
    with pytest.raises(UsageError, match="unknown style"):
        Pipeline.parse("style name=nope")  # the Python API checks the same way
    with pytest.raises(UsageError, match="missing.jpg does not exist"):
        Pipeline.parse(f"style style_image={tmp_path / 'missing.jpg'}")


def test_missing_style_image_and_bad_values_are_one_line_errors(invoke, tiny_style, photo, tmp_path):
    one_line_error(invoke("style", photo, "--style-image", tmp_path / "nope.jpg"), "nope.jpg does not exist")
    if Path("/dev/zero").exists():  # there, but no file: not "does not exist"
        one_line_error(invoke("style", photo, "--style-image", "/dev/zero"), "style image /dev/zero is not a regular file")
    for value, said in (("2", "2.0 is not in the range 0<=x<=1."), ("much", "'much' is not a valid float range.")):
        result = invoke("style", photo, "--style", "tiny", "--strength", value)  # refused by click, as its own options are
        assert result.exit_code == 2 and result.stderr == f"Error: Invalid value for '--strength': {said} See 'cli style --help'.\n"
    result = invoke("style", photo, "--style", "tiny", "--scale", "4")
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith("Error: Invalid value for '--scale'")
    one_line_error(invoke("run", "-p", "style name=tiny strength=-1", photo), "strength")


def test_a_style_and_a_painting_together_are_a_usage_error(invoke, tiny_style, photo, painting, tmp_path):
    # they are alternatives: neither may be dropped silently
    one_line_error(invoke("style", photo, "--style", "tiny", "--style-image", painting, "-o", tmp_path / "x.png"),
                   "--style NAME", "--style-image FILE", "not both")
    one_line_error(invoke("run", "-p", f"style name=tiny style_image={painting}", photo, "-o", tmp_path / "x.png"),
                   "stage 1 (style)", "not both")
    assert not (tmp_path / "x.png").exists()


def test_vgg_loss_net_without_weights_says_where_it_looked(invoke, user_home, photo, painting, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    line = one_line_error(invoke("style", photo, "--style-image", painting, "--loss-net", "vgg16", "-o", tmp_path / "v.png"))
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth") in line


def test_vgg_loss_net_runs_from_the_local_cache(invoke, user_home, photo, painting, tmp_path, monkeypatch):
    from test_style_model import save_torchvision_vgg

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    save_torchvision_vgg("vgg16", tmp_path / "torch")
    result = invoke("style", photo, "--style-image", painting, "--loss-net", "vgg16", "--steps", "2", "--style-size", "32",
                    "-o", tmp_path / "vgg.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "vgg.png").size == (31, 23)
    result = invoke("train", "style", "--style-image", painting, "--data", photo, "--loss-net", "vgg19", "--steps", 1)
    one_line_error(result, "vgg19-dcbb9e9d.pth")


def test_eval_style_reports_and_draws_a_sheet(invoke, tiny_style, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i}.png", 24, 36, seed=i)
    result = invoke("eval", "style", "--style", "tiny", "--data", folder, "--size", 36, "--steps", 2,
                    "--sheet", tmp_path / "sheet.png", "--record", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    row = report["styles"]["tiny"]
    assert row["photos"] == 2 and report["measuring_seed"] != TINY_LOSS_NET["seed"]
    # each photo's figures, measured again here from their definitions (imgedit_style.evaluate)
    from imgedit_style.evaluate import EVAL_SEED, StyleMeter, structure_kept
    from imgedit_style.lossnet import LossNetConfig
    from imgedit_style.report import load_photos, style_setup
    from imgedit_style.stylize import stylise

    assert report["measuring_seed"] == EVAL_SEED
    names, photos = load_photos([str(folder)], 2, 36)
    painting, recipe, _ = style_setup(tiny_style)
    assert recipe == LossNetConfig.from_dict(TINY_LOSS_NET)
    meter, net = StyleMeter(painting, recipe, EVAL_SEED), load_style_net(tiny_style, torch.device("cpu"))
    per_photo = report["per_photo"]
    assert [p["photo"] for p in per_photo] == names == ["0.png", "1.png"]
    for measured, photo in zip(per_photo, photos):
        fast = stylise(photo, net)
        assert measured["fast_distance"] == pytest.approx(meter(fast).item(), rel=1e-4)
        assert measured["fast_ssim"] == pytest.approx(structure_kept(photo, fast).item(), abs=1e-4)
        assert 0.4 < measured["fast_ssim"] < 0.9  # the tiny network changes the photo (about 0.61), keeping some layout
        assert measured["ratio"] == pytest.approx(measured["fast_distance"] / measured["optimised_distance"], rel=1e-6)
        assert measured["optimised_distance"] < measured["fast_distance"]  # 2 steps on this photo beat an untrained net
    for figure in ("fast_distance", "optimised_distance", "ratio", "fast_ssim", "optimised_ssim"):
        assert row[figure] == pytest.approx(sum(p[figure] for p in per_photo) / 2, abs=1e-4)  # means, rounded to 4
    assert Image.open(tmp_path / "sheet.png").size[0] > 2 * 36
    assert "eval_style" in tiny_style.card()["metrics"]


def test_eval_style_record_keeps_figures_over_more_photos_unless_overwrite(invoke, tiny_style, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i}.png", 24, 36, seed=i)
    args = ("eval", "style", "--style", "tiny", "--data", folder, "--size", 36, "--record", "-q")
    assert invoke(*args, "--steps", 1).exit_code == 0
    before = tiny_style.card_path.read_bytes()
    one_line_error(invoke(*args, "--steps", 1, "--limit", 1), "photos=2", "photos=1", "--overwrite")
    one_line_error(invoke(*args, "--steps", 0), "steps=1", "steps=0")  # no baseline: the ratio would be lost
    assert tiny_style.card_path.read_bytes() == before
    assert invoke(*args, "--steps", 0, "--overwrite").exit_code == 0
    assert tiny_style.card()["metrics"]["eval_style"]["steps"] == 0
    one_line_error(invoke("eval", "style", "--style", "tiny", "--data", folder, "--overwrite"), "needs --record")


def test_shipped_styles_are_registered(invoke):
    result = invoke("models")
    assert result.exit_code == 0
    assert all(name in result.output for name in SHIPPED)
    assert [s.name for s in shipped_specs()][:4] == list(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_load_and_verify(name):
    spec = ModelSpec(name, shipped_weights_dir() / "imgedit_style" / f"{name}.safetensors")
    if not spec.weights.is_file():
        pytest.skip(f"style '{name}' is not trained yet")
    assert verify(spec) == (True, "ok")
    card = spec.card()
    assert card["architecture"] == ARCHITECTURE and card["parameters"] <= 500_000
    net = load_style_net(spec)
    out = net(torch.rand(1, 3, 32, 48))
    assert out.shape == (1, 3, 32, 48) and torch.isfinite(out).all()


def test_retraining_a_style_or_editing_the_painting_redoes_the_images(invoke, tiny_style, photo, painting, tmp_path):
    import json

    def run(*args):
        result = invoke("style", photo.parent / "photo.png", *args, "-o", tmp_path / "out", "--json", "--overwrite")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)  # stderr has the progress lines
        return report["done"], report["skipped"]

    assert run("--style", "tiny") == (1, 0)
    assert run("--style", "tiny") == (0, 1)  # nothing changed: skipped
    save_tiny_style(tiny_style.weights, painting, seed=1)  # retrained
    assert run("--style", "tiny") == (1, 0)

    optimise = ("--style-image", painting, "--steps", "2", "--style-size", "32", "--name", "{stem}.opt.{ext}")
    assert run(*optimise) == (1, 0)
    assert run(*optimise) == (0, 1)
    write_png(painting, 40, 40, seed=2)  # the painting was edited
    assert run(*optimise) == (1, 0)


def test_optimisation_progress_bar_respects_quiet(invoke, user_home, photo, painting, tmp_path):
    result = invoke("style", photo, "--style-image", painting, "--steps", "3", "--style-size", "32", "-q",
                    "-o", tmp_path / "opt.png")
    assert result.exit_code == 0 and result.output == "", result.output  # "print only errors": no tqdm bar
    assert (tmp_path / "opt.png").is_file()


@pytest.mark.parametrize("option", [("--steps", "5"), ("--loss-net", "vgg16"), ("--style-size", "64")])
def test_optimisation_options_with_a_trained_style_are_refused(invoke, tiny_style, photo, tmp_path, option):
    one_line_error(invoke("style", photo, "--style", "tiny", *option, "-o", tmp_path / "x.png"),
                   option[0], "only with --style-image")
    one_line_error(invoke("run", "-p", f"style name=tiny {option[0][2:].replace('-', '_')}={option[1]}", photo,
                          "-o", tmp_path / "x.png"), "only with --style-image")
    assert not (tmp_path / "x.png").exists()
    assert invoke("style", photo, "--style", "tiny", "--dry-run", "-o", tmp_path / "x.png").exit_code == 0


def test_a_model_file_that_is_not_a_style_is_refused_up_front(invoke, user_home, photo, tmp_path):
    from conftest import save_tiny_gan

    gan = save_tiny_gan(tmp_path / "faces.safetensors")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i}.png", seed=i)
    one_line_error(invoke("style", folder, "--style", gan.weights, "-o", tmp_path / "out"),
                   "is not a style network", "imgedit_gan.model.Generator")  # once, exit 2: not once per image
    assert not (tmp_path / "out").exists()


def test_the_style_hint_is_quoted_for_a_shell(user_home, painting, tmp_path):
    from imgedit import registry
    from imgedit_style.commands import _style_argument

    weights = save_tiny_style(user_home / "weights" / "imgedit_style" / "my style.safetensors", painting).weights
    registry.reset()
    assert _style_argument("my style", weights) == "'my style'"
    assert _style_argument("elsewhere", tmp_path / "a b.safetensors") == f"'{tmp_path / 'a b.safetensors'}'"


def test_the_optimisation_draws_no_bar_where_stderr_is_not_a_terminal(painting, capfd):
    # a service's stderr, a log file: tqdm would write a line per redraw there
    import torch

    import imgedit

    image = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    out = imgedit.run(f"style style_image={painting} steps=3 style_size=64", image)  # 64: no enlargement warning
    assert out.shape == image.shape and capfd.readouterr().err == ""


@pytest.mark.parametrize("option, value, limit", [("--style-size", 8192, "32<=x<=4096"), ("--patch", 8192, "16<=x<=1200")])
def test_train_style_refuses_sizes_that_would_take_the_machine_before_loading_anything(invoke, painting, tmp_path,
                                                                                     option, value, limit):
    # 8192: over 10 minutes and 12 GB of set-up (style size) or 13 GB and a crash (patch); 'style' capped it already
    result = invoke("train", "style", "--style-image", painting, "--data", tmp_path, option, value, "-o", tmp_path / "run")
    assert result.exit_code == 2 and limit in result.output and not (tmp_path / "run").exists()
