"""What a third-party plugin cannot break: a built-in operation or verb, an
entry-point name another package holds; and what it can rely on: its bool
parameters, its parameter names, error messages that name it."""

import json
import textwrap
import types

import click
import pytest

from imgedit import hookimpl, registry
from imgedit.operations import Operation, Param

from conftest import run_imgedit


def _identity_op(name, method, **kwargs):
    return Operation(name=name, method=method, create=lambda ctx, **params: (lambda image, mask: image), **kwargs)


# --- 1. a built-in operation's key stays the built-in's -------------------------------

def test_a_plugin_registering_a_built_in_operation_is_left_out_and_the_built_in_runs(invoke, test_plugin, photo):
    test_plugin("copycat", register_operations=lambda register: register(_identity_op("denoise", "nlm")))
    assert registry.get_registry().get("denoise", "nlm").plugin == "imgedit_classical"
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert rows["imgedit_classical"]["status"] == "ok"
    assert rows["copycat"]["errors"] == [
        "operation 'denoise.nlm' is already registered by imgedit_classical; kept theirs (give yours another method name)"]
    registry.reset()  # the warning is once per registry: this run's own
    result = invoke("denoise", photo, "--method", "nlm", "--sigma", "5", "-o", photo.parent / "out.png")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "copycat" in line]
    assert warnings == ["Warning: operation 'denoise.nlm' of imgedit_classical is used; copycat registered it too "
                        "and is left out (see 'imgedit plugins')"]


def test_a_plugin_cannot_go_before_the_built_ins_with_trylast():
    from imgedit.plugins import register_plugin, unregister_plugin

    pushy = types.ModuleType("pushy")  # pluggy lists a trylast implementation before every other one
    pushy.register_operations = hookimpl(trylast=True)(lambda register: register(_identity_op("denoise", "nlm")))
    register_plugin(pushy, "pushy")
    try:
        reg = registry.get_registry()
        assert reg.get("denoise", "nlm").plugin == "imgedit_classical"
        assert "imgedit_classical" not in reg.problems
        assert "already registered by imgedit_classical" in reg.problems["pushy"][0]
    finally:
        unregister_plugin("pushy")


# --- 2. two distributions declaring one entry-point name ------------------------------

def _distribution(site, dist, entry_point, module, source):
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[imgedit]\n{entry_point} = {module}\n")


_PLUGIN_SOURCE = """
    import imgedit
    from imgedit.operations import Operation

    @imgedit.hookimpl
    def register_operations(register):
        register(Operation("{name}", "basic", lambda ctx: (lambda image, mask: image)))
    """


def test_two_distributions_with_one_entry_point_name_are_both_named_and_the_first_works(tmp_path, photo):
    for dist, module in (("beta-plugin", "beta_mod"), ("alpha-plugin", "alpha_mod")):
        _distribution(tmp_path, dist, "shared_name", module, _PLUGIN_SOURCE.format(name=module.split("_")[0]))
    env = {"PYTHONPATH": str(tmp_path)}
    rows = {row["name"]: row for row in json.loads(run_imgedit("plugins", "--json", env=env, cwd=tmp_path).stdout)}
    assert rows["shared_name"]["status"] == "ok" and rows["shared_name"]["operations"] == ["alpha.basic"]
    assert rows["shared_name (beta-plugin)"]["status"] == "error"
    assert rows["shared_name (beta-plugin)"]["errors"] == [
        "not loaded: beta-plugin and alpha-plugin both declare the entry point 'shared_name', and alpha-plugin's "
        "is loaded; uninstall one, or rename the entry point"]
    result = run_imgedit("run", "-p", "alpha", photo, "-o", tmp_path / "out.png", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- 3. bool parameters as --x/--no-x --------------------------------------------------

def test_a_bool_parameter_is_a_flag_pair_whatever_its_default(test_plugin, cli_runner, photo):
    from imgedit.verbs import add_operation_verb

    seen = []

    def create(ctx, keep3=True, flip=False):
        seen.append((keep3, flip))
        return lambda image, mask: image

    params = (Param("keep3", bool, True, help="Keep."), Param("flip", bool, False, help="Flip."))
    test_plugin("flags", register_operations=lambda register: register(Operation("flagged", "m", create, params)))
    cli = click.Group("imgedit")
    add_operation_verb(cli, "flagged", "Flag test.")
    help_text = " ".join(cli_runner.invoke(cli, ["flagged", "--help"]).output.split())
    assert "--keep3 / --no-keep3 Keep. [default: keep3]" in help_text
    assert "--flip / --no-flip Flip. [default: no-flip]" in help_text
    for args, expected in (([], (True, False)), (["--no-keep3", "--flip"], (False, True)), (["--keep3", "--no-flip"], (True, False))):
        seen.clear()
        result = cli_runner.invoke(cli, ["flagged", str(photo), "-o", str(photo.parent / "o.png"), "--overwrite", *args])
        assert result.exit_code == 0, result.output
        assert seen == [expected], args


# --- 4. parameter names a stage or verb takes for itself ------------------------------

@pytest.mark.parametrize("name, why", [
    ("method", "parameter 'method': the name is reserved: 'method=' in a pipeline and --method in the verb pick the method"),
    ("op", "parameter 'op': the name is reserved: 'op' names the operation of a stage in a pipeline file"),
    ("two-words", "parameter name 'two-words' is not a Python identifier"),
])
def test_a_parameter_name_that_could_never_be_set_is_refused_at_registration(test_plugin, invoke, name, why):
    test_plugin("unsettable", register_operations=lambda register: register(_identity_op("meth", "basic", params=(Param(name),))))
    reg = registry.get_registry()
    assert "meth" not in reg.operation_names()
    assert len(reg.problems["unsettable"]) == 1 and reg.problems["unsettable"][0].startswith(f"operation 'meth.basic': {why}")
    listing = invoke("plugins").output.splitlines()
    at = listing.index(next(line for line in listing if line.startswith("unsettable ")))
    assert "[error]" in listing[at] and f"  error: operation 'meth.basic': {why}" in "\n".join(listing[at:])


# --- 5 and 6. messages name the plugin (or imgedit) ------------------------------------

def test_an_operation_verb_named_like_an_imgedit_command_says_so(test_plugin):
    from imgedit.plugins import plugin_info
    from imgedit.verb_owners import register_commands
    from imgedit.verbs import add_operation_verb

    cli = click.Group("imgedit")
    cli.command("info")(lambda: None)
    test_plugin("info_op", register_operations=lambda register: register(_identity_op("info", "basic")),
                register_commands=lambda cli: add_operation_verb(cli, "info", help="x"))
    register_commands(cli)
    assert plugin_info("info_op").errors == ["register_commands: verb 'info' belongs to imgedit; kept theirs"]


def test_an_operation_verb_in_a_shared_group_taken_by_another_plugin_leaves_out_that_verb_alone(test_plugin):
    # add_operation_verb on command_group(cli, "train") raised on the clash, and the plugin's later verbs were lost
    from imgedit.plugins import plugin_info
    from imgedit.verb_owners import register_commands
    from imgedit.verbs import add_operation_verb, command_group

    def later(cli):
        add_operation_verb(command_group(cli, "train"), "tune", help="x")
        cli.command("after")(lambda: None)

    cli = click.Group("imgedit")
    test_plugin("first_tune", register_commands=lambda cli: command_group(cli, "train").command("tune")(lambda: None))
    test_plugin("later_tune", register_operations=lambda register: register(_identity_op("tune", "basic")),
                register_commands=later)
    register_commands(cli)
    assert plugin_info("later_tune").errors == ["register_commands: verb 'train tune' belongs to first_tune; kept theirs"]
    assert "after" in cli.commands and not hasattr(cli.commands["train"].commands["tune"], "imgedit_operation")


def test_an_unexpected_error_in_a_plugin_command_names_the_plugin(test_plugin, cli_runner, monkeypatch):
    from imgedit.cli import ImgeditGroup
    from imgedit.verb_owners import register_commands
    from imgedit.verbs import command_group

    def fail():
        raise RuntimeError("plugin command bug")

    def add_commands(cli):
        cli.command("boom")(fail)
        command_group(cli, "train", help="Train.").command("boom")(fail)

    monkeypatch.delenv("IMGEDIT_DEBUG", raising=False)
    cli = ImgeditGroup("imgedit")
    cli.command("hostcmd")(fail)
    test_plugin("buggy_cmds", register_commands=add_commands)
    register_commands(cli)
    for args, where in ((["boom"], " in plugin buggy_cmds's command 'boom'"),
                        (["train", "boom"], " in plugin buggy_cmds's command 'train boom'"),
                        (["hostcmd"], "")):
        result = cli_runner.invoke(cli, args)
        assert result.exit_code == 1
        assert result.stderr == f"Error: unexpected RuntimeError{where}: plugin command bug (run with --debug for details)\n"
