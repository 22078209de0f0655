"""The plugin host holds plugins to their contract: a plugin that exits, misspells
a hook, declares impossible parameters or names a model nobody registers is
reported in `imgedit plugins`, and the rest of imgedit keeps working."""

import json
import logging
import os
import re
import subprocess
import sys
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib
from pathlib import Path

import pytest

from imgedit import registry
from imgedit.errors import UsageError, WeightsError
from imgedit.operations import Operation, Param
from imgedit.plugins import plugin_info

from conftest import fake_distribution, run_imgedit

ROOT = Path(__file__).resolve().parent.parent


def _identity_op(name="blur", method="box", **kwargs):
    return Operation(name=name, method=method, create=lambda ctx: (lambda image, mask: image), **kwargs)


def _rows(result_stdout):
    return {row["name"]: row for row in json.loads(result_stdout)}


# --- 1. a plugin that raises SystemExit ------------------------------------------------

@pytest.fixture
def exiting_plugin(tmp_path):
    """An installed plugin whose module exits at import; returns its PYTHONPATH."""
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "imgedit_needs_gpu", "raise SystemExit('needs a GPU')\n")
    return {"PYTHONPATH": str(site)}


def test_plugin_exiting_at_import_is_a_plugin_error_not_the_end_of_imgedit(exiting_plugin, photo, tmp_path):
    result = run_imgedit("plugins", "--json", env=exiting_plugin)
    assert result.returncode == 1 and "plugins has an error: imgedit_needs_gpu" in result.stderr  # a smoke test fails
    rows = _rows(result.stdout)
    assert rows["imgedit_needs_gpu"]["errors"] == ["SystemExit: needs a GPU"]
    assert rows["imgedit_classical"]["status"] == "ok"
    assert "inpaint" in run_imgedit("--help", env=exiting_plugin).stdout
    result = run_imgedit("inpaint", photo, "--mask-box", "5,5,10,10", "-o", tmp_path / "o.png", env=exiting_plugin)
    assert result.returncode == 0, result.stderr


def test_python_api_survives_a_plugin_exiting_at_import(exiting_plugin):
    code = ("import torch, imgedit; "
            "print(tuple(imgedit.run('denoise method=nlm sigma=5', torch.rand(1, 3, 8, 8)).shape))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, **exiting_plugin})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 3, 8, 8)"


def test_hook_raising_system_exit_is_isolated(test_plugin):
    def register_operations(register):
        raise SystemExit("no GPU here")

    test_plugin("exits_in_hook", register_operations=register_operations)
    reg = registry.get_registry()
    assert "inpaint" in reg.operation_names()
    assert plugin_info("exits_in_hook").errors == ["register_operations: SystemExit: no GPU here"]


# --- 2. the template does not pull in PyPI's unrelated "imgedit" -----------------------

def test_template_does_not_depend_on_the_unrelated_pypi_imgedit():
    project = tomllib.loads((ROOT / "examples" / "plugin-template" / "pyproject.toml").read_text())["project"]
    names = [re.match(r"[A-Za-z0-9._-]+", dep).group().lower() for dep in project.get("dependencies", [])]
    assert "imgedit" not in names
    guide = (ROOT / "docs" / "plugin-guide.md").read_text()
    assert "environment that has imgedit" in guide and "pip install -e ." in guide


def test_template_requires_the_python_imgedit_requires():
    # a lower floor would let pip install the template where imgedit itself cannot run
    template = tomllib.loads((ROOT / "examples" / "plugin-template" / "pyproject.toml").read_text())["project"]
    assert template["requires-python"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]


# --- 3. impossible Param declarations --------------------------------------------------

@pytest.mark.parametrize("params, wrong", [
    ((Param("amount", float, 5.0, minimum=0, maximum=1),), "parameter 'amount': default 5.0 is outside [0, 1]"),
    ((Param("amount", float, 0.5, minimum=1, maximum=0),), "parameter 'amount': minimum 1 is above maximum 0"),
    ((Param("mode", str, "fast", choices=("slow", "exact")),), "parameter 'mode': default 'fast' is not one of"),
    ((Param("size", int, 3), Param("size", int, 4)), "parameter 'size' is declared twice"),
    ((Param("points", list, []),), "parameter 'points': type list is not one of int, float, str, bool"),
    ((Param("count", int, 2.5),), "parameter 'count': default 2.5 is not int"),
    # a default as text reached create() as written: "false" is true
    ((Param("flip", bool, "false"),), "parameter 'flip': default 'false' is not bool"),
    ((Param("count", int, "3"),), "parameter 'count': default '3' is not int"),
    ((Param("count", int, True),), "parameter 'count': default True is not int"),
    # choices of another type: every value refused ("must be one of 1, 2; got 1")
    ((Param("count", int, None, choices=("1", "2")),), "parameter 'count': choice '1' is not int"),
    ((Param("mode", str, "a", choices=("a", 2)),), "parameter 'mode': choice 2 is not str"),
])
def test_impossible_param_declaration_leaves_the_operation_out(test_plugin, params, wrong):
    test_plugin("bad_params", register_operations=lambda register: register(_identity_op(params=params)))
    reg = registry.get_registry()
    problems = reg.problems["bad_params"]
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith("operation 'blur.box': ") and wrong in problems[0]
    assert "blur" not in reg.operation_names()


def test_a_tileable_operation_that_resizes_is_left_out_when_it_registers(test_plugin, invoke):
    from imgedit.operations import Capabilities

    sheet = _identity_op(capabilities=Capabilities(tileable=True, tile_overlap=4), resizes=lambda params: True)
    test_plugin("tiles_and_resizes", register_operations=lambda register: register(sheet))
    reg = registry.get_registry()
    assert reg.problems["tiles_and_resizes"] == [
        "operation 'blur.box' is tileable but declares resizes (its output may not be the input's size): "
        "tiles could not be put back; set tileable=False"]
    assert "blur" not in reg.operation_names()
    rows = _rows(invoke("plugins", "--json").stdout)
    assert rows["tiles_and_resizes"]["status"] == "error" and "is tileable but declares resizes" in rows["tiles_and_resizes"]["errors"][0]


def test_defaults_meaning_not_given_are_accepted(test_plugin):
    params = (
        Param("sigma", float, "auto", allow_auto=True, minimum=0, maximum=255),
        Param("seed", int, None),
        Param("weights", str, ""),
        Param("style", str, "", choices=("candy", "mosaic")),
        Param("flip", bool, False),
        Param("strength", float, 1, minimum=0, maximum=1),
    )
    test_plugin("fine_params", register_operations=lambda register: register(_identity_op(params=params)))
    reg = registry.get_registry()
    assert "fine_params" not in reg.problems and "blur" in reg.operation_names()


def test_builtin_plugins_register_without_problems(invoke):
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert {"imgedit_classical", "imgedit_vae", "imgedit_gan", "imgedit_interp", "imgedit_style"} <= set(rows)
    assert {name: row["errors"] for name, row in rows.items() if row["errors"]} == {}


# --- 4. a misspelled hook ---------------------------------------------------------------

def test_misspelled_hook_is_reported_with_the_nearest_hook(test_plugin, invoke):
    test_plugin("typo_plugin", register_operation=lambda register: register(_identity_op()))
    rows = _rows(invoke("plugins", "--json").stdout)
    assert rows["typo_plugin"]["status"] == "error"
    assert rows["typo_plugin"]["errors"] == [
        "hook 'register_operation' is not an imgedit hook and is never called (did you mean register_operations?)"]
    assert rows["imgedit_classical"]["status"] == "ok"


# --- 5. a model no plugin registers -----------------------------------------------------

def test_operation_naming_an_unregistered_model_is_a_problem(test_plugin):
    ghost = _identity_op(weights=("no-such-model",))
    test_plugin("ghost_weights", register_operations=lambda register: register(ghost))
    reg = registry.get_registry()
    assert reg.problems["ghost_weights"] == [
        "operation 'blur.box' uses model 'no-such-model', which is not registered by any plugin "
        "(register it with register_models)"]
    assert reg.get("blur").key == "blur.box"  # still usable


# --- 6. imgedit's own errors from a check are the user's, not a plugin bug --------------

def test_imgedit_error_from_a_check_keeps_its_type_message_and_exit_code(test_plugin, invoke, photo):
    from imgedit.pipeline import Pipeline

    def check(params):
        raise WeightsError("blur: no weights for 'box' yet; train them first")

    test_plugin("needs_weights", register_operations=lambda register: register(_identity_op(check=check)))
    with pytest.raises(WeightsError, match=r"^stage 1 \(blur\): no weights for 'box' yet; train them first$"):
        Pipeline.parse("blur")
    result = invoke("run", "-p", "blur", photo, "-o", photo.parent / "out.png")
    assert result.exit_code == WeightsError.exit_code == 1
    assert "Error: stage 1 (blur): no weights for 'box' yet" in result.output and "check of" not in result.output


def test_usage_error_from_a_check_is_still_a_usage_error(test_plugin):
    from imgedit.pipeline import Pipeline

    def check(params):
        raise UsageError("blur: unknown kernel")

    test_plugin("picky", register_operations=lambda register: register(_identity_op(check=check)))
    with pytest.raises(UsageError, match=r"^stage 1 \(blur\): unknown kernel$"):
        Pipeline.parse("blur")


def test_missing_style_weights_are_reported_as_missing_weights(tmp_path, photo):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    env = {"IMGEDIT_WEIGHTS": str(empty)}
    result = run_imgedit("style", photo, "--style", "mosaic", "-o", tmp_path / "o.png", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: stage 1 (style): style 'mosaic' has no weights yet")
    assert "plugin imgedit_style" not in result.stderr


# --- 7. environment switches and one-line messages --------------------------------------

@pytest.mark.parametrize("off", ["0", "false", "no", "off", ""])
def test_debug_switched_off_shows_no_traceback(off, photo):
    result = run_imgedit("run", "-p", "nosuchop", photo, env={"IMGEDIT_DEBUG": off})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unknown operation 'nosuchop'" in result.stderr


def test_debug_switched_on_shows_a_traceback(photo):
    result = run_imgedit("run", "-p", "nosuchop", photo, env={"IMGEDIT_DEBUG": "1"})
    assert "Traceback" in result.stderr


@pytest.mark.parametrize("value, level", [
    ("0", logging.WARNING), ("false", logging.WARNING), ("Off", logging.WARNING), ("", logging.WARNING),
    ("1", logging.INFO), ("yes", logging.INFO),
])
def test_verbose_switched_off_logs_only_warnings(monkeypatch, value, level):
    from imgedit.cli import _setup_logging

    log = logging.getLogger("imgedit")
    before = log.level
    monkeypatch.setenv("IMGEDIT_VERBOSE", value)
    try:
        _setup_logging(debug=False)
        assert log.level == level
    finally:
        log.setLevel(before)


def test_allow_list_typo_warning_reads_like_other_warnings():
    result = run_imgedit("plugins", env={"IMGEDIT_LOAD_PLUGINS": "nosuch,imgedit_classical"})
    assert result.stderr.startswith("Warning: IMGEDIT_LOAD_PLUGINS: no plugin named nosuch is installed")


def test_empty_allow_list_says_plugins_were_left_out():
    result = run_imgedit("plugins", env={"IMGEDIT_LOAD_PLUGINS": ""})
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("5 installed plugins left out by IMGEDIT_LOAD_PLUGINS: imgedit_classical,")
    assert len(result.stdout.splitlines()) == 1


def test_hook_with_a_bad_signature_is_one_line(tmp_path):
    fake_distribution(tmp_path, "imgedit_extra_arg", """
        from imgedit import hookimpl

        @hookimpl
        def register_operations(register, extra):
            pass
    """)
    result = run_imgedit("plugins", env={"PYTHONPATH": str(tmp_path)})
    errors = [line for line in result.stdout.splitlines() if line.startswith("  error:")]
    assert len(errors) == 1 and "PluginValidationError" in errors[0] and "'extra'" in errors[0]
    # every line is a plugin, one of its fields or one of its errors: nothing runs over
    assert all(line.startswith(("imgedit_", "  ")) for line in result.stdout.splitlines())


def test_debug_logging_of_a_failed_image_reaches_the_plugins_own_frame(test_plugin, photo, tmp_path, caplog):
    # the pipeline wraps a plugin's exception in a PluginError; --debug must still show where it was raised
    import traceback

    import imgedit
    from imgedit.errors import BatchError

    def create(ctx):
        def apply_that_explodes(image, mask):
            raise RuntimeError("exploded")
        return apply_that_explodes

    test_plugin("exploding", register_operations=lambda register: register(Operation("explode", "now", create)))
    with caplog.at_level(logging.DEBUG, logger="imgedit"), pytest.raises(BatchError):
        imgedit.run("explode", photo, tmp_path / "out.png")
    logged = "".join("".join(traceback.format_exception(*r.exc_info)) for r in caplog.records if r.exc_info)
    assert "apply_that_explodes" in logged and "RuntimeError: exploded" in logged
