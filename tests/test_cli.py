"""The CLI end to end: verbs, mask sources, outputs, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import click
import pytest
from PIL import Image

from conftest import smooth_rgb


def pixels(path):
    return np.asarray(Image.open(path)).astype(np.int16)


def assert_one_line_error(result, code, text):
    assert result.exit_code == code, result.output
    err = result.stderr.strip()
    assert "Traceback" not in result.output
    assert err.startswith("Error:") and text in err, err
    assert len(err.splitlines()) == 1, err


def test_help_lists_verbs(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for verb in ("inpaint", "denoise", "plugins", "models", "info"):
        assert verb in result.output


def test_inpaint_with_sidecar_mask_keeps_known_pixels(invoke, photo):
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 30:40] = 255
    Image.fromarray(mask).save(photo.parent / "photo.mask.png")
    result = invoke("inpaint", photo)
    assert result.exit_code == 0, result.output
    out = photo.parent / "photo.inpaint.png"
    assert out.exists() and "sidecar" in result.stderr
    before, after = pixels(photo), pixels(out)
    keep = mask == 0
    assert np.array_equal(before[keep], after[keep])
    assert np.abs(before[~keep] - after[~keep]).mean() < 12  # smooth image: fill is close


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_methods_and_box(invoke, photo, method):
    out = photo.parent / f"{method}.png"
    result = invoke("inpaint", photo, "--method", method, "--mask-box", "20,10,8,8", "-o", out)
    assert result.exit_code == 0, result.output
    assert pixels(out).shape == pixels(photo).shape


def test_inpaint_transparent_hole_becomes_opaque(invoke, tmp_path):
    rgba = np.dstack([smooth_rgb(), np.full((48, 64), 255, np.uint8)])
    rgba[5:15, 5:15, 3] = 0
    src = tmp_path / "cut.png"
    Image.fromarray(rgba).save(src)
    result = invoke("inpaint", src, "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    out = pixels(tmp_path / "out.png")
    assert out.shape == (48, 64, 4) and out[..., 3].min() == 255


def test_a_soft_erased_holes_feathered_rim_is_made_opaque_and_other_translucency_kept(invoke, tmp_path):
    rgba = np.dstack([smooth_rgb(), np.full((48, 64), 255, np.uint8)])
    rgba[10:20, 10:20, 3] = 0
    for ring, alpha in ((1, 60), (2, 140), (3, 220)):  # a soft eraser: alpha rising away from the hole
        rgba[10 - ring:20 + ring, 10 - ring:20 + ring, 3] = np.minimum(rgba[10 - ring:20 + ring, 10 - ring:20 + ring, 3],
                                                                       alpha)
    rgba[10:20, 10:20, 3] = 0
    rgba[30:40, 45:60, 3] = 200  # the picture's own translucency, away from the hole
    src = tmp_path / "soft.png"
    Image.fromarray(rgba).save(src)
    result = invoke("inpaint", src, "--method", "telea", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    alpha = pixels(tmp_path / "out.png")[..., 3]
    assert (alpha[:25, :25] == 255).all()  # no translucent ring around the fill, for any background to show through
    assert (alpha[30:40, 45:60] == 200).all()


def test_inpaint_without_hole_lists_the_ways(invoke, photo):
    jpeg = photo.parent / "photo.jpg"  # a format without transparency: no image can have a hole of its own
    Image.open(photo).convert("RGB").save(jpeg)
    result = invoke("inpaint", jpeg)
    assert_one_line_error(result, 2, "--mask")
    # a verb's user wrote no pipeline: the error does not speak of stages
    assert result.stderr.startswith("Error: inpaint needs a mask") and "stage" not in result.stderr
    assert "photo.mask.png" in result.stderr and not (photo.parent / "photo.inpaint.jpg").exists()
    staged = invoke("run", "-p", "denoise method=nlm sigma=5 | inpaint", jpeg)
    assert_one_line_error(staged, 2, "stage 2 (inpaint) needs a mask")
    assert_one_line_error(invoke("inpaint", photo), 2, "--mask")  # a PNG without transparency: found as it is read
    assert not (photo.parent / "photo.inpaint.png").exists()


@pytest.mark.parametrize("method", ["vae", "nlm"])
def test_denoise_says_the_sigma_it_estimated(invoke, tmp_path, method):
    import json
    import re

    rng = np.random.default_rng(0)
    clean = smooth_rgb(96, 96).astype(np.float32)
    src = tmp_path / "noisy.png"
    Image.fromarray(np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).round().astype(np.uint8)).save(src)
    result = invoke("denoise", src, "--method", method, "-o", tmp_path / "clean.png")
    assert result.exit_code == 0, result.output
    said = re.fullmatch(rf"wrote {re.escape(str(tmp_path / 'clean.png'))} \(sigma (\d+(?:\.\d\d?)?) estimated\)",
                        result.stderr.strip())
    assert said and 16 < float(said.group(1)) < 24, result.stderr
    report = json.loads(invoke("denoise", src, "--method", method, "-o", tmp_path / "again.png", "--json").stdout)
    assert report["outputs"][0]["details"] == [f"sigma {said.group(1)} estimated"]
    pinned = invoke("denoise", src, "--method", method, "--sigma", said.group(1), "-o", tmp_path / "pinned.png")
    assert pinned.exit_code == 0  # the level said is the level used: pinning it gives the same bytes
    assert (tmp_path / "pinned.png").read_bytes() == (tmp_path / "clean.png").read_bytes()
    fixed = invoke("denoise", src, "--method", method, "--sigma", "20", "-o", tmp_path / "fixed.png")
    assert fixed.stderr.strip() == f"wrote {tmp_path / 'fixed.png'}"  # nothing estimated, nothing to say


def test_denoise_sigma(invoke, tmp_path):
    rng = np.random.default_rng(0)
    clean = smooth_rgb(64, 64).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).round().astype(np.uint8)
    src = tmp_path / "noisy.png"
    Image.fromarray(noisy).save(src)
    result = invoke("denoise", src, "--sigma", "20", "-o", tmp_path / "clean.png")
    assert result.exit_code == 0, result.output
    err_before = np.abs(noisy - clean).mean()
    err_after = np.abs(pixels(tmp_path / "clean.png") - clean).mean()
    assert err_after < 0.6 * err_before


def test_denoise_bad_parameter_is_usage_error(invoke, photo):
    result = invoke("denoise", photo, "--sigma", "loud")  # refused by click, as its own options are
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr == ("Error: Invalid value for '--sigma': 'loud' is not a valid float or 'auto'. "
                             "See 'cli denoise --help'.\n")  # one line, as imgedit's own errors: no usage first


@pytest.mark.parametrize("args, said", [
    (("denoize",), "Error: No such command 'denoize'. Did you mean 'denoise'? See 'cli --help'."),
    (("--bogus",), "Error: No such option '--bogus'. See 'cli --help'."),
    (("train", "style"), "Error: Missing option '--data'. See 'cli train style --help'."),
])
def test_a_usage_error_is_one_line_ending_with_where_the_help_is(invoke, args, said):
    result = invoke(*args)
    assert result.exit_code == 2 and result.stderr == said + "\n"


def test_a_plugin_command_s_usage_error_of_several_lines_is_one_line_too(cli_runner):
    from imgedit.cli import ImgeditGroup

    @click.group(cls=ImgeditGroup)
    def root():
        pass

    @root.command()
    @click.option("--kind", type=click.Choice(["a", "b"]), required=True)
    def pick(kind):
        pass

    result = cli_runner.invoke(root, ["pick"])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("Error: Missing option '--kind'.") and "\\n" not in result.stderr


def test_a_group_without_its_command_still_shows_its_help(invoke):
    result = invoke("eval")
    assert result.exit_code == 2 and "Usage:" in result.output and "Commands:" in result.output


@pytest.mark.parametrize(
    "name,content,text",
    [("empty.jpg", b"", "empty"), ("notes.jpg", b"hello, this is text\n" * 10, "not an image")],
)
def test_bad_input_one_line_and_no_output(invoke, tmp_path, name, content, text):
    src = tmp_path / name
    src.write_bytes(content)
    result = invoke("denoise", src, "--sigma", "10", "-o", tmp_path / "out.jpg")
    assert_one_line_error(result, 1, name)
    assert text in result.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_truncated_jpeg(invoke, tmp_path):
    full = tmp_path / "full.jpg"
    Image.fromarray(smooth_rgb(64, 64)).save(full, quality=90)
    data = full.read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    result = invoke("denoise", bad, "--sigma", "10", "-o", tmp_path / "out.jpg")
    assert_one_line_error(result, 1, "cut.jpg")
    assert not (tmp_path / "out.jpg").exists()


def test_batch_goes_on_after_a_bad_file(invoke, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(smooth_rgb()).save(src / "a.png")
    Image.fromarray(smooth_rgb(seed=1)).save(src / "sub" / "b.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = invoke("denoise", src, "-r", "--sigma", "5", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["done"] == 2 and summary["failed"] == 1
    assert "broken.png" in summary["failures"][0]["input"]
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "sub" / "b.png").exists()
    assert not (tmp_path / "out" / "broken.png").exists()


def test_existing_output_needs_overwrite(invoke, photo):
    out = photo.parent / "out.png"
    assert invoke("denoise", photo, "--sigma", "5", "-o", out).exit_code == 0
    result = invoke("denoise", photo, "--sigma", "5", "-o", out)
    assert_one_line_error(result, 1, "--overwrite")
    assert invoke("denoise", photo, "--sigma", "5", "-o", out, "--overwrite").exit_code == 0


def test_input_never_overwritten_without_in_place(invoke, photo):
    before = photo.read_bytes()
    result = invoke("denoise", photo, "--sigma", "5", "-o", photo)
    assert_one_line_error(result, 2, "--in-place")
    assert photo.read_bytes() == before
    assert invoke("denoise", photo, "--sigma", "30", "--in-place").exit_code == 0
    assert photo.read_bytes() != before


def test_an_output_that_is_the_input_under_another_spelling_is_refused(invoke, photo, monkeypatch):
    # on macOS or Windows PHOTO.png is photo.png: --overwrite would have replaced the original
    real_samefile = os.path.samefile

    def ignoring_case(a, b):  # as APFS and NTFS compare names
        if os.fspath(a).casefold() == os.fspath(b).casefold():
            return True
        return real_samefile(a, b)

    monkeypatch.setattr(os.path, "samefile", ignoring_case)
    before = photo.read_bytes()
    result = invoke("denoise", photo, "--sigma", "5", "-o", photo.parent, "--name", "PHOTO.{ext}", "--overwrite")
    assert_one_line_error(result, 2, "output would overwrite the input; pass --in-place")
    assert photo.read_bytes() == before


def test_format_and_name_template(invoke, photo):
    out_dir = photo.parent / "o"
    result = invoke("denoise", photo, "--sigma", "5", "-o", out_dir, "--format", "jpeg", "--name", "{stem}-{op}.{ext}")
    assert result.exit_code == 0, result.output
    assert Image.open(out_dir / "photo-denoise.jpg").format == "JPEG"


@pytest.mark.parametrize("spelt, fmt, ext", [("jpg", "JPEG", "jpg"), ("TIF", "TIFF", "tif")])
def test_format_by_its_extension_name(invoke, photo, spelt, fmt, ext):
    result = invoke("denoise", photo, "--method", "nlm", "--sigma", "5", "-o", photo.parent / "o", "--format", spelt)
    assert result.exit_code == 0, result.output
    assert Image.open(photo.parent / "o" / f"photo.{ext}").format == fmt


def test_unknown_device_is_usage_error(invoke, photo):
    result = invoke("denoise", photo, "--sigma", "5", "--device", "tpu")
    assert result.exit_code == 2
    assert "tpu" in result.stderr


def test_missing_input(invoke, tmp_path):
    assert_one_line_error(invoke("denoise", tmp_path / "nope.jpg"), 2, "nope.jpg")


def test_info(invoke, photo):
    result = invoke("info", photo, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    assert row["format"] == "PNG" and row["width"] == 64 and row["height"] == 48


def test_info_of_a_folder_lists_its_images_as_a_verb_finds_them(invoke, photo, tmp_path):
    # it said "is a directory, not an image file", exit 1, where every image verb takes a folder
    import shutil

    (tmp_path / "in" / "sub").mkdir(parents=True)
    shutil.copy(photo, tmp_path / "in" / "a.png")
    shutil.copy(photo, tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    listed = {Path(row["path"]).name for row in json.loads(invoke("info", tmp_path / "in", "--json").stdout)}
    assert listed == {"a.png"}
    result = invoke("info", "-r", tmp_path / "in", "--json")
    assert result.exit_code == 0 and {Path(row["path"]).name for row in json.loads(result.stdout)} == {"a.png", "b.png"}
    both = invoke("info", tmp_path / "in", tmp_path / "in" / "a.png", "--json")  # named twice: listed once
    assert [Path(row["path"]).name for row in json.loads(both.stdout)] == ["a.png"]
    (tmp_path / "empty").mkdir()
    assert_one_line_error(invoke("info", tmp_path / "empty"), 2, "no images found")


def test_info_bad_file(invoke, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("nope")
    assert_one_line_error(invoke("info", bad), 1, "x.png")


def test_command_group_is_shared_by_plugins():
    import click

    from imgedit.verbs import command_group

    cli = click.Group("x")
    first = command_group(cli, "train", "Train.")
    assert command_group(cli, "train", "Other help.") is first
    cli.add_command(click.Command("plain"))
    with pytest.raises(TypeError):
        command_group(cli, "plain", "")


def test_command_line_spells_out_every_option_including_the_off_side_of_a_pair():
    import click
    from click.testing import CliRunner

    from imgedit.verbs import command_line

    seen = []

    @click.command("demo")
    @click.option("--skips/--no-skips", default=True)
    @click.option("--quiet", is_flag=True)
    @click.option("--data", multiple=True)
    @click.option("--steps", type=int, default=5)
    def demo(**_):
        seen.append(command_line(click.get_current_context()))

    assert CliRunner().invoke(demo, ["--no-skips", "--data", "a b", "--data", "c"]).exit_code == 0
    assert CliRunner().invoke(demo, ["--quiet"]).exit_code == 0
    assert seen == ["imgedit --no-skips --data 'a b' --data c --steps 5", "imgedit --skips --quiet --steps 5"]


def test_quiet_prints_no_warnings(invoke, tmp_path):
    Image.fromarray(smooth_rgb()).save(tmp_path / "a.png")
    hole = np.zeros((10, 12), np.uint8)
    hole[3:6, 4:8] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")  # not the image's size: a warning
    loud = invoke("inpaint", tmp_path / "a.png", "--mask", tmp_path / "hole.png", "--method", "ns", "-o", tmp_path / "b.png")
    assert loud.exit_code == 0 and "resizing the mask" in loud.stderr, loud.output
    quiet = invoke("inpaint", tmp_path / "a.png", "--mask", tmp_path / "hole.png", "--method", "ns",
                   "-o", tmp_path / "c.png", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == "" and (tmp_path / "c.png").exists()


def test_info_shows_the_good_files_and_one_line_per_bad_one(invoke, photo, tmp_path):
    empty, other = tmp_path / "empty.png", tmp_path / "b.png"
    empty.write_bytes(b"")
    Image.fromarray(smooth_rgb(seed=1)).save(other)
    result = invoke("info", photo, empty, other)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {empty}: is empty (0 bytes), not an image"]
    lines = result.stdout.splitlines()
    assert lines[0] == str(photo) and str(other) in lines and str(empty) not in result.stdout
    listed = invoke("info", "--json", photo, empty, other)
    assert listed.exit_code == 1 and listed.stderr == result.stderr
    rows = json.loads(listed.stdout)
    assert [row["path"] for row in rows] == [str(photo), str(empty), str(other)]
    assert rows[0]["width"] == 64 and "error" not in rows[0] and rows[2]["format"] == "PNG"
    assert rows[1] == {"path": str(empty), "error": f"{empty}: is empty (0 bytes), not an image"}


def test_closed_stdout_ends_quietly(photo):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before imgedit writes, as in `imgedit info a.png | head -0`
    try:
        proc = subprocess.run([sys.executable, "-m", "imgedit", "info", str(photo)], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == b""  # 128 + SIGPIPE, as cat or git log report


def test_a_broken_pipe_other_than_stdout_is_still_an_error(monkeypatch):
    from imgedit import cli

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as out, monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        assert not cli._stdout_gone()  # stdout's reader is there: some other pipe broke
        os.close(read_end)
        assert cli._stdout_gone()


@pytest.mark.skipif(not os.path.exists("/dev/full") or sys.platform == "win32", reason="needs /dev/full and os.close in the child")
@pytest.mark.parametrize("stderr", ["full", "closed"])
def test_a_batch_goes_on_when_stderr_cannot_be_written(tmp_path, stderr):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(smooth_rgb(seed=i)).save(src / f"{i}.png")
    full = open("/dev/full", "w")
    child = {"stderr": full} if stderr == "full" else {"preexec_fn": lambda: os.close(2)}
    done = subprocess.run([sys.executable, "-m", "imgedit", "denoise", "--method", "nlm", "--sigma", "5", str(src),
                           "-o", str(tmp_path / "out")], stdout=subprocess.DEVNULL, **child)
    full.close()
    assert done.returncode == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "1.png", "2.png"]
    assert (tmp_path / "out" / ".imgedit-journal.lock").read_bytes() == b""  # no stray stderr text landed in it


def test_a_typed_tile_says_which_stages_it_does_not_split(invoke, photo, tmp_path):
    both = invoke("run", "-p", "denoise method=nlm sigma=5 | inpaint method=telea", photo, "--mask-box", "2,2,8,8",
                  "--tile", "64", "-o", tmp_path / "both.png")
    assert both.exit_code == 0, both.output
    assert "note: inpaint works on the whole image: --tile 64 does not split it; it applies to denoise" in both.stderr
    alone = invoke("inpaint", photo, "--method", "telea", "--mask-box", "2,2,8,8", "--tile", "64", "-o", tmp_path / "a.png")
    assert "note: inpaint works on the whole image: --tile 64 does not split it and is ignored" in alone.stderr
    for quiet_or_default in (["--tile", "64", "-q"], []):
        result = invoke("inpaint", photo, "--method", "telea", "--mask-box", "2,2,8,8", *quiet_or_default,
                        "-o", tmp_path / "b.png", "--overwrite")
        assert result.exit_code == 0 and "note:" not in result.stderr


def test_ctrl_c_while_the_command_loads_is_one_line_and_exit_130(monkeypatch, capsys):
    # the console script's guard: a Ctrl-C while click and the plugins import
    # ends as a later one does, not as the traceback of the module loading
    import builtins

    from imgedit import entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "imgedit.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 130
    assert capsys.readouterr().err == "Interrupted.\n"


def test_the_console_script_guards_from_its_first_import():
    # the guard can only catch what runs after it: importing it (and the
    # imgedit package) must not load click, pluggy or the plugins first
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["imgedit"] == "imgedit.entry:main"
    loaded = subprocess.run([sys.executable, "-c", "import sys, imgedit.entry; "
                             "print(sorted(m for m in ('click', 'pluggy', 'imgedit.cli', 'torch') if m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def test_numeric_choices_complete_and_are_checked_by_the_option():
    # a plugin's Param("levels", int, 4, choices=(2, 4, 8)) completed nothing on Tab, and a
    # wrong value was refused by the stage, not as click words an option's bad value
    import click

    from imgedit.operations import Param
    from imgedit.options import _OptionType

    levels = _OptionType(Param("levels", int, 4, choices=(2, 4, 8)))
    assert [item.value for item in levels.shell_complete(None, None, "")] == ["2", "4", "8"]
    assert [item.value for item in levels.shell_complete(None, None, "4")] == ["4"]
    assert levels.convert("8", None, None) == 8
    with pytest.raises(click.BadParameter, match="'3' is not one of '2', '4', '8'"):
        levels.convert("3", None, None)
    strength = _OptionType(Param("strength", float, 0.5, choices=(0.5, 1.0)))
    assert strength.convert("1", None, None) == 1.0
    assert [item.value for item in strength.shell_complete(None, None, "")] == ["0.5", "1.0"]


def test_tab_completion_completes_verbs_options_and_choices():
    # the README's eval "$(_IMGEDIT_COMPLETE=bash_source imgedit)" line
    from conftest import run_imgedit

    def complete(words: str) -> list[str]:
        done = run_imgedit(env={"_IMGEDIT_COMPLETE": "bash_complete", "COMP_WORDS": words,
                                "COMP_CWORD": str(len(words.split(" ")) - 1)})
        assert done.returncode == 0, done.stderr
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("imgedit den") == ["denoise"]
    assert complete("imgedit denoise --me") == ["--method"]
    assert complete("imgedit denoise --method ") == ["vae", "nlm"]
    assert complete("imgedit style --style m") == ["mosaic"]  # a Param's suggest=
    assert complete("imgedit sample --model faces64-g") == ["faces64-gan"]  # the latent models
    assert complete("imgedit denoise --device c") == ["cpu", "cuda"]  # an image verb's
    assert complete("imgedit train gan --device ") == ["auto", "cpu", "cuda", "mps"]  # and the others'
    from imgedit.options import _suggested

    def broken():
        raise OSError("the weights folder is gone")

    assert _suggested(broken)(None, None, "") == []  # Tab must not break on it
    source = run_imgedit(env={"_IMGEDIT_COMPLETE": "bash_source"})
    assert source.returncode == 0 and "_imgedit_completion" in source.stdout


def test_info_says_a_file_it_may_not_read_in_one_line_and_goes_on(invoke, photo, tmp_path, monkeypatch):
    # a mode-000 file in a folder ended the listing: "unexpected PermissionError", exit 1
    import builtins
    import shutil

    import imgedit.imageio.describe as describe

    (tmp_path / "in").mkdir()
    for name in ("a.png", "locked.png", "z.png"):
        shutil.copy(photo, tmp_path / "in" / name)

    def refusing(path, *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(describe, "open", refusing, raising=False)
    result = invoke("info", tmp_path / "in", "--json")
    rows = {Path(row["path"]).name: row for row in json.loads(result.stdout)}
    assert result.exit_code == 1 and sorted(rows) == ["a.png", "locked.png", "z.png"]
    assert "permission denied" in rows["locked.png"]["error"].lower() and "unexpected" not in result.stderr


@pytest.mark.parametrize("optimize", [[], ["-OO"]])
def test_help_under_python_oo_says_why_it_is_blank(optimize):
    # -OO strips docstrings, and with them most commands' help: a blank page must say why
    done = subprocess.run([sys.executable, *optimize, "-m", "imgedit", "info", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Usage: imgedit info"), done.stderr
    assert ("strips the help texts of the commands that keep theirs in docstrings" in done.stderr) == bool(optimize)
    assert (done.stderr == "") == (not optimize)


def test_a_plugin_verb_has_torch_imported_with_ctrl_c_held_before_it_runs():
    # train style imported torch itself: a Ctrl-C in that second was lost (the run trained on) or broke numpy
    from imgedit.cli import _runs_plugin_verb, cli

    def runs(*args):
        return _runs_plugin_verb(cli, list(args), cli.commands[args[0]])

    assert runs("train", "style", "--data", "x") and runs("sample", "-n", "4")
    assert not runs("train", "style", "--help")  # help needs no torch
    assert not runs("info", "a.png") and not runs("models")  # the host's own
    assert not runs("denoise", "a.png")  # an operation's verb: the runner imports torch only for an image to compute
