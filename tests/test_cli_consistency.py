"""The verbs behave alike: file names escaped on the terminal, one exit code
and message for a missing input, option errors that name the option, plugin
parameters checked by click as every other option is, progress and "wrote"
lines on stderr, the same short flags, a help line for every option, whole
summaries in ``--help``, and -q where an eval verb shows progress."""

import json
import re

import click
import pytest
from PIL import Image

from imgedit.errors import UsageError
from imgedit.operations import Operation, Param

from conftest import save_tiny_gan, save_tiny_vae, smooth_rgb


def _error_line(result):
    """The one error line of a refused command (click's usage lines aside)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output, result.output
    return lines[0]


def _commands(group, path=()):
    """Every command under ``group``, as (words, command)."""
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def _option(command, name):
    return next(p for p in command.params if p.name == name)


def _verb(*words):
    from imgedit.cli import cli

    command = cli
    for word in words:
        command = command.commands[word]
    return command


def _help(invoke, *words):
    result = invoke(*words, "--help")
    assert result.exit_code == 0, result.output
    return result.output


# --- 1. info escapes control characters in file names ----------------------------------------


def test_info_escapes_control_characters_in_names_as_every_verb_does(invoke, photo, tmp_path):
    escape, newline = tmp_path / "evil\x1b[31mRED.png", tmp_path / "two\nlines.png"
    for name in (escape, newline):
        name.write_bytes(photo.read_bytes())
    result = invoke("info", escape, newline, color=True)  # color: click would strip the escape off a pipe only
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == str(escape).replace("\x1b", "\\x1b")
    assert str(newline).replace("\n", "\\n") in lines  # not a line of its own
    listed = invoke("info", "--json", escape)
    assert json.loads(listed.stdout)[0]["path"] == str(escape)  # JSON escapes it already, as \\u001b


def test_info_escapes_a_name_in_its_error_line(invoke, tmp_path):
    bad = tmp_path / "bad\x1b[2Jname.png"
    bad.write_text("not an image")
    result = invoke("info", bad, color=True)
    assert result.exit_code == 1
    assert "\x1b" not in result.stderr and "bad\\x1b[2Jname.png" in result.stderr


# --- 2. a missing input: exit 2 and the same message everywhere --------------------------------


def test_info_says_of_a_missing_input_what_every_verb_says_with_exit_2(invoke, photo, tmp_path):
    missing = tmp_path / "missing.png"
    denoise = invoke("denoise", missing)
    assert denoise.exit_code == 2
    said = _error_line(denoise)
    assert said == f"Error: no such file or folder: {missing}"
    result = invoke("info", photo, missing)
    assert result.exit_code == 2 and result.stderr.splitlines() == [said]
    assert result.stdout.splitlines()[0] == str(photo)  # the others are still shown
    listed = invoke("info", "--json", missing)
    assert listed.exit_code == 2 and f'"error": "no such file or folder: {missing}"' in listed.stdout


def test_info_takes_a_quoted_glob_as_the_image_verbs_do(invoke, photo, tmp_path):
    result = invoke("info", tmp_path / "ph*.png")
    assert result.exit_code == 0 and result.stdout.splitlines()[0] == str(photo), result.output
    nothing = invoke("info", tmp_path / "none*.png")
    assert nothing.exit_code == 2 and "no files match" in nothing.stderr


def test_info_still_exits_1_for_a_file_it_cannot_read(invoke, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("nope")
    assert invoke("info", bad).exit_code == 1
    assert invoke("info", bad, tmp_path / "gone.png").exit_code == 2  # a wrong name is the usage error


def test_interpolate_says_of_a_missing_input_what_every_verb_says_with_exit_2(invoke, photo, tmp_path):
    missing = tmp_path / "missing.png"
    result = invoke("interpolate", missing, photo, "-o", tmp_path / "x.gif")
    assert result.exit_code == 2, result.output
    assert _error_line(result) == f"Error: no such file or folder: {missing}"
    assert result.output.strip().splitlines() == [_error_line(result)]  # one line, before any model loads
    assert not (tmp_path / "x.gif").exists()


# --- 3. errors of options parsed in the command name the option as click does ----------------------


@pytest.mark.parametrize("args, hint", [
    (["denoise", "{photo}", "--tile", "abc"], "'--tile'"),
    (["denoise", "{photo}", "--tile", "-3"], "'--tile'"),
    (["eval", "denoise", "--data", "{photo}", "--sigma", "abc"], "'--sigma'"),
    (["eval", "denoise", "--data", "{photo}", "--sigma", "300"], "'--sigma'"),
    (["train", "inpaint", "--data", "{photo}", "--masks", "holes"], "'--masks'"),
    (["eval", "inpaint", "--data", "{photo}", "--masks", "holes"], "'--masks'"),
    (["train", "denoise", "--data", "{photo}", "--widths", "1,2"], "'--widths'"),
    (["train", "inpaint", "--data", "{photo}", "--decoder-blocks", "1,x"], "'--decoder-blocks'"),
])
def test_a_bad_value_names_its_option_as_click_does(invoke, photo, tmp_path, args, hint):
    args = [str(photo) if a == "{photo}" else a for a in args]
    result = invoke(*args, *(["--out", tmp_path / "run"] if args[0] == "train" else []))
    assert result.exit_code == 2, result.output
    assert _error_line(result).startswith(f"Error: Invalid value for {hint}: "), result.output


# --- 4. plugin parameters are checked by click, with their range in the help ----------------------


@pytest.mark.parametrize("args, said", [
    (["inpaint", "{photo}", "--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295."),
    (["inpaint", "{photo}", "--seed", "4294967296"], "Invalid value for '--seed': 4294967296 is not in the range"),
    (["inpaint", "{photo}", "--ensemble", "9"], "Invalid value for '--ensemble': 9 is not in the range 1<=x<=8."),
    (["inpaint", "{photo}", "--samples", "0"], "Invalid value for '--samples': 0 is not in the range 1<=x<=16."),
    (["inpaint", "{photo}", "--radius", "x"], "Invalid value for '--radius': 'x' is not a valid integer range."),
    (["style", "{photo}", "--scale", "x"], "Invalid value for '--scale': 'x' is not a valid integer or 'auto'."),
    (["denoise", "{photo}", "--ensemble", "9"], "Invalid value for '--ensemble': 9 is not in the range 1<=x<=8."),
    (["denoise", "{photo}", "--sigma", "300"], "Invalid value for '--sigma': 300.0 is not in the range 0<=x<=255."),
    (["denoise", "{photo}", "--sigma", "loud"], "Invalid value for '--sigma': 'loud' is not a valid float or 'auto'."),
    (["denoise", "{photo}", "--sigma", "nan"], "Invalid value for '--sigma': 'nan' is not a finite number"),
    (["style", "{photo}", "--strength", "2"], "Invalid value for '--strength': 2.0 is not in the range 0<=x<=1."),
    (["style", "{photo}", "--scale", "4"], "Invalid value for '--scale': 4 is not in the range 16<=x<=16384."),
    (["style", "{photo}", "--loss-net", "vgg"], "Invalid value for '--loss-net': 'vgg' is not one of 'random', 'vgg16', 'vgg19'."),
])
def test_a_plugin_parameter_out_of_range_is_refused_as_click_refuses_any_option(invoke, photo, tmp_path, args, said):
    args = [str(photo) if a == "{photo}" else a for a in args]
    result = invoke(*args, "-o", tmp_path / "out.png")
    assert result.exit_code == 2, result.output
    assert _error_line(result).startswith(f"Error: {said}"), result.output
    assert not (tmp_path / "out.png").exists()


def test_a_plugin_parameter_in_range_or_auto_still_runs(invoke, photo, tmp_path):
    for sigma in ("auto", "AUTO", "10"):
        result = invoke("denoise", photo, "--method", "nlm", "--sigma", sigma, "-o", tmp_path / "o.png", "--overwrite")
        assert result.exit_code == 0, result.output


def test_a_pipeline_stage_keeps_its_own_check(invoke, photo):
    result = invoke("run", "-p", "inpaint seed=-1", photo)
    assert result.exit_code == 2
    assert "stage 1 (inpaint): parameter 'seed' must be in [0, 4294967295], got -1" in _error_line(result)


def test_the_help_shows_a_plugin_parameter_s_range_and_default(invoke):
    text = " ".join(_help(invoke, "inpaint").split())
    assert "--seed INTEGER (vae) Draw a random plausible fill" in text  # metavar (as click names its own), methods
    assert "(default: the deterministic fill; with samples, the first of the seeds) [0<=x<=4294967295]" in text
    assert "--samples INTEGER (vae) Number of different fills, written side by side: the fills of seeds S" in text
    assert "so each can be made again alone [default: 1; 1<=x<=16]" in text
    assert "--radius INTEGER (ns, telea) Inpainting neighbourhood radius in pixels [default: 5; 1<=x<=50]" in text
    text = " ".join(_help(invoke, "denoise").split())
    assert "[default: auto; 0<=x<=255]" in text and "--sigma FLOAT|auto" in text


def test_an_option_takes_what_any_method_of_the_verb_takes(test_plugin, cli_runner, photo):
    from imgedit.verbs import add_operation_verb

    seen = []

    def create(ctx, **params):
        seen.append(params)
        return lambda image, mask: image

    def op(method, *params):
        return Operation("zoomy", method, create, params)

    test_plugin("zoomy", register_operations=lambda register: [
        register(op("narrow", Param("radius", int, 1, minimum=1, maximum=5), Param("level", int, 1))),
        register(op("wide", Param("radius", int, 1, minimum=1, maximum=10), Param("level", float, 1.0)))])
    cli = click.Group("imgedit")
    add_operation_verb(cli, "zoomy", "Zoom test.")

    def run(*args):
        return cli_runner.invoke(cli, ["zoomy", str(photo), "-o", str(photo.parent / "o.png"), "--overwrite", *args])

    assert run("--method", "wide", "--radius", "8").exit_code == 0
    assert seen[-1]["radius"] == 8
    refused = run("--method", "wide", "--radius", "11")
    assert refused.exit_code == 2 and "Invalid value for '--radius': 11 is not in the range 1<=x<=10." in refused.output
    narrow = run("--method", "narrow", "--radius", "8")  # in the option's range, not in this method's
    assert isinstance(narrow.exception, UsageError)  # raised to imgedit's group, which says it (exit 2)
    assert "stage 1 (zoomy): parameter 'radius' must be in [1, 5], got 8" in str(narrow.exception)
    assert run("--method", "wide", "--level", "2.5").exit_code == 0  # int for one method, float for the other
    assert seen[-1]["level"] == 2.5


# --- 5. "wrote ..." goes to stderr: stdout carries only results ------------------------------------


def test_sample_says_what_it_wrote_on_stderr(invoke, tmp_path):
    gan = save_tiny_gan(tmp_path / "tiny-gan.safetensors")
    result = invoke("sample", "--model", gan.weights, "-n", 2, "-o", tmp_path / "out\x1b[2J", color=True)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote 2 samples of" in result.stderr
    assert "\x1b" not in result.stderr and "out\\x1b[2J" in result.stderr  # the name escaped, as every verb does


def test_interpolate_says_what_it_wrote_on_stderr(invoke, tmp_path):
    vae = save_tiny_vae(tmp_path / "tiny-vae.safetensors")
    result = invoke("interpolate", "--model", vae.weights, "--seeds", "1,2", "--frames", 3, "--ease", "linear",
                    "-o", tmp_path / "walk.gif")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote 3 frames" in result.stderr


def test_sample_and_interpolate_take_threads_as_the_image_verbs_do(invoke, tmp_path, monkeypatch):
    # a user sharing a machine limits every verb's CPU use the same way
    import imgedit.devices

    asked = []
    monkeypatch.setattr(imgedit.devices, "set_threads", asked.append)
    gan, vae = save_tiny_gan(tmp_path / "tiny-gan.safetensors"), save_tiny_vae(tmp_path / "tiny-vae.safetensors")
    sampled = invoke("sample", "--model", gan.weights, "-n", 1, "-o", tmp_path / "out", "--threads", 3)
    walked = invoke("interpolate", "--model", vae.weights, "--seeds", "1,2", "--frames", 3, "-o", tmp_path / "w.gif",
                    "--threads", 2)
    assert sampled.exit_code == 0 and walked.exit_code == 0, sampled.output + walked.output
    assert asked == [3, 2]


# --- 6. the same short flags ----------------------------------------------------------------------


def test_every_train_verb_takes_o_for_its_out_folder():
    train = _verb("train")
    assert train.commands
    for name, command in train.commands.items():
        assert _option(command, "out_dir").opts == ["-o", "--out"], name


def test_eval_gan_takes_n_as_sample_does():
    assert set(_option(_verb("eval", "gan"), "count").opts) == set(_option(_verb("sample"), "count").opts) == {"-n", "--n"}


def test_train_o_is_spelled_out_as_out_in_the_recorded_command_line():
    from click.testing import CliRunner

    from imgedit.verbs import apply_options, command_line, training_options

    seen = []

    @click.command("demo")
    @apply_options(training_options("Data.", 5, "runs/x", 2, 1e-3))
    def demo(**_):
        seen.append(command_line(click.get_current_context()))

    assert CliRunner().invoke(demo, ["--data", "d", "-o", "runs/y"]).exit_code == 0
    assert "--out runs/y" in seen[0]


# --- 7. every option has a help line ----------------------------------------------------------------


def test_every_option_of_every_command_has_a_help_line():
    from imgedit.cli import cli

    missing = [f"{' '.join(words)} {'/'.join(p.opts)}" for words, command in _commands(cli)
               for p in command.params if isinstance(p, click.Option) and not p.help]
    assert missing == []


# --- 8. whole summaries in --help, and examples in denoise/inpaint --help ----------------------------


@pytest.mark.parametrize("group", [(), ("train",), ("eval",)])
def test_help_lists_whole_summaries(invoke, group):
    text = _help(invoke, *group)
    listing = text.split("Commands:")[1]
    assert "..." not in listing
    for name, command in _verb(*group).commands.items():
        summary = "".join(command.get_short_help_str(10**6).split())
        assert summary in "".join(listing.split()), name  # whole, however it is wrapped


@pytest.mark.parametrize("name", ["denoise", "inpaint", "interpolate", "models", "plugins", "sample"])
def test_a_verb_s_summary_fits_its_line(invoke, name):
    rows = _help(invoke).split("Commands:")[1].splitlines()
    row = next(i for i, line in enumerate(rows) if line.split()[:1] == [name])
    following = rows[row + 1] if row + 1 < len(rows) else ""
    assert following.startswith("  ") and not following.startswith("    "), rows  # the next row is a command


@pytest.mark.parametrize("width", [60, 80, 120])
def test_help_never_breaks_a_line_inside_a_hyphenated_word(invoke, width):
    """--style-image wrapped as "--style-" and "image" cannot be copied, and a screen reader reads two words.
    (Narrower, a word longer than the help column is cut wherever it must be.)"""
    from imgedit.cli import cli

    for words, _ in [((), cli), *_commands(cli)]:
        result = invoke(*words, "--help", terminal_width=width)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        broken = [(a.strip(), b.strip()) for a, b in zip(lines, lines[1:]) if re.search(r"[A-Za-z]-$", a)]
        assert broken == [], (words, broken)
        assert "\u2011" not in result.output  # the held hyphens are written back as typed
        if width == 80:  # the examples too, which are laid out by hand
            assert [line for line in lines if len(line) > width] == [], words


@pytest.mark.parametrize("verb", ["denoise", "inpaint"])
def test_denoise_and_inpaint_help_have_a_description_and_examples(invoke, verb):
    text = _help(invoke, verb)
    assert "Examples:" in text
    examples = [line.strip() for line in text.split("Examples:")[1].split("Options:")[0].splitlines() if line.strip()]
    assert len(examples) >= 2 and all(line.startswith(f"imgedit {verb} ") for line in examples)


# --- 9. denoise --sigma's help says which method its 0-75 applies to -----------------------------------


def test_sigma_help_names_the_method_that_clamps_at_75(invoke):
    text = " ".join(_help(invoke, "denoise").split())
    assert "method vae works on 0-75: more acts as 75, with a warning" in text


# --- 10. -q on the eval verbs that show progress --------------------------------------------------------


@pytest.mark.parametrize("verb, args, progress", [
    ("denoise", ["--sigma", "25", "--ensemble", "1"], "eval denoise: 1/1 images"),
    ("inpaint", ["--masks", "thin", "--no-baselines", "--ensemble", "1"], "eval inpaint: 1/1 images"),
])
def test_eval_q_hides_the_progress_and_keeps_the_figures(invoke, tmp_path, monkeypatch, verb, args, progress):
    from imgedit.verbs import StageProgress

    monkeypatch.setattr(StageProgress, "interval", 0.0)  # a line per image instead of one per 10 s
    Image.fromarray(smooth_rgb(32, 32)).save(tmp_path / "a.png")
    loud = invoke("eval", verb, "--data", tmp_path / "a.png", *args)
    assert loud.exit_code == 0 and progress in loud.stderr, loud.output
    quiet = invoke("eval", verb, "--data", tmp_path / "a.png", *args, "-q")
    assert quiet.exit_code == 0 and progress not in quiet.stderr, quiet.output
    assert "vae" in quiet.stdout  # the figures
