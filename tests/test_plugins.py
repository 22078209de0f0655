"""Plugin discovery, isolation, conflicts and the third-party template."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imgedit import hookspecs, registry
from imgedit.errors import PluginError, UsageError
from imgedit.operations import Operation

from conftest import fake_distribution, run_imgedit

ROOT = Path(__file__).resolve().parent.parent


def _identity_op(name="blur", method="box", **kwargs):
    return Operation(name=name, method=method, create=lambda ctx: (lambda image, mask: image), **kwargs)


def test_builtin_plugin_listed_with_operations(invoke):
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    classical = rows["imgedit_classical"]
    assert classical["status"] == "ok"
    assert {"inpaint.telea", "inpaint.ns", "denoise.nlm"} <= set(classical["operations"])
    assert {"register_commands", "register_operations"} <= set(classical["hooks"])
    assert {"inpaint", "denoise"} <= set(classical["commands"])
    assert classical["version"]


def test_plugins_text_output(invoke):
    result = invoke("plugins")
    assert result.exit_code == 0
    assert "imgedit_classical" in result.output and "[ok]" in result.output


def test_plugin_raising_in_hook_is_isolated(invoke, test_plugin, photo):
    def register_operations(register):
        raise RuntimeError("boom in hook")

    test_plugin("broken_hooks", register_operations=register_operations)
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert rows["broken_hooks"]["status"] == "error"
    assert "boom in hook" in rows["broken_hooks"]["errors"][0]
    assert rows["imgedit_classical"]["status"] == "ok"
    # the other verbs still work
    result = invoke("inpaint", photo, "--mask-box", "5,5,10,10", "-o", photo.parent / "out.png")
    assert result.exit_code == 0, result.output


def test_conflicting_operations_keep_the_first_and_flag_the_second(invoke, test_plugin):
    test_plugin("first_blur", register_operations=lambda register: register(_identity_op()))
    test_plugin("second_blur", register_operations=lambda register: register(_identity_op()))
    assert registry.get_registry().get("blur").plugin == "first_blur"
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert rows["first_blur"]["status"] == "ok" and rows["first_blur"]["operations"] == ["blur.box"]
    assert rows["second_blur"]["status"] == "error" and rows["second_blur"]["operations"] == []
    assert rows["second_blur"]["errors"] == [
        "operation 'blur.box' is already registered by first_blur; kept theirs (give yours another method name)"]


def test_default_method_is_highest_priority(test_plugin):
    test_plugin("blurs", register_operations=lambda register: [
        register(_identity_op(method="low", priority=0)),
        register(_identity_op(method="high", priority=5)),
    ])
    reg = registry.get_registry()
    assert reg.get("blur").method == "high"
    assert [op.method for op in reg.methods("blur")] == ["high", "low"]
    assert reg.get("blur", "low").plugin == "blurs"


def test_every_hook_is_documented():
    guide = (ROOT / "docs" / "plugin-guide.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert hooks
    for name in hooks:
        assert f"### {name}(" in guide, f"{name} is not documented in docs/plugin-guide.md"


def test_allow_list_loads_only_named_plugins():
    result = run_imgedit("plugins", "--json", env={"IMGEDIT_LOAD_PLUGINS": ""})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    result = run_imgedit("inpaint", "--help", env={"IMGEDIT_LOAD_PLUGINS": ""})
    assert result.returncode == 2 and "No such command 'inpaint'" in result.stderr
    assert "IMGEDIT_LOAD_PLUGINS='' left out imgedit_classical, imgedit_gan" in result.stderr  # says why
    result = run_imgedit("inpaint", "--help", env={"IMGEDIT_LOAD_PLUGINS": "imgedit_classical"})
    assert result.returncode == 0 and "--mask-box" in result.stdout


@pytest.mark.parametrize("plugin, methods", [("imgedit_classical", "ns|telea"), ("imgedit_vae", "vae")])
def test_a_shared_verb_is_the_same_whichever_plugin_offers_it(plugin, methods):
    # Both plugins fill holes and remove noise: either alone gives both verbs, with the host's help.
    for verb in ("inpaint", "denoise"):
        result = run_imgedit(verb, "--help", env={"IMGEDIT_LOAD_PLUGINS": plugin})
        assert result.returncode == 0, result.stderr
        assert "Examples:" in result.stdout and f"imgedit {verb} photo" in result.stdout
    result = run_imgedit("inpaint", "--help", env={"IMGEDIT_LOAD_PLUGINS": plugin})
    assert f"--method [{methods}]" in result.stdout


def test_help_does_not_import_torch():
    code = "import sys; from imgedit.cli import cli; cli(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")


def test_plugin_failing_to_import_is_reported(tmp_path, photo):
    fake_distribution(tmp_path, "imgedit_broken", "raise ImportError('missing dependency xyz')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_imgedit("plugins", "--json", env=env)
    assert result.returncode == 1 and result.stderr == "Error: 1 of 6 plugins has an error: imgedit_broken\n"
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["imgedit_broken"]["status"] == "error"
    assert "missing dependency xyz" in rows["imgedit_broken"]["errors"][0]
    assert rows["imgedit_broken"]["version"] == "0.3"
    result = run_imgedit("inpaint", photo, "--mask-box", "5,5,10,10", "-o", tmp_path / "o.png", env=env)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def installed_template(tmp_path_factory):
    """pip-install examples/plugin-template into a private folder."""
    target = tmp_path_factory.mktemp("site")
    # pip builds in the source tree (build/, *.egg-info): a copy, so that the checkout stays clean
    # and a stale build/lib there cannot stand in for the template's sources
    source = tmp_path_factory.mktemp("template") / "plugin-template"
    shutil.copytree(ROOT / "examples" / "plugin-template", source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", ".pytest_cache"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--target", str(target), str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return target


def test_template_plugin_installs_and_runs(installed_template, photo, tmp_path):
    env = {"PYTHONPATH": str(installed_template)}
    listing = {row["name"]: row for row in json.loads(run_imgedit("plugins", "--json", env=env).stdout)}
    assert listing["imgedit_invert"]["status"] == "ok"
    assert listing["imgedit_invert"]["operations"] == ["invert.basic"]
    assert "invert" in run_imgedit("--help", env=env).stdout
    out = tmp_path / "inverted.png"
    result = run_imgedit("invert", photo, "-o", out, env=env)
    assert result.returncode == 0, result.stderr
    import numpy as np
    from PIL import Image

    original = np.asarray(Image.open(photo)).astype(int)
    inverted = np.asarray(Image.open(out)).astype(int)
    assert np.abs(inverted - (255 - original)).max() <= 1


def test_plugins_lists_the_subcommands_each_plugin_adds_to_shared_groups(invoke):
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    shared = {name: [c for c in row["commands"] if c.startswith(("train", "eval"))] for name, row in rows.items()}
    assert shared["imgedit_vae"] == ["eval denoise", "eval inpaint", "train denoise", "train inpaint", "train sigma"]
    assert shared["imgedit_gan"] == ["eval gan", "train gan"]
    assert shared["imgedit_interp"] == ["eval interp", "train interp-vae"]
    assert shared["imgedit_style"] == ["eval style", "train style"]
    assert {"sample"} <= set(rows["imgedit_gan"]["commands"]) and {"style"} <= set(rows["imgedit_style"]["commands"])
    # denoise and inpaint are made once, by the first plugin offering the operation: no verb is claimed twice
    claimed = [c for row in rows.values() for c in row["commands"]]
    assert len(claimed) == len(set(claimed)) and {"denoise", "inpaint"} <= set(claimed)


def test_allow_list_naming_no_installed_plugin_warns():
    result = run_imgedit("plugins", env={"IMGEDIT_LOAD_PLUGINS": "nosuch,imgedit_classical"})
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "nosuch" in line]
    assert len(warning) == 1 and "no plugin named nosuch is installed" in warning[0]
    assert "imgedit_classical" in warning[0] and "imgedit_vae" in warning[0]  # the known names
    assert "imgedit_classical" in result.stdout
    assert run_imgedit("plugins", env={"IMGEDIT_LOAD_PLUGINS": ""}).stderr == ""  # none asked for: nothing to warn of


def test_a_plugin_cannot_replace_a_verb_it_did_not_make(test_plugin):
    import click

    from imgedit.plugins import plugin_info
    from imgedit.verb_owners import register_commands

    cli = click.Group("imgedit")

    @cli.command("info")
    def host_info():
        """The host's verb."""

    def register_commands_hook(cli):
        @cli.command("info")
        def impostor():
            """Not the host's."""

        @cli.command("fresh")
        def fresh():
            """The plugin's own."""

    def no_arguments():  # a hook may take fewer arguments than its spec
        pass

    test_plugin("verb_thief", register_commands=register_commands_hook)
    test_plugin("quiet_plugin", register_operations=lambda register: None)
    test_plugin("no_args", register_commands=no_arguments)
    register_commands(cli)
    assert cli.commands["info"].callback is host_info.callback
    assert plugin_info("verb_thief").commands == ["fresh"]
    assert any("verb 'info' belongs to imgedit" in e for e in plugin_info("verb_thief").errors)
    assert not plugin_info("no_args").errors


def test_built_in_verbs_win_whatever_order_the_packages_are_listed_in(tmp_path, photo):
    # on PYTHONPATH, the plugin's package is listed before imgedit's own: it still loads after the built-ins
    fake_distribution(tmp_path, "imgedit_clash", """
        import click
        import imgedit
        from imgedit.verbs import add_operation_verb, command_group

        @imgedit.hookimpl
        def register_commands(cli):
            @cli.command(name="style")
            def mine():
                "Not the built-in style."

            @command_group(cli, "train", help="Train.").command(name="denoise")
            def mine_too():
                "Not the built-in trainer."

            add_operation_verb(cli, "denoise", help="mine")
        """)
    env = {"PYTHONPATH": str(tmp_path)}  # run from tmp_path: a checkout's own egg-info would list imgedit first
    rows = {row["name"]: row for row in json.loads(run_imgedit("plugins", "--json", env=env, cwd=tmp_path).stdout)}
    assert [rows[name]["status"] for name in ("imgedit_vae", "imgedit_style", "imgedit_clash")] == ["ok", "ok", "error"]
    assert sorted(e.split(": ")[1] for e in rows["imgedit_clash"]["errors"]) == [
        "verb 'style' belongs to imgedit_style; kept theirs", "verb 'train denoise' belongs to imgedit_vae; kept theirs"]
    assert "style" in rows["imgedit_style"]["commands"] and "train denoise" in rows["imgedit_vae"]["commands"]
    result = run_imgedit("style", photo, "--style", "mosaic", "-o", tmp_path / "styled.png", "-q", env=env, cwd=tmp_path)
    assert result.returncode == 0 and (tmp_path / "styled.png").exists(), result.stderr


def test_an_operation_verb_whose_name_another_command_holds_is_a_problem_of_the_late_plugin(test_plugin):
    import click

    from imgedit.operations import Operation
    from imgedit.plugins import plugin_info
    from imgedit.verb_owners import register_commands
    from imgedit.verbs import add_operation_verb

    cli = click.Group("imgedit")

    def takes_the_name(cli):
        @cli.command("smudge")
        def not_an_operation():
            """A plain command."""

    smudge = Operation("smudge", "soft", lambda ctx: (lambda image, mask: image))
    test_plugin("first_plugin", register_commands=takes_the_name)
    test_plugin("late_plugin", register_operations=lambda register: register(smudge),
                register_commands=lambda cli: add_operation_verb(cli, "smudge", help="x"))
    register_commands(cli)
    assert not hasattr(cli.commands["smudge"], "imgedit_operation")  # the first plugin's command stays
    assert plugin_info("late_plugin").errors == ["register_commands: verb 'smudge' belongs to first_plugin; kept theirs"]
    with pytest.raises(UsageError, match="cannot add verb 'smudge': the command 'smudge' is plugin first_plugin's"):
        add_operation_verb(cli, "smudge")  # outside register_commands: no plugin's row to say it in


def test_a_parameter_named_like_a_common_option_is_left_out_of_the_verb(test_plugin):
    import click

    from imgedit.operations import Param
    from imgedit.verbs import add_operation_verb

    test_plugin("clashing_params", register_operations=lambda register: register(
        _identity_op("clashy", "m", params=(Param("quality", int, 50), Param("levels", int, 4)))))
    cli = click.Group("imgedit")
    add_operation_verb(cli, "clashy", "Clash test.")
    flags = [opt for p in cli.commands["clashy"].params for opt in getattr(p, "opts", [])]
    assert flags.count("--quality") == 1 and "--levels" in flags
    problems = registry.get_registry().problems["clashing_params"]
    assert any("'quality' of clashy.m clashes with the common option --quality" in p for p in problems)


def test_junk_registrations_are_problems_of_their_plugin(test_plugin):
    test_plugin("junk_plugin", register_operations=lambda register: [
        register("junk"),
        register(Operation(name="weird", method="x", create=None)),
        register(_identity_op(name="bad name|x")),
    ], register_models=lambda register: register(42))
    reg = registry.get_registry()
    problems = " / ".join(reg.problems["junk_plugin"])
    assert "registered str 'junk', not an Operation" in problems
    assert "'weird.x' has no create function" in problems
    assert "operation name 'bad name|x' is not a name" in problems
    assert "registered int 42 as a model, not a ModelSpec" in problems
    assert "weird" not in reg.operation_names() and "bad name|x" not in reg.operation_names()
    with pytest.raises(Exception, match="plugins with errors, see 'imgedit plugins': .*junk_plugin"):
        reg.get("weird")


def test_errors_in_plugin_code_name_the_stage_and_the_plugin(test_plugin, tmp_path):
    import torch

    import imgedit
    from imgedit.pipeline import Pipeline

    starts = []

    def create_fails(ctx):
        starts.append(1)
        raise RuntimeError("model file is corrupt")

    def apply_fails(ctx):
        def apply(image, mask):
            raise ValueError("bad maths")
        return apply

    def check_fails(params):
        raise KeyError("oops")

    test_plugin("buggy", register_operations=lambda register: [
        register(Operation("crashy", "start", create_fails)),
        register(Operation("crashy", "apply", apply_fails)),
        register(_identity_op("crashy", "check", check=check_fails)),
    ])
    with pytest.raises(PluginError, match=r"stage 1 \(crashy.start, plugin buggy\) could not start: RuntimeError: model"):
        Pipeline.parse("crashy method=start").build("cpu")
    built = Pipeline.parse("denoise method=nlm sigma=5 | crashy method=apply").build("cpu")
    with pytest.raises(PluginError, match=r"stage 2 \(crashy.apply, plugin buggy\) failed: ValueError: bad maths"):
        built.apply(torch.rand(1, 3, 16, 16))
    with pytest.raises(PluginError, match=r"the check of crashy.check \(plugin buggy\) failed: KeyError"):
        Pipeline.parse("crashy method=check")
    # an OSError in a check is the file system refusing the user's path, not a bug in the plugin
    def check_stats(params):
        raise PermissionError(13, "Permission denied", "/secret/model.safetensors")

    test_plugin("statting", register_operations=lambda register: [register(_identity_op("stats", "check", check=check_stats))])
    with pytest.raises(UsageError, match=r"^stage 1 \(stats\): /secret/model.safetensors: Permission denied$"):
        Pipeline.parse("stats method=check")
    # a stage that cannot start fails the run once, not once per image
    from PIL import Image

    from conftest import smooth_rgb

    for i in range(3):
        Image.fromarray(smooth_rgb(seed=i)).save(tmp_path / f"im{i}.png")
    starts.clear()
    with pytest.raises(PluginError, match="could not start") as info:  # as it was raised, the summary on it
        imgedit.run("crashy method=start", tmp_path, tmp_path / "out")
    assert len(starts) == 1 and len(info.value.summary.failed) == 1 and info.value.summary.unbuildable
    assert "could not start" in info.value.summary.failed[0].error


def test_json_of_a_run_whose_stage_cannot_start_carries_its_error(invoke, test_plugin, tmp_path):
    from PIL import Image

    from conftest import smooth_rgb

    def create_fails(ctx):
        raise RuntimeError("model file is corrupt")

    test_plugin("unstartable", register_operations=lambda register: register(Operation("stuck", "x", create_fails)))
    for i in range(2):
        Image.fromarray(smooth_rgb(seed=i)).save(tmp_path / f"im{i}.png")
    result = invoke("run", "-p", "stuck", tmp_path, "-o", tmp_path / "out", "--json")
    error = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and error.endswith("no image was processed"), result.output
    assert json.loads(result.stdout)["error"] == error.removeprefix("Error: ")


def test_first_calls_from_several_threads_at_once_all_find_the_operations():
    # a service's first requests arrive together: each thread must wait for the one loading the plugins
    import subprocess
    import sys

    code = """
import threading
from concurrent.futures import ThreadPoolExecutor
import imgedit
start = threading.Barrier(8)
def parse(_):
    start.wait()
    return imgedit.Pipeline.parse("denoise method=nlm sigma=20").stages[0].operation.key
print(sorted(set(ThreadPoolExecutor(8).map(parse, range(8)))))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['denoise.nlm']"


def test_debug_before_the_verb_shows_a_plugins_import_traceback_as_the_variable_does(tmp_path):
    fake_distribution(tmp_path, "imgedit_broken", "raise ImportError('missing dependency xyz')\n")
    env = {"PYTHONPATH": str(tmp_path), "IMGEDIT_DEBUG": ""}
    assert "Traceback" not in run_imgedit("plugins", env=env).stdout
    for args, extra in ((["--debug", "plugins"], {}), (["plugins"], {"IMGEDIT_DEBUG": "1"})):
        listing = run_imgedit(*args, env={**env, **extra}).stdout
        assert "Traceback (most recent call last)" in listing and "ImportError: missing dependency xyz" in listing, args


def test_only_debug_before_the_verb_is_imgedits_own(monkeypatch):
    import os

    from imgedit.entry import _debug_before_plugins_load

    monkeypatch.setenv("IMGEDIT_DEBUG", "")  # undone afterwards, as the 1 set below is
    _debug_before_plugins_load(["denoise", "--debug"])
    _debug_before_plugins_load(["--", "--debug"])
    assert os.environ["IMGEDIT_DEBUG"] == ""
    _debug_before_plugins_load(["--version", "--debug", "plugins"])
    assert os.environ["IMGEDIT_DEBUG"] == "1"


def test_the_allow_list_names_plugins_as_imgedit_plugins_lists_them(tmp_path):
    # an entry point named unlike its module: the listing shows the entry point's name, so the allow-list messages do
    (tmp_path / "tint_impl.py").write_text("")
    info = tmp_path / "imgedit_tint-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imgedit-tint\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[imgedit]\ntint = tint_impl\n")
    env = {"PYTHONPATH": str(tmp_path)}
    assert "tint 1.0 [ok]" in run_imgedit("plugins", env=env, cwd=tmp_path).stdout
    left_out = run_imgedit("plugins", env={**env, "IMGEDIT_LOAD_PLUGINS": "imgedit_classical"}, cwd=tmp_path)
    assert left_out.stdout.splitlines()[-1] == (
        "5 installed plugins left out by IMGEDIT_LOAD_PLUGINS: imgedit_gan, imgedit_interp, imgedit_style, imgedit_vae, tint")
    typo = run_imgedit("plugins", env={**env, "IMGEDIT_LOAD_PLUGINS": "tintt"}, cwd=tmp_path).stderr
    assert "no plugin named tintt is installed" in typo and ", tint)" in typo and "tint_impl" not in typo
    by_module = run_imgedit("plugins", env={**env, "IMGEDIT_LOAD_PLUGINS": "tint_impl"}, cwd=tmp_path)
    assert by_module.stderr == "" and "tint 1.0 [ok]" in by_module.stdout  # still taken, as before
