"""Options a run takes and would not use are named in one warning each, and
the run goes on; a dry run and a run name the same journal; a command refused
before it begins prints nothing on stdout, even with --json."""

import json

import pytest
from PIL import Image

from imgedit.journal import JOURNAL_NAME

from conftest import save_tiny_vae, smooth_rgb

DENOISE = ("denoise", "--method", "nlm", "--sigma", "5")


def warnings_of(result):
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


@pytest.fixture
def pngs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(smooth_rgb(seed=i)).save(src / f"p{i}.png")
    return src


def test_name_with_one_output_file_is_ignored_with_a_warning(invoke, photo, tmp_path):
    result = invoke(*DENOISE, photo, "-o", tmp_path / "qq.png", "--name", "{stem}.x.{ext}")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == ["Warning: ignoring --name: -o FILE names the output"]
    assert (tmp_path / "qq.png").is_file() and not list(tmp_path.glob("*.x.*"))


def test_name_with_an_output_folder_is_used_without_a_warning(invoke, photo, tmp_path):
    result = invoke(*DENOISE, photo, "-o", tmp_path / "out", "--name", "{stem}.x.{ext}")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [] and (tmp_path / "out" / "photo.x.png").is_file()


def test_name_in_place_is_ignored_with_a_warning(invoke, photo):
    result = invoke(*DENOISE, photo, "--in-place", "--name", "{stem}.x.{ext}")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == ["Warning: ignoring --name: --in-place writes over the inputs"]


QUALITY_IGNORED = "Warning: ignoring --quality: only JPEG, WebP and AVIF outputs use it, and this run writes PNG"


@pytest.mark.parametrize("source, output, extra", [("p0.png", "o.png", ()), (".", "out", ()),
                                                   (".", "out", ("--format", "png"))])
def test_quality_where_no_output_uses_it_is_ignored_with_a_warning(invoke, pngs, tmp_path, source, output, extra):
    result = invoke(*DENOISE, pngs / source, "-o", tmp_path / output, "--quality", 80, *extra)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [QUALITY_IGNORED]


def test_quality_where_some_output_uses_it_gets_no_warning(invoke, pngs, tmp_path):
    Image.fromarray(smooth_rgb(seed=5)).save(pngs / "j.jpg")  # one JPEG among the PNGs: written as a JPEG
    for args in ([pngs, "-o", tmp_path / "out"], [pngs / "p0.png", "-o", tmp_path / "o.jpg"],
                 [pngs / "p0.png", "-o", tmp_path / "o.webp"], [pngs, "-o", tmp_path / "f", "--format", "jpeg"],
                 [pngs / "p0.png", "--name", "{stem}.q.jpg"]):
        result = invoke(*DENOISE, *args, "--quality", 80)
        assert result.exit_code == 0, result.output
        assert warnings_of(result) == [], args


def test_quality_with_jpeg_input_and_png_format_is_ignored_with_a_warning(invoke, tmp_path):
    source = tmp_path / "a.jpg"
    Image.fromarray(smooth_rgb()).save(source)
    result = invoke(*DENOISE, source, "--format", "png", "--quality", 80, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [QUALITY_IGNORED]


def test_color_tolerance_without_mask_color_is_ignored_with_a_warning(invoke, photo, tmp_path):
    args = ("inpaint", photo, "--method", "ns", "--mask-box", "1,1,5,5", "--color-tolerance", 10)
    result = invoke(*args, "-o", tmp_path / "a.png")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == ["Warning: ignoring --color-tolerance: it says how near --mask-color a pixel must "
                                   "be, and no --mask-color is given"]
    result = invoke("inpaint", photo, "--method", "ns", "--mask-color", "ff00ff", "--color-tolerance", 10,
                    "-o", tmp_path / "b.png")
    assert warnings_of(result) == []


@pytest.mark.parametrize("flag, then", [
    ("--force", "nothing is skipped as done (--overwrite replaces an existing output)"),
    ("--retry-failed", "no failure is on record and the image is processed"),
])
def test_journal_flags_without_a_journal_are_ignored_with_a_warning(invoke, photo, tmp_path, flag, then):
    out = tmp_path / "o.png"
    result = invoke(*DENOISE, photo, "-o", out, flag)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == [f"Warning: ignoring {flag}: one file given alone with -o FILE keeps no journal, "
                                   f"so {then}"]
    assert not (tmp_path / JOURNAL_NAME).exists()
    again = invoke(*DENOISE, photo, "-o", out, flag)  # no journal: the flag changes nothing; the output is kept
    assert again.exit_code == 1 and "pass --overwrite" in again.stderr
    beside = invoke(*DENOISE, photo, flag)  # a file named alone, written beside itself
    assert f"Warning: ignoring {flag}: one file given alone keeps no journal, so {then}" in warnings_of(beside)


def test_journal_flags_with_a_journal_get_no_warning(invoke, pngs, tmp_path):
    for flag in ("--force", "--retry-failed"):
        result = invoke(*DENOISE, pngs, "-o", tmp_path / "out", flag)
        assert result.exit_code == 0, result.output
        assert warnings_of(result) == []


def test_mask_options_where_no_stage_uses_a_mask_are_ignored_with_a_warning(invoke, photo, tmp_path):
    result = invoke("run", "-p", "denoise.nlm sigma=5", photo, "-o", tmp_path / "a.png", "--mask-box", "1,1,5,5",
                    "--dilate", 2, "--color-tolerance", 24)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == ["Warning: ignoring --color-tolerance, --mask-box, --dilate: no stage of the "
                                   "pipeline uses a mask"]
    result = invoke("run", "-p", "denoise.nlm sigma=5 | inpaint method=ns", photo, "-o", tmp_path / "b.png",
                    "--mask-box", "1,1,5,5", "--dilate", 2)
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == []


def test_quiet_says_no_warning(invoke, photo, tmp_path):
    result = invoke(*DENOISE, photo, "-o", tmp_path / "qq.png", "--name", "{stem}.x.{ext}", "--quality", 80, "-q")
    assert result.exit_code == 0 and result.output == ""


def test_interpolate_to_a_folder_ignores_fps_and_claims_none(invoke, tmp_path):
    vae = save_tiny_vae(tmp_path / "tiny-vae.safetensors")
    args = ("interpolate", "--model", vae.weights, "--seeds", "1,2", "--frames", 3, "--ease", "linear")
    result = invoke(*args, "--fps", 30, "-o", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    assert warnings_of(result) == ["Warning: ignoring --fps: a folder of PNG frames has no frame rate; write a .gif, "
                                   ".webp or .mp4 to play at 30 fps"]
    assert "wrote 3 frames (16x16) morphing" in result.stderr and "fps)" not in result.stderr
    assert len(list((tmp_path / "frames").glob("*.png"))) == 3
    result = invoke(*args, "-o", tmp_path / "more")  # --fps not typed: nothing ignored
    assert result.exit_code == 0 and warnings_of(result) == [] and "fps" not in result.stderr
    result = invoke(*args, "--fps", 30, "-o", tmp_path / "walk.webp")
    assert result.exit_code == 0 and warnings_of(result) == [] and "(16x16, 30 fps)" in result.stderr


@pytest.mark.parametrize("output, journal", [("out", "out/" + JOURNAL_NAME), ("o.png", None)])
def test_dry_run_names_the_journal_as_the_run_does(invoke, pngs, tmp_path, output, journal):
    inputs = [pngs] if output == "out" else [pngs / "p0.png"]
    args = (*DENOISE, *inputs, "-o", tmp_path / output, "--json")
    plan = json.loads(invoke(*args, "--dry-run").stdout)
    summary = json.loads(invoke(*args).stdout)
    assert plan["journal"] == summary["journal"] == (str(tmp_path / journal) if journal else None)
    text = invoke(*args[:-1], "--dry-run").stdout
    assert f"journal: {tmp_path / journal if journal else 'none'};" in text


@pytest.mark.parametrize("args", [("missing.png",), ("{photo}", "--device", "bogus"),
                                  ("{photo}", "--in-place", "-o", "x.png")])
def test_a_command_refused_before_it_begins_prints_nothing_on_stdout(invoke, photo, args):
    result = invoke(*DENOISE, *(a.format(photo=photo) for a in args), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ")
