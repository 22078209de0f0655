"""Weights: save, verify, load, list; a tampered file is refused."""

import json
from pathlib import Path

import pytest
import torch

from imgedit import registry
from imgedit.errors import WeightsError
from imgedit.models import ModelSpec, load_weights, save_weights, user_models, verify


def _save(path):
    tensors = {"conv.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4)}
    return tensors, save_weights(tensors, path, {"architecture": "test", "description": "tiny"})


def test_save_and_load_round_trip(tmp_path):
    tensors, spec = _save(tmp_path / "m.safetensors")
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["architecture"] == "test" and len(card["sha256"]) == 64
    assert verify(spec) == (True, "ok")
    loaded = load_weights(spec)
    assert torch.equal(loaded["conv.weight"], tensors["conv.weight"])
    assert not list(tmp_path.glob("*.tmp"))


def test_tampered_weights_refused(tmp_path):
    _, spec = _save(tmp_path / "m.safetensors")
    data = bytearray(spec.weights.read_bytes())
    data[-1] ^= 0xFF
    spec.weights.write_bytes(bytes(data))
    ok, reason = verify(spec)
    assert not ok and "sha256 mismatch" in reason
    with pytest.raises(WeightsError, match="m.safetensors"):
        load_weights(spec)


def test_missing_card_and_file(tmp_path):
    spec = ModelSpec("ghost", tmp_path / "ghost.safetensors")
    assert verify(spec)[0] is False
    with pytest.raises(WeightsError, match="missing file"):
        load_weights(spec)


def test_weights_copied_without_their_card_say_the_card_is_missing(tmp_path):
    _save(tmp_path / "e3.safetensors")
    copy = tmp_path / "nocard.safetensors"
    copy.write_bytes((tmp_path / "e3.safetensors").read_bytes())  # cp e3.safetensors nocard.safetensors
    ok, reason = verify(ModelSpec("nocard", copy))
    assert not ok
    assert reason == f"{tmp_path / 'nocard.json'}: model card not found beside nocard.safetensors (copy it with the weights)"
    with pytest.raises(WeightsError, match="model card not found beside nocard.safetensors"):
        load_weights(ModelSpec("nocard", copy))
    (tmp_path / "nocard.json").write_text("{}")  # a card there, but without its sha256
    assert verify(ModelSpec("nocard", copy)) == (False, f"no sha256 in model card {tmp_path / 'nocard.json'}")


def test_user_models_listed(invoke, user_home):
    _save(user_home / "weights" / "style" / "mine.safetensors")
    assert [m.name for m in user_models()] == ["mine"]
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["mine"]["verified"] is True and rows["mine"]["size_bytes"] > 0
    (user_home / "weights" / "style" / "mine.safetensors").write_bytes(b"tampered")
    registry.reset()
    text = invoke("models").output
    assert "mine" in text and "NOT VERIFIED" in text


def test_a_model_trained_under_a_shipped_name_is_listed_as_yours(invoke, user_home):
    mine = user_home / "weights" / "imgedit_vae" / "denoise-vae.safetensors"  # train denoise's default export
    _save(mine)
    rows = json.loads(invoke("models", "--json").stdout)
    shipped = [r for r in rows if r["name"] == "denoise-vae" and not r.get("shadowed_by_shipped")]
    yours = [r for r in rows if r.get("shadowed_by_shipped")]
    assert len(shipped) == 1 and shipped[0]["weights"] != str(mine)
    assert [r["weights"] for r in yours] == [str(mine)] and yours[0]["verified"] is True
    assert "(yours; the shipped model of this name is the default" in invoke("models").output


def test_models_remove_deletes_only_a_model_of_yours_after_asking(invoke, user_home):
    mine = user_home / "weights" / "imgedit_style" / "mine.safetensors"
    other = user_home / "weights" / "imgedit_gan" / "other.safetensors"
    _save(mine), _save(other)
    result = invoke("models", "remove", "mine", input="n\n")  # asked, and told no
    assert result.exit_code == 1 and "Remove 1 model?" in result.output and mine.is_file()
    result = invoke("models", "remove", "mine", "mosaic", "--yes")  # one shipped: nothing is removed
    assert result.exit_code == 2 and mine.is_file(), result.output
    assert "Error: mosaic is a shipped model" in result.output and "only models you trained" in result.output
    result = invoke("models", "remove", "mien", "-y")
    assert result.exit_code == 2 and "no model of yours is named mien; did you mean mine? (yours: mine, other)" in result.output, result.output
    result = invoke("models", "remove", "mine", input="y\n")
    assert result.exit_code == 0 and f"removed mine ({mine})" in result.output, result.output
    assert not mine.exists() and not mine.with_suffix(".json").exists()
    assert other.is_file() and other.with_suffix(".json").is_file()
    registry.reset()
    assert [m.name for m in user_models()] == ["other"]
    assert invoke("models", "--json").exit_code == 0  # the listing is the group's own command still


def test_models_remove_takes_a_file_where_two_of_your_models_share_a_name(invoke, user_home):
    gan = user_home / "weights" / "imgedit_gan" / "toy.safetensors"
    style = user_home / "weights" / "imgedit_style" / "toy.safetensors"
    _save(gan), _save(style)
    result = invoke("models", "remove", "toy", "-y")
    assert result.exit_code == 2 and "2 of your models are named toy: give the file" in result.output, result.output
    assert gan.is_file() and style.is_file()
    result = invoke("models", "remove", style, "-y")
    assert result.exit_code == 0 and gan.is_file() and not style.exists(), result.output


def test_weights_of_another_architecture_are_named_before_loading(tmp_path):
    from imgedit.models import load_model

    _, spec = _save(tmp_path / "m.safetensors")  # its card says architecture "test", description "tiny"
    built = []
    with pytest.raises(WeightsError, match=r"model 'm' is not a GAN generator: its card says test \(tiny\)"):
        load_model(spec, built.append, architecture="pkg.model.Generator", kind="a GAN generator")
    assert built == []  # refused before any network is built from a config that is not its own
    card = json.loads(spec.card_path.read_text())
    del card["architecture"]
    spec.card_path.write_text(json.dumps({**card, "model_config": {"width": 1}}))
    with pytest.raises(WeightsError, match="weights do not fit"):  # no architecture named: the weights are tried
        load_model(spec, lambda config: torch.nn.Linear(1, 1), architecture="pkg.model.Generator")


def test_a_file_that_is_not_a_model_is_a_usage_error_wherever_weights_are_given(tmp_path, invoke, photo):
    from imgedit.catalog import spec_for_file
    from imgedit.errors import UsageError

    _, spec = _save(tmp_path / "m.safetensors")
    assert spec_for_file(spec.weights).weights == spec.weights
    assert spec_for_file(tmp_path / "ghost.safetensors").name == "ghost"  # missing: said when it loads
    renamed = tmp_path / "photo.safetensors"
    renamed.write_bytes(photo.read_bytes())
    for path in (photo, renamed):  # by its content, not its name
        with pytest.raises(UsageError, match=f"{path} is not a .safetensors model file"):
            spec_for_file(path)
    # every option that takes weights refuses it before any image is read, in one line, with exit code 2
    for args in (("denoise", photo, "--weights", photo), ("inpaint", photo, "--mask", photo, "--weights", photo),
                 ("style", photo, "--style", photo), ("sample", "--model", photo, "-n", 1),
                 ("interpolate", "--seeds", "1,2", "--model", photo),
                 ("train", "denoise", "--data", photo.parent, "--init", photo, "--out", tmp_path / "run")):
        result = invoke(*args, "-o", tmp_path / "out") if args[0] != "train" else invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines() == [result.output.strip()], result.output
        assert result.output.strip().endswith(f"{photo} is not a .safetensors model file"), result.output
        assert "sha256" not in result.output and not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_weights_of_a_name_near_the_name_limit_are_written(tmp_path):
    import torch

    from imgedit.models import save_weights, sha256_file

    path = tmp_path / ("w" * 240 + ".safetensors")  # 252 bytes: legal, though a ".NAME.XXXX.tmp" beside it is not
    spec = save_weights({"a": torch.ones(3)}, path, {"model_config": {}})
    card = json.loads(path.with_suffix(".json").read_text())
    assert spec.weights == path and card["sha256"] == sha256_file(path) and card["size_bytes"] == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])


def test_loading_a_model_leaves_the_callers_random_state_alone(tmp_path):
    from imgedit.models import load_model

    net = torch.nn.Linear(4, 4)
    spec = save_weights(net.state_dict(), tmp_path / "lin.safetensors", {"model_config": {"features": 4}})
    torch.manual_seed(7)
    before = torch.get_rng_state()
    loaded = load_model(spec, lambda config: torch.nn.Linear(config["features"], config["features"]))
    assert torch.equal(torch.get_rng_state(), before)  # the random init, overwritten by the weights, drew nothing
    assert torch.equal(loaded.weight, net.weight)


def test_loaded_models_are_kept_per_version_of_their_file_and_the_fewest_recently_used_dropped(tmp_path):
    import os

    from imgedit.models import LoadedModels

    _, spec = _save(tmp_path / "m.safetensors")
    loads = []

    def load():
        loads.append(1)
        return load_weights(spec)["conv.weight"].clone()

    models = LoadedModels(keep=2)
    first = models.get(spec.weights, ("cpu",), load)
    assert models.get(spec.weights, ("cpu",), load) is first and len(loads) == 1  # kept
    assert models.get(spec.weights, ("meta",), load) is not first and len(loads) == 2  # per extra key
    # other weights written at the same path (a service's model, retrained): loaded again, not served stale
    save_weights({"conv.weight": torch.zeros(3, 4)}, spec.weights, {"architecture": "test", "description": "tiny"})
    info = os.stat(spec.weights)
    os.utime(spec.weights, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # a coarse clock's same tick
    assert torch.equal(models.get(spec.weights, ("cpu",), load), torch.zeros(3, 4)) and len(loads) == 3
    # at most two kept, the least recently used dropped first
    models.clear()
    for extra in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        models.get(spec.weights, (extra,), load)
    assert len(loads) == 6
    models.get(spec.weights, ("a",), load)
    assert len(loads) == 6
    models.get(spec.weights, ("b",), load)
    assert len(loads) == 7


# Cards that are there but cannot be used: each must cost only its own model (security audit, finding 6).
BAD_CARDS = {
    "a list": (b"[1]", "is not a JSON object (it holds a list)"),
    "a string": (b'"sha256"', "is not a JSON object (it holds a str)"),
    "nested too deeply": (b"[" * 200_000 + b"]" * 200_000, "is nested too deeply to read"),
    "not JSON": (b"{sha256: 1", "is not valid JSON (Expecting property name"),
    "not text": (b"\xff\xfe\x00{", "is not valid JSON ("),
}


def _bad_card(path, content):
    """Weights that verify, beside a card replaced by ``content``."""
    _, spec = _save(path)
    spec.card_path.write_bytes(content)
    return spec


@pytest.mark.parametrize("kind", sorted(BAD_CARDS))
def test_an_unreadable_card_is_a_model_that_does_not_verify_saying_why(kind, tmp_path):
    content, said = BAD_CARDS[kind]
    spec = _bad_card(tmp_path / "evil.safetensors", content)
    assert spec.card() == {}  # every reader does card.get(...)
    ok, reason = verify(spec)
    assert not ok and reason.startswith(f"model card {spec.card_path} {said}"), reason
    assert len(reason.splitlines()) == 1
    with pytest.raises(WeightsError, match=f"model 'evil': model card .*evil.json {said[:12]}"):
        load_weights(spec)


def test_a_card_larger_than_a_card_can_be_is_not_read(tmp_path, monkeypatch):
    from imgedit import models

    monkeypatch.setattr(models, "CARD_MAX_BYTES", 2 << 20)  # 2 MB here: the test writes less
    _, spec = _save(tmp_path / "big.safetensors")
    card = json.loads(spec.card_path.read_text())
    spec.card_path.write_text(json.dumps({**card, "padding": "x" * (2 << 20)}))  # right sha256, but 2 MB of card
    assert spec.card() == {}
    assert verify(spec) == (False, f"model card {spec.card_path} is larger than 2 MB: not a model card")
    spec.card_path.write_text(json.dumps({**card, "padding": "x" * (1 << 20)}))  # under the cap: a card
    assert verify(spec) == (True, "ok")


def test_a_card_whose_fields_have_odd_types_does_not_verify_or_crash_the_listing(tmp_path, user_home):
    _, spec = _save(tmp_path / "m.safetensors")
    spec.card_path.write_text(json.dumps({"sha256": 5}))
    assert verify(spec) == (False, f"the sha256 in model card {spec.card_path} is not a string")
    _save(user_home / "weights" / "x" / "odd.safetensors")
    card = user_home / "weights" / "x" / "odd.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "description": ["not", "text"]}))
    assert [(m.name, m.description) for m in user_models()] == [("odd", "")]


@pytest.mark.parametrize("kind", sorted(BAD_CARDS))
def test_a_user_model_with_an_unreadable_card_is_one_row_and_the_others_work(kind, invoke, user_home, photo, tmp_path):
    content, said = BAD_CARDS[kind]
    _save(user_home / "weights" / "x" / "mine.safetensors")
    evil = _bad_card(user_home / "weights" / "x" / "evil.safetensors", content)
    assert [(m.name, m.extra) for m in user_models()][0] == ("evil", {})
    result = invoke("models", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    rows = json.loads(result.stdout)
    evil_rows = [row for row in rows if row["name"] == "evil"]
    assert len(evil_rows) == 1 and evil_rows[0]["verified"] is False
    assert evil_rows[0]["status"].startswith(f"model card {evil.card_path} {said}")
    assert all(row["verified"] for row in rows if row["name"] != "evil"), rows  # yours and the shipped ones
    assert {"mine", "denoise-vae", "mosaic", "faces64-gan"} <= {row["name"] for row in rows}
    assert result.stderr.strip() == f"Error: 1 of {len(rows)} models do not verify: evil"
    text = invoke("models").output
    assert f"evil (user) {evil.weights}" in text and f"NOT VERIFIED: model card {evil.card_path}" in text
    result = invoke("denoise", photo, "-o", tmp_path / "out.png")  # the registry was built past it
    assert result.exit_code == 0 and (tmp_path / "out.png").is_file(), result.output


def test_weights_given_with_an_unreadable_card_are_refused_in_one_line_naming_it(tmp_path, invoke, photo):
    from imgedit.catalog import spec_for_file
    from imgedit.errors import UsageError

    for kind, (content, said) in BAD_CARDS.items():
        spec = _bad_card(tmp_path / kind / "evil.safetensors", content)
        with pytest.raises(UsageError, match=f"^model card .*evil.json {said[:12]}"):
            spec_for_file(spec.weights)
    deep = tmp_path / "nested too deeply" / "evil.safetensors"
    for args in (("style", photo, "--style", deep), ("sample", "--model", deep, "-n", 1),
                 ("interpolate", "--seeds", "1,2", "--model", deep), ("denoise", photo, "--weights", deep)):
        result = invoke(*args, "-o", tmp_path / "out")
        assert result.exit_code == 2 and "RecursionError" not in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert result.output.strip().endswith(f"model card {deep.with_suffix('.json')} is nested too deeply to read")
        assert not (tmp_path / "out").exists()


def test_a_bad_user_model_leaves_every_plugins_verbs_in_place(tmp_path, photo):
    # a fresh interpreter, as a user's shell: the verbs are made while the registry is built
    from conftest import run_imgedit

    _save(tmp_path / "weights" / "x" / "mine.safetensors")
    _bad_card(tmp_path / "weights" / "x" / "evil.safetensors", b"[1]")
    _bad_card(tmp_path / "weights" / "y" / "deep.safetensors", b"[" * 200_000 + b"]" * 200_000)
    env = {"IMGEDIT_HOME": str(tmp_path)}
    result = run_imgedit("--help", env=env)
    assert result.returncode == 0, result.stderr
    for verb in ("denoise", "inpaint", "style", "sample", "interpolate"):
        assert f"  {verb} " in result.stdout, (verb, result.stdout)
    result = run_imgedit("plugins", "--json", env=env)
    assert result.returncode == 0 and all(p["status"] == "ok" for p in json.loads(result.stdout)), result.stdout
    result = run_imgedit("models", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("models do not verify: evil, deep"), result.stderr


def test_a_failure_while_reading_one_user_model_is_kept_to_that_model(user_home, monkeypatch):
    from imgedit.registry import get_registry

    _save(user_home / "weights" / "x" / "mine.safetensors")
    _save(user_home / "weights" / "x" / "odd.safetensors")
    read_card = ModelSpec.read_card

    def failing(spec):
        if spec.name == "odd":
            raise RuntimeError("a bug met reading it")
        return read_card(spec)

    monkeypatch.setattr(ModelSpec, "read_card", failing)
    assert [m.name for m in user_models()] == ["mine"]
    registry.reset()
    assert "mine" in get_registry().models and "denoise-vae" in get_registry().models


def test_in_site_packages_tells_an_installed_file_from_ones_own(tmp_path):
    import sysconfig

    from imgedit.models import in_site_packages

    assert in_site_packages(Path(sysconfig.get_paths()["purelib"]) / "imgedit_weights" / "x.json")
    assert not in_site_packages(tmp_path / "weights" / "x.json")
    assert not in_site_packages(Path(__file__))  # a checkout (this one is installed editable, or not at all)


def test_recording_metrics_keeps_an_unreadable_card(tmp_path):
    from imgedit.models import record_metrics

    spec = _bad_card(tmp_path / "evil.safetensors", b"[1]")
    with pytest.raises(WeightsError, match="is not a JSON object"):
        record_metrics(spec, "eval", {"n": 1})
    assert spec.card_path.read_bytes() == b"[1]"  # not replaced by a card of metrics alone


def test_safetensors_metadata_of_a_header_that_is_not_an_object_or_too_large_is_empty(tmp_path):
    from imgedit.models import SAFETENSORS_HEADER_MAX, safetensors_metadata

    def header(name, text, declared=None):
        data = text.encode() if isinstance(text, str) else text
        path = tmp_path / name
        path.write_bytes((len(data) if declared is None else declared).to_bytes(8, "little") + data)
        return safetensors_metadata(path)

    assert header("list", "[1]") == {}
    assert header("deep", "[" * 200_000 + "]" * 200_000) == {}  # was a RecursionError
    assert header("deep-object", '{"__metadata__": ' + "[" * 200_000 + "]" * 200_000 + "}") == {}
    assert header("metadata-list", '{"__metadata__": [1]}') == {}
    assert header("odd-values", '{"__metadata__": {"structure": 5, "x": "y"}}') == {"x": "y"}  # str -> str only
    assert header("claims-more", "{}", declared=90_000_000) == {}  # not read: the file does not hold it
    big = '{"__metadata__": {"x": "y"}, "pad": "' + "x" * SAFETENSORS_HEADER_MAX + '"}'
    assert header("huge", big) == {}
    assert header("fine", '{"__metadata__": {"x": "y"}}') == {"x": "y"}


def test_a_checkpoint_whose_record_is_nested_too_deeply_is_still_named_a_checkpoint(tmp_path):
    from imgedit.catalog import spec_for_file
    from imgedit.errors import UsageError

    for name, metadata in (("deep", {"structure": "[" * 200_000 + "]" * 200_000}),
                           ("odd", {"structure": "{}", "provenance": json.dumps({"export": [1]})})):
        data = json.dumps({"__metadata__": metadata}).encode()
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(len(data).to_bytes(8, "little") + data)
        with pytest.raises(UsageError, match="is a training checkpoint"):
            spec_for_file(path)
