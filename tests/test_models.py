"""Weights: save, verify, load, list; a tampered file is refused."""

import json

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
