"""What an install gets: every package of the tree, the shipped weights with
their cards (and not the training checkpoint kept beside them), and a
`imgedit models` that fails when weights are missing."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imgedit import models, registry

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# These check this tree's packaging, with imgedit and its weights taken from it
# (an editable install, as .ci/run makes): an sdist's tests run against an
# installed wheel (a packager's check) have no such tree to check.
if not (ROOT / "pyproject.toml").is_file() or models.WEIGHTS_DIR.resolve() != (ROOT / "weights").resolve():
    pytest.skip(f"checks the packaging of the tree at {ROOT}; the weights in use are {models.WEIGHTS_DIR}'s",
                allow_module_level=True)
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _packages_in_tree() -> set[str]:
    found = set()
    for base in (ROOT, ROOT / "plugins"):
        for init in base.glob("imgedit*/**/__init__.py"):
            found.add(".".join(init.parent.relative_to(base).parts))
    return found


def _shipped_files() -> list[Path]:
    return [path for spec in registry.get_registry().models.values() for path in (spec.weights, spec.card_path)]


def test_the_package_list_names_every_package_in_the_tree():
    assert set(SETUPTOOLS["packages"]) == _packages_in_tree() | {"imgedit_weights"}
    assert SETUPTOOLS["package-dir"]["imgedit_weights"] == "weights"


def test_package_data_takes_every_shipped_model_and_card_and_leaves_the_checkpoint():
    include = SETUPTOOLS["package-data"]["imgedit_weights"]
    exclude = SETUPTOOLS["exclude-package-data"]["imgedit_weights"]
    weights = ROOT / "weights"

    def packaged(path: Path) -> bool:
        name = path.relative_to(weights).as_posix()
        return any(fnmatch.fnmatch(name, p) for p in include) and not any(fnmatch.fnmatch(name, p) for p in exclude)

    shipped = _shipped_files()
    assert shipped and all(packaged(path) for path in shipped)
    checkpoints = list(weights.glob("*/*.checkpoint.*"))
    assert all(not packaged(path) for path in checkpoints)


def test_installed_weights_are_found_in_the_imgedit_weights_package_beside_imgedit(tmp_path):
    site = tmp_path / "site-packages"  # a wheel's layout: imgedit/ and imgedit_weights/ side by side
    (site / "imgedit_weights" / "imgedit_vae").mkdir(parents=True)
    assert models._installed_weights_dir(site) == site / "imgedit_weights"
    (tmp_path / "checkout" / "weights").mkdir(parents=True)  # a checkout's
    assert models._installed_weights_dir(tmp_path / "checkout") == tmp_path / "checkout" / "weights"
    (tmp_path / "checkout" / "weights" / "imgedit_vae").mkdir()  # a user's folder of that name at a checkout's top
    (tmp_path / "checkout" / "imgedit_weights").mkdir()
    assert models._installed_weights_dir(tmp_path / "checkout") == tmp_path / "checkout" / "weights"
    (site / "weights").mkdir()  # a project's own weights/ beside a 'pip install --target': not ours
    assert models._installed_weights_dir(site) == site / "imgedit_weights"


def test_a_folder_named_imgedit_weights_in_the_current_folder_does_not_hide_the_shipped_ones(tmp_path, monkeypatch):
    # a namespace package: 'mkdir imgedit_weights && python -m imgedit models' had 10 of 10 models fail
    shipped = models._installed_weights_dir()
    (tmp_path / "imgedit_weights" / "mine").mkdir(parents=True)  # even one of weights (a user's own)
    (tmp_path / "imgedit_weights" / "mine" / "m.safetensors").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert models._installed_weights_dir() == shipped


def test_a_checkout_without_an_install_uses_its_weights_folder(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert models._installed_weights_dir() == ROOT / "weights"


def test_models_fails_when_the_shipped_weights_are_missing(invoke, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGEDIT_WEIGHTS", str(tmp_path / "empty"))
    registry.reset()
    try:
        result = invoke("models")
        assert result.exit_code == 1
        assert "NOT VERIFIED: missing file" in result.output
        assert "models do not verify: " in result.stderr and "mosaic" in result.stderr
        as_json = invoke("models", "--json")
        assert as_json.exit_code == 1
        assert {row["name"]: row["verified"] for row in json.loads(as_json.stdout)}["mosaic"] is False
    finally:
        registry.reset()


def test_models_succeeds_when_every_model_verifies(invoke):
    result = invoke("models")
    assert result.exit_code == 0, result.output
    assert "NOT VERIFIED" not in result.output


# What a build from the checkout must not see (a stale build/lib would put a
# deleted module back into the wheel) and must not write into.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "runs", ".pytest_cache")


def test_the_wheel_carries_the_weights_and_an_install_loads_them(tmp_path):
    source = tmp_path / "source"  # pip builds in the source tree (build/, *.egg-info): a copy, not the checkout
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("imgedit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for path in _shipped_files():
        assert f"imgedit_weights/{path.relative_to(ROOT / 'weights').as_posix()}" in names
    assert not [n for n in names if ".checkpoint." in n]
    assert "imgedit_vae/inpaint.py" in names and "imgedit/imageio/read.py" in names

    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    where = subprocess.run(
        [sys.executable, "-c", "import imgedit, imgedit.models as m; print(imgedit.__file__); print(m.WEIGHTS_DIR)"],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""})
    assert where.returncode == 0, where.stderr[-2000:]
    module, weights = where.stdout.split()
    assert Path(module).is_relative_to(target) and Path(weights) == target / "imgedit_weights"
