"""How plugins' verbs share the command line: a clash loses one verb, not a
plugin's others; a shared parameter's option is declared by the plugin that
had it first; a plugin may implement register_commands twice; shared groups
need no help from a plugin that finds them made; `imgedit plugins -v`
describes every operation, one without a verb too."""

import json
import types

import click
import pytest

from imgedit import hookimpl, registry
from imgedit.errors import UsageError
from imgedit.operations import Operation, Param
from imgedit.plugins import plugin_info, register_plugin, unregister_plugin
from imgedit.verb_owners import register_commands
from imgedit.verbs import SHARED_GROUP_HELP, add_operation_verb, command_group


def _op(name, method="basic", params=(), **kwargs):
    return Operation(name, method, lambda ctx, **p: (lambda image, mask: image), params, **kwargs)


def _help(cli_runner, cli, *words):
    return " ".join(cli_runner.invoke(cli, [*words, "--help"]).output.split())


# --- 1. a verb clash in add_operation_verb loses that verb alone ------------------------

def test_a_verb_another_plugin_holds_is_left_out_and_the_plugins_later_verbs_still_register(test_plugin, cli_runner):
    def takes_sepia(cli):
        @cli.command("sepia")
        def sepia():
            """The first plugin's sepia."""

    def tone_verbs(cli):
        add_operation_verb(cli, "sepia", help="Sepia tint.")
        add_operation_verb(cli, "posterize", help="Fewer colour levels.")

    test_plugin("aaa_tints", register_commands=takes_sepia)  # loaded first: it keeps the verb
    test_plugin("zzz_tones", register_operations=lambda register: [register(_op("sepia")), register(_op("posterize"))],
                register_commands=tone_verbs)
    cli = click.Group("imgedit")
    register_commands(cli)
    assert _help(cli_runner, cli, "sepia").endswith("The first plugin's sepia. Options: --help Show this message and exit.")
    assert "Fewer colour levels." in _help(cli_runner, cli, "posterize")
    assert plugin_info("zzz_tones").commands == ["posterize"]
    assert plugin_info("zzz_tones").errors == ["register_commands: verb 'sepia' belongs to aaa_tints; kept theirs"]
    assert plugin_info("aaa_tints").errors == [] and plugin_info("aaa_tints").commands == ["sepia"]


def test_a_shared_group_named_like_another_plugins_command_is_left_out_alone(test_plugin):
    def takes_tools(cli):
        cli.command("tools")(lambda: None)

    def adds_to_tools(cli):
        command_group(cli, "tools").command("sharpen")(lambda: None)
        cli.command("blur")(lambda: None)

    test_plugin("aaa_tools", register_commands=takes_tools)
    test_plugin("zzz_tools", register_commands=adds_to_tools)
    cli = click.Group("imgedit")
    register_commands(cli)
    assert not isinstance(cli.commands["tools"], click.Group) and "blur" in cli.commands
    assert plugin_info("zzz_tools").errors == ["register_commands: verb 'tools' belongs to aaa_tools; kept theirs"]
    assert plugin_info("zzz_tools").commands == ["blur"]
    with pytest.raises(TypeError, match="imgedit tools is a command, not a group"):
        command_group(cli, "tools")  # outside register_commands: no plugin's row to say it in


# --- 2. a shared parameter's option is declared by the plugin that had it first ---------

def test_a_later_plugins_method_cannot_redeclare_a_built_in_verbs_option(test_plugin, cli_runner, photo, invoke):
    seen = []

    def create(ctx, sigma=3):
        seen.append(sigma)
        return lambda image, mask: image

    median = Operation("denoise", "median", create, (Param("sigma", int, 3, help="Kernel", minimum=1, maximum=9),),
                       priority=100)
    test_plugin("median_filter", register_operations=lambda register: register(median))
    cli = click.Group("imgedit")
    add_operation_verb(cli, "denoise")
    text = _help(cli_runner, cli, "denoise")
    assert "--sigma FLOAT|auto Noise std on the 0-255 scale, or auto (method vae" in text and "Kernel" not in text
    assert "[default: auto]" in text and "Default: median." in text  # its priority still makes it the default

    def run(*args):
        return cli_runner.invoke(cli, ["denoise", str(photo), "-o", str(photo.parent / "o.png"), "--overwrite", *args])

    assert run("--method", "nlm", "--sigma", "30").exit_code == 0  # the built-in's own range
    assert run("--method", "median", "--sigma", "5").exit_code == 0 and seen == [5] and type(seen[0]) is int  # its own type
    refused = run("--method", "median", "--sigma", "30")
    assert isinstance(refused.exception, UsageError) and "parameter 'sigma' must be in [1, 9], got 30" in str(refused.exception)
    warnings = registry.get_registry().warnings["median_filter"]
    assert warnings == [
        "operation 'denoise.median': parameter 'sigma' (int, in [1, 9], default 3) is declared unlike denoise.vae's "
        "of imgedit_vae (float or auto, in [0, 255], default auto), which the 'denoise' verb's option shows; "
        "denoise.median checks the values it gets against its own (declare it alike, or name it otherwise)"]
    listing = invoke("plugins")
    assert listing.exit_code == 0  # a warning, not an error: the plugin works
    assert "median_filter  [ok] (test)" in listing.output and f"  warning: {warnings[0]}" in listing.output


def test_between_other_plugins_the_first_loaded_declares_the_option_whatever_the_priorities(test_plugin, cli_runner):
    test_plugin("early_levels", register_operations=lambda register: register(
        _op("levels", "early", (Param("count", int, 4, help="Early's count."),))))
    test_plugin("late_levels", register_operations=lambda register: register(
        _op("levels", "late", (Param("count", float, 0.5, help="Late's count."),), priority=50)))
    cli = click.Group("imgedit")
    add_operation_verb(cli, "levels", help="Levels.")
    text = _help(cli_runner, cli, "levels")
    assert "--count INTEGER Early's count. [default: 4]" in text and "Late's" not in text
    reg = registry.get_registry()
    assert "early_levels" not in reg.warnings and "declared unlike levels.early's of early_levels" in reg.warnings["late_levels"][0]


def test_methods_of_one_plugin_may_declare_a_parameter_differently_unwarned(test_plugin):
    test_plugin("own_ranges", register_operations=lambda register: [
        register(_op("zoom", "narrow", (Param("radius", int, 1, minimum=1, maximum=5),))),
        register(_op("zoom", "wide", (Param("radius", float, 1.0, minimum=1, maximum=10),)))])
    assert "own_ranges" not in registry.get_registry().warnings


# --- 4. two implementations of register_commands -------------------------------------------

def test_a_plugin_with_two_register_commands_implementations_lists_the_verbs_of_both():
    module = types.ModuleType("two_hooks")
    module.register_commands = hookimpl(lambda cli: cli.command("first-verb")(lambda: None))
    module.more_commands = hookimpl(specname="register_commands")(lambda cli: cli.command("second-verb")(lambda: None))
    register_plugin(module, "two_hooks")
    try:
        cli = click.Group("imgedit")
        register_commands(cli)
        assert plugin_info("two_hooks").commands == ["first-verb", "second-verb"]
        register_commands(click.Group("imgedit"))  # another command line: its own verbs, listed afresh
        assert plugin_info("two_hooks").commands == ["first-verb", "second-verb"]
    finally:
        unregister_plugin("two_hooks")


# --- 6. command_group's help ---------------------------------------------------------------

def test_command_group_needs_help_only_to_make_a_group_of_its_own():
    cli = click.Group("imgedit")
    train = command_group(cli, "train")  # a shared group: the host's help, whichever plugin makes it
    assert train.help == SHARED_GROUP_HELP["train"] and command_group(cli, "train") is train
    assert command_group(cli, "train", help="Ignored: the group exists.").help == SHARED_GROUP_HELP["train"]
    assert command_group(cli, "extras").help == "Commands that plugins add under 'extras'."
    assert command_group(cli, "mine", help="My tools.").help == "My tools."


# --- 7. plugins -v describes the operations -------------------------------------------------

def test_plugins_verbose_describes_each_operation_and_how_to_run_it(test_plugin, invoke):
    test_plugin("filters", register_operations=lambda register: [
        register(_op("median", "box", (Param("size", int, 3, minimum=1, maximum=9),), description="Median filter.")),
        register(_op("denoise", "gentle", description="A gentle denoiser."))])
    short = invoke("plugins")
    assert short.exit_code == 0 and "Median filter." not in short.output
    assert "  operations: denoise.gentle, median.box" in short.output
    lines = invoke("plugins", "-v").output.splitlines()
    at = lines.index("filters  [ok] (test)")
    assert lines[at + 1:at + 6] == [
        "  hooks: register_operations",
        "  operations:",
        "    denoise.gentle: A gentle denoiser. (imgedit denoise --method gentle)",
        '    median.box: Median filter. (no verb: imgedit run -p "median.box")',
        "      size: int, in [1, 9], default 3",
    ]
    rows = {row["name"]: row for row in json.loads(invoke("plugins", "--json", "--verbose").stdout)}
    assert rows["filters"]["operation_details"][1] == {
        "operation": "median.box", "description": "Median filter.", "priority": 0,
        "params": {"size": "int, in [1, 9], default 3"}, "verb": ""}
    assert "operation_details" not in json.loads(invoke("plugins", "--json").stdout)[0]


# --- 5. plugins fails where a plugin does -------------------------------------------------

def test_plugins_exits_1_when_a_plugin_has_an_error(test_plugin, invoke):
    def register_operations(register):
        raise RuntimeError("broken on import of its model")

    assert invoke("plugins").exit_code == 0
    test_plugin("broken_ops", register_operations=register_operations)
    for args in (("plugins",), ("plugins", "--json")):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.stderr.splitlines()[-1].endswith("plugins has an error: broken_ops")
    assert json.loads(invoke("plugins", "--json").stdout)  # the listing is still whole
