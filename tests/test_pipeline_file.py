"""Tests for imgedit.pipeline_file: pipelines read from TOML and YAML files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from imgedit.errors import UsageError
from imgedit.pipeline import Pipeline
from imgedit.pipeline_file import load_pipeline_specs

EXPECTED = [("denoise", {"sigma": 25}), ("inpaint", {"method": "telea"})]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    """The UsageError message for ``path``; checks it is one line naming the file."""
    with pytest.raises(UsageError) as info:
        load_pipeline_specs(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ----------------------------------------------------------------- TOML
def test_toml_stages(tmp_path):
    path = write(tmp_path, "pipeline.toml", """
        # pipeline.toml
        [[stage]]
        op = "denoise"
        sigma = 25

        [[stage]]
        op = "inpaint"
        method = "telea"
    """)
    assert load_pipeline_specs(path) == EXPECTED


def test_toml_keeps_value_types(tmp_path):
    path = write(tmp_path, "p.TOML", """
        [[stage]]
        op = "x"
        count = 3
        strength = 0.5
        fast = true
        mode = "auto"
        noise-level = 2
    """)
    [(name, params)] = load_pipeline_specs(path)
    assert name == "x"
    assert params == {"count": 3, "strength": 0.5, "fast": True, "mode": "auto", "noise_level": 2}
    assert type(params["count"]) is int and type(params["strength"]) is float and params["fast"] is True


def test_toml_compact(tmp_path):
    path = write(tmp_path, "p.toml", 'pipeline = "denoise sigma=25 | inpaint method=telea"\n')
    assert load_pipeline_specs(path) == [("denoise", {"sigma": "25"}), ("inpaint", {"method": "telea"})]


def test_compact_matches_pipeline_parse_words(tmp_path):
    # Quoting and key-dashes work as on the command line (same parser).
    path = write(tmp_path, "p.toml", """pipeline = "op one-two='a b' | other"\n""")
    assert load_pipeline_specs(path) == [("op", {"one_two": "a b"}), ("other", {})]


def test_specs_build_a_pipeline(tmp_path):
    # File values (int 25) and compact values ("25") both pass Operation.parse_params.
    table = write(tmp_path, "a.toml", '[[stage]]\nop = "denoise"\nsigma = 25\n[[stage]]\nop = "inpaint"\nmethod = "telea"\n')
    compact = write(tmp_path, "b.toml", 'pipeline = "denoise sigma=25 | inpaint method=telea"\n')
    built = [Pipeline.from_specs(load_pipeline_specs(p)).describe() for p in (table, compact)]
    assert built[0] == built[1] == Pipeline.parse("denoise sigma=25 | inpaint method=telea").describe()


# ----------------------------------------------------------------- YAML
def test_yaml_stages(tmp_path):
    pytest.importorskip("yaml")
    for name in ("pipeline.yaml", "pipeline.yml"):
        path = write(tmp_path, name, """
            stages:
              - op: denoise
                sigma: 25
              - op: inpaint
                method: telea
        """)
        assert load_pipeline_specs(path) == EXPECTED


def test_yaml_keeps_value_types(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path, "p.yaml", """
        stages:
          - op: x
            count: 3
            strength: 0.5
            fast: true
            mode: "12"
    """)
    assert load_pipeline_specs(path) == [("x", {"count": 3, "strength": 0.5, "fast": True, "mode": "12"})]


def test_yaml_compact(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path, "p.yaml", 'pipeline: "denoise sigma=25 | inpaint"\n')
    assert load_pipeline_specs(path) == [("denoise", {"sigma": "25"}), ("inpaint", {})]


def test_yaml_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes `import yaml` raise ImportError
    path = write(tmp_path, "p.yaml", "stages:\n  - op: denoise\n")
    with pytest.raises(UsageError, match=r"^reading YAML pipelines needs PyYAML: pip install pyyaml$"):
        load_pipeline_specs(path)


def test_yaml_syntax_error_names_line(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path, "p.yaml", """
        stages:
          - op: denoise
            sigma: [25
    """)
    assert "line" in load_error(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "no stages"),
        ("stages: []\n", "no stages"),
        ("- op: denoise\n", "expected a mapping"),
        ("stages:\n  op: denoise\n", "list item"),
        ("stages:\n  - denoise\n", "stage 1"),
        ("stages:\n  - op: a\n  - sigma: 3\n", "stage 2"),
        ("stage:\n  - op: a\n", "unknown top-level key 'stage'"),
        ("stages:\n  - op: a\n    sigma: [1, 2]\n", "stage 1 (a): parameter 'sigma'"),
        ("stages:\n  - op: a\n    sigma:\n", "stage 1 (a): parameter 'sigma'"),
    ],
)
def test_yaml_errors(tmp_path, text, expected):
    pytest.importorskip("yaml")
    assert expected in load_error(write(tmp_path, "p.yaml", text))


# ----------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    assert "not found" in load_error(tmp_path / "nope.toml")


def test_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    assert "not a file" in load_error(tmp_path / "dir.toml")


@pytest.mark.parametrize("name", ["pipeline.json", "pipeline.txt", "pipeline"])
def test_unknown_suffix(tmp_path, name):
    path = write(tmp_path, name, "{}")
    message = load_error(path)
    assert ".toml" in message and ".yaml" in message


def test_toml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "p.toml", """
        [[stage]]
        op = "denoise"
        sigma 25
    """)
    message = load_error(path)
    assert "invalid TOML" in message and "line 3" in message


def test_toml_no_stages(tmp_path):
    assert "no stages" in load_error(write(tmp_path, "p.toml", "# nothing here\n"))
    assert "no stages" in load_error(write(tmp_path, "q.toml", 'pipeline = "  "\n'))


def test_toml_stage_without_op(tmp_path):
    path = write(tmp_path, "p.toml", """
        [[stage]]
        op = "denoise"

        [[stage]]
        method = "telea"
    """)
    message = load_error(path)
    assert "stage 2" in message and "'op'" in message


def test_toml_op_not_text(tmp_path):
    assert "stage 1" in load_error(write(tmp_path, "p.toml", "[[stage]]\nop = 3\n"))


def test_toml_single_table_hint(tmp_path):
    path = write(tmp_path, "p.toml", '[stage]\nop = "denoise"\n')
    assert "[[stage]]" in load_error(path)


def test_toml_stage_not_a_table(tmp_path):
    path = write(tmp_path, "p.toml", 'stage = ["denoise", "inpaint"]\n')
    message = load_error(path)
    assert "stage 1" in message and "expected a table" in message


def test_toml_nested_table_value(tmp_path):
    path = write(tmp_path, "p.toml", '[[stage]]\nop = "denoise"\n[stage.extra]\na = 1\n')
    assert "stage 1 (denoise): parameter 'extra'" in load_error(path)


def test_toml_unknown_top_level_keys(tmp_path):
    path = write(tmp_path, "p.toml", 'name = "mine"\n[[stages]]\nop = "denoise"\n')
    message = load_error(path)
    assert "unknown top-level keys 'name', 'stages'" in message


def test_both_forms_refused(tmp_path):
    path = write(tmp_path, "p.toml", 'pipeline = "denoise"\n[[stage]]\nop = "denoise"\n')
    assert "not both" in load_error(path)


def test_compact_errors_name_the_stage(tmp_path):
    assert "stage 2" in load_error(write(tmp_path, "a.toml", 'pipeline = "denoise | | inpaint"\n'))
    message = load_error(write(tmp_path, "b.toml", 'pipeline = "denoise | inpaint telea"\n'))
    assert "stage 2" in message and "key=value" in message
    assert "stage 1" in load_error(write(tmp_path, "c.toml", """pipeline = "denoise x='a"\n"""))
    assert "'pipeline' must be text" in load_error(write(tmp_path, "d.toml", "pipeline = 3\n"))


def test_duplicate_after_dash_normalisation(tmp_path):
    path = write(tmp_path, "p.toml", '[[stage]]\nop = "x"\nnoise-level = 1\nnoise_level = 2\n')
    assert "given twice" in load_error(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b'[[stage]]\nop = "\xff"\n')
    assert "UTF-8" in load_error(path)


# ----------------------------------------------------------------- hostile files (an upload to a service)
LAUGHS = "".join(f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]\n" for n in range(1, 6))


def test_yaml_aliases_refused(tmp_path):
    # 5 levels of 9 aliases: 59 049 strings, whose repr filled the message before
    pytest.importorskip("yaml")
    text = f"x:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n{LAUGHS}stages:\n  - op: a\n    method: *a5\n"
    message = load_error(write(tmp_path, "p.yaml", text))
    assert "aliases (*name) are not allowed" in message and "line 3" in message
    assert len(message) < 300


@pytest.mark.parametrize("suffix, text", [
    (".toml", "x = " + "[" * 10_000),
    (".toml", "x = " + "{a=" * 10_000),
    (".yaml", "stages: " + "[" * 5_000),
])
def test_deep_nesting_is_a_usage_error(tmp_path, suffix, text):
    assert "nested too deeply" in load_error(write(tmp_path, "p" + suffix, text))


def test_file_over_the_size_limit_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("imgedit.pipeline_file.MAX_FILE_BYTES", 100)
    path = write(tmp_path, "p.toml", '[[stage]]\nop = "denoise"\n' + "# padding\n" * 10)
    assert "over 0 KB" in load_error(path)
    write(tmp_path, "p.toml", '[[stage]]\nop = "denoise"\n')
    assert load_pipeline_specs(path) == [("denoise", {})]


@pytest.mark.parametrize("text, expected", [
    ("stage = '" + "x" * 5000 + "'\n", "got text 'xxxxx"),  # a long value, not a stage list
    ('[[stage]]\nop = "a"\nmethod = [' + '"m", ' * 2000 + "]\n", "'method' must be a method name, got a list"),
    ('[[stage]]\nop = "' + "x" * 5000 + '"\n', "'op' must be an operation name, got text 'xxxxx"),
    ('[[stage]]\nop = "a"\nsigma = "' + "x" * 5000 + '"\n', "parameter 'sigma' is text of 5000 characters"),
    ('pipeline = "denoise sigma=' + "x" * 5000 + '"\n', "'pipeline' is 5014 characters"),
    ('[[stage]]\nop = "a\\nb"\nsigma = [1]\n', "stage 1 (a\\nb): parameter 'sigma'"),  # one line
])
def test_long_values_are_cut_short_in_messages(tmp_path, text, expected):
    message = load_error(write(tmp_path, "p.toml", text))
    assert expected in message and len(message) < 300


def test_long_yaml_integer_is_a_usage_error(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path, "p.yaml", "stages:\n  - op: a\n    sigma: " + "1" * 5000 + "\n")
    assert "invalid YAML" in load_error(path)
