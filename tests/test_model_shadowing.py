"""A user's model named like a shipped one (older versions let ``train gan
--name faces64-vae`` write one into the user weights folder): any plugin's
shipped model keeps its name, whichever plugin loads first. The user's file
is listed by ``imgedit models`` as shadowed and works by its path; no
plugin is marked [error] because of it."""

import json
import shutil
from pathlib import Path

import pytest

from imgedit import registry
from imgedit.catalog import UserLatentModelSpec
from imgedit.latents import LatentModelSpec
from imgedit.models import ModelSpec, shipped_weights_dir

# (folder of the plugin that trained it, the shipped model it copies, the other plugin's shipped name it takes)
HIJACKS = {
    "gan-named-like-the-vae": ("imgedit_gan", "faces64-gan", "faces64-vae"),  # the GAN plugin loads first
    "vae-named-like-the-gan": ("imgedit_interp", "faces64-vae", "faces64-gan"),  # the interp plugin loads later
}


def _user_copy(user_home, folder, shipped, name):
    """A user model: a copy of a shipped model's weights and card under another name."""
    target = user_home / "weights" / folder / f"{name}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    source = shipped_weights_dir() / folder / f"{shipped}.safetensors"
    shutil.copyfile(source, target)
    shutil.copyfile(source.with_suffix(".json"), target.with_suffix(".json"))
    registry.reset()
    return target


@pytest.mark.parametrize("case", sorted(HIJACKS))
def test_a_shipped_latent_model_keeps_its_name_from_a_user_file(case, user_home, invoke):
    folder, copied, name = HIJACKS[case]
    mine = _user_copy(user_home, folder, copied, name)
    owner = {"faces64-gan": "imgedit_gan", "faces64-vae": "imgedit_interp"}[name]
    assert registry.get_registry().latent_models[name].plugin == owner
    plugins = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert {p: plugins[p]["errors"] for p in ("imgedit_gan", "imgedit_interp")} == {"imgedit_gan": [],
                                                                                  "imgedit_interp": []}
    assert name in plugins[owner]["latent_models"]
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(result.stdout) if r["name"] == name]
    assert [(r["weights"], bool(r.get("shadowed_by_shipped"))) for r in rows] == [
        (str(shipped_weights_dir() / owner / f"{name}.safetensors"), False), (str(mine), True)]


@pytest.mark.parametrize("case", sorted(HIJACKS))
def test_sample_and_interpolate_load_the_shipped_model_by_name_and_the_user_file_by_its_path(case, user_home):
    # both verbs resolve --model with load_latent_model_argument
    from imgedit.latents import load_latent_model_argument

    folder, copied, name = HIJACKS[case]
    mine = _user_copy(user_home, folder, copied, name)
    kinds = {"imgedit_gan": "imgedit_gan.sampler", "imgedit_interp": "imgedit_interp.latent"}
    owner = "imgedit_interp" if name == "faces64-vae" else "imgedit_gan"
    assert type(load_latent_model_argument(name, "cpu")).__module__ == kinds[owner]
    assert type(load_latent_model_argument(str(mine), "cpu")).__module__ == kinds[folder]


def _latent(name, user=False):
    if user:
        return UserLatentModelSpec(name, "yours", load=lambda device: None, weights=Path(f"/u/{name}.safetensors"))
    return LatentModelSpec(name, "shipped", load=lambda device: None)


@pytest.mark.parametrize("user_first", [True, False])
def test_the_registry_gives_the_name_to_the_shipped_latent_model_in_either_order(user_first):
    reg = registry.Registry()
    order = [("finder", _latent("x", user=True)), ("shipper", _latent("x"))]
    for plugin, spec in order if user_first else order[::-1]:
        reg.add_latent_model(plugin, spec)
    assert reg.latent_models["x"].plugin == "shipper" and not isinstance(reg.latent_models["x"], UserLatentModelSpec)
    assert reg.problems == {}


def test_only_a_latent_model_of_the_name_shadows_a_user_latent_model():
    reg = registry.Registry()
    reg.add_model("styles", ModelSpec("mosaic", Path("/s/mosaic.safetensors")))  # not a latent model: no clash
    reg.add_latent_model("finder", _latent("mosaic", user=True))
    reg.add_latent_model("finder", _latent("mine", user=True))
    reg.add_latent_model("other", _latent("mine", user=True))  # two user files of one name: the first, no problem
    assert {n: s.plugin for n, s in reg.latent_models.items()} == {"mosaic": "finder", "mine": "finder"}
    assert reg.problems == {}


def test_a_late_plugins_shipped_latent_model_wins_over_a_built_in_plugins_user_file(user_home, test_plugin, invoke):
    _user_copy(user_home, "imgedit_gan", "faces64-gan", "toy")  # found by the GAN plugin, which loads first
    test_plugin("toys", register_latent_models=lambda register: register(_latent("toy")))
    assert registry.get_registry().latent_models["toy"].plugin == "toys"
    plugins = {row["name"]: row for row in json.loads(invoke("plugins", "--json").stdout)}
    assert plugins["toys"]["status"] == plugins["imgedit_gan"]["status"] == "ok"
