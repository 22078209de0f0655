"""Model names given to the train verbs (``--name``): one shared check
(:func:`imgedit.catalog.check_model_name`) refuses, before any training, a
name that would write outside the weights folder, hide the model, make
``x.safetensors.safetensors`` or be hidden by a shipped model."""

import pytest

from imgedit.errors import UsageError

# Tiny settings and a shipped model's name for each train verb that takes --name.
VERBS = {
    "gan": (["--size", 16, "--batch", 2], "faces64-gan"),
    "interp-vae": (["--size", 16, "--z-dim", 8, "--batch", 2], "faces64-vae"),
    "style": (["--patch", 16, "--style-size", 32, "--batch", 1, "--preview-every", 1, "--no-skips"], "mosaic"),
}
BAD_NAMES = {
    "../evil": "cannot hold '/'",
    "a/b": "cannot hold '/'",
    "a\\b": "cannot hold '/' or '\\'",
    ".hidden": "cannot begin with '.'",
    "..": "cannot begin with '.'",
    "x.safetensors": "give the name without .safetensors (--name x)",
    "": "--name is empty",
    "  ": "--name is empty",
}


def _train_args(verb, data):
    args = ["train", verb, "--data", data, *VERBS[verb][0], "--steps", 1, "-q"]
    return args + (["--style-image", data / "0.png"] if verb == "style" else [])


@pytest.mark.parametrize("verb", sorted(VERBS))
@pytest.mark.parametrize("name", sorted(BAD_NAMES))
def test_a_name_no_model_can_have_is_refused_before_training(verb, name, tmp_path, invoke, user_home):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    result = invoke(*_train_args(verb, data), "--out", tmp_path / "run", "--name", name)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert BAD_NAMES[name] in result.output
    assert not (tmp_path / "run").exists()  # no step was spent
    assert not list(user_home.rglob("*.safetensors")) and not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_shipped_models_name_is_refused_unless_exported_elsewhere(verb, tmp_path, invoke, user_home):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    shipped = VERBS[verb][1]
    result = invoke(*_train_args(verb, data), "--out", tmp_path / "run", "--name", shipped)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert f"--name {shipped} is a shipped" in result.output and not (tmp_path / "run").exists()
    # the shipped weights retrained on purpose (README): --export says where
    export = tmp_path / "shipped" / f"{shipped}.safetensors"
    result = invoke(*_train_args(verb, data), "--out", tmp_path / "run", "--name", shipped, "--export", export)
    assert result.exit_code == 0, result.output
    assert export.is_file()


@pytest.mark.parametrize("verb, other", [("gan", "faces64-vae"), ("interp-vae", "mosaic"), ("style", "faces64-gan")])
def test_another_plugins_shipped_model_name_is_refused_too(verb, other, tmp_path, invoke, user_home):
    # models are found by name across plugins: 'sample --model faces64-vae' would take the shipped VAE
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    result = invoke(*_train_args(verb, data), "--out", tmp_path / "run", "--name", other)
    assert result.exit_code == 2 and f"--name {other} is a shipped model's name" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_good_name_is_written_in_the_weights_folder(verb, tmp_path, invoke, user_home):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=8)
    result = invoke(*_train_args(verb, data), "--out", tmp_path / "run", "--name", "my model.v2")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (user_home / "weights").rglob("*.safetensors")] == ["my model.v2.safetensors"]


def test_a_name_is_checked_alike_for_every_kind():
    from imgedit.catalog import check_model_name

    check_model_name("my-gan", shipped=("faces64-gan",))
    with pytest.raises(UsageError, match="is a shipped model's name"):
        check_model_name("mosaic", shipped=("mosaic",), what="style")
    with pytest.raises(UsageError, match=r"^--name Mosaic differs from the shipped model mosaic only in case"):
        check_model_name("Mosaic", shipped=("mosaic",), what="style")  # one file on macOS and Windows
    with pytest.raises(UsageError, match=r"^the painting's name \.x: a name cannot begin"):
        check_model_name(".x", said="the painting's name .x")
    with pytest.raises(UsageError, match=r"--name x\.SafeTensors: give the name without"):
        check_model_name("x.SafeTensors")


def test_a_style_named_after_a_painting_with_a_bad_name_is_refused(tmp_path, invoke, user_home):
    from conftest import smooth_images

    data = smooth_images(tmp_path / "data", count=4)
    painting = tmp_path / "x.safetensors.png"  # would be named x.safetensors
    painting.write_bytes((data / "0.png").read_bytes())
    result = invoke("train", "style", "--data", data, *VERBS["style"][0], "--steps", 1, "-q", "--style-image", painting,
                    "--out", tmp_path / "run")
    assert result.exit_code == 2 and "the style's name x.safetensors (after its painting x.safetensors.png; give --name)" in result.output
    assert not (tmp_path / "run").exists()
