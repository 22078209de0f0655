"""Inputs (files, folders, globs) and where outputs go."""

from pathlib import Path

import pytest

from imgedit.errors import UsageError
from imgedit.inputs import InputFile, expand_inputs, output_path


@pytest.fixture
def tree(tmp_path):
    for rel in ["a.jpg", "b.png", "b.mask.png", "notes.txt", "sub/c.png", "sub/deep/d.tif", ".hidden.png"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def names(items):
    return [str(i.relative) for i in items]


def test_folder_flat_and_recursive(tree):
    assert names(expand_inputs([str(tree)])) == ["a.jpg", "b.png"]
    assert names(expand_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png", "sub/deep/d.tif"]


def test_files_and_globs_without_duplicates(tree):
    (tree / "notes.txt").write_text("not a photo")
    items = expand_inputs([str(tree / "a.jpg"), str(tree / "*.png"), str(tree / "a.jpg"), str(tree / "*")])
    # a glob, like a folder, takes images only: not the sidecar mask, not the notes
    assert [i.path.name for i in items] == ["a.jpg", "b.png"]


def test_missing_and_empty(tree):
    with pytest.raises(UsageError, match="no such file"):
        expand_inputs([str(tree / "zzz.jpg")])
    with pytest.raises(UsageError, match="no files match"):
        expand_inputs([str(tree / "*.webp")])
    (tree / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        expand_inputs([str(tree / "empty")])


def test_output_paths():
    item = InputFile(Path("/in/sub/x.png"), Path("/in"))
    assert output_path(item, output=None, single=True, op_label="denoise", ext="png") == Path("/in/sub/x.denoise.png")
    assert output_path(item, output=Path("/out"), single=False, op_label="d", ext="jpg") == Path("/out/sub/x.jpg")
    assert output_path(item, output=Path("/out/y.png"), single=True, op_label="d", ext="png") == Path("/out/y.png")
    assert output_path(item, output=Path("/o"), single=False, op_label="d", ext="png", template="{stem}.{op}.{ext}") == Path(
        "/o/sub/x.d.png"
    )
    with pytest.raises(UsageError, match="template"):
        output_path(item, output=None, single=True, op_label="d", ext="png", template="{nope}")


@pytest.mark.parametrize(
    "template,message",
    [
        ("{stem.upper}.png", "{stem.upper} is not a field"),
        ("{stem[0]}.png", "{stem[0]} is not a field"),
        ("{stem!r}.png", "{stem!r} is not a field"),
        ("{stem:>40}.png", "{stem:>40} is not a field"),
        ("{}.png", "{} is not a field"),
        ("{stem", "expected '}'"),
        ("../{stem}.png", "must stay inside"),
        ("/tmp/{stem}.png", "must stay inside"),
    ],
)
def test_name_templates_are_plain_fields_inside_the_folder(template, message):
    from imgedit.inputs import check_name_template

    with pytest.raises(UsageError) as info:
        check_name_template(template)
    assert message in str(info.value)
    check_name_template("sub/{stem}.{srcext}.{op}.{ext}")  # a sub-folder and every field are fine
