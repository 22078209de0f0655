import os
import subprocess
import sys
import textwrap

# Like llm and datasette: skip third-party entry points while our own suite
# runs, so a developer's installed plugins cannot change the results.
sys._called_from_test = True  # type: ignore[attr-defined]

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture
def device():
    """The device tests run on: CPU here, a GPU where IMGEDIT_TEST_DEVICE says so."""
    import torch

    return torch.device(os.environ.get("IMGEDIT_TEST_DEVICE", "cpu"))


def smooth_rgb(height=48, width=64, seed=0):
    """A smooth colour test image (H, W, 3) uint8: gradients and a soft blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = x / max(width - 1, 1)
    g = y / max(height - 1, 1)
    b = np.exp(-((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) / (0.1 * width * height))
    rgb = np.stack([r, g, 0.2 + 0.6 * b], axis=-1) + rng.normal(0, 0.002, (height, width, 3))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def photo(tmp_path):
    """A small PNG photo in a fresh folder."""
    path = tmp_path / "photo.png"
    Image.fromarray(smooth_rgb()).save(path)
    return path


@pytest.fixture
def cli_runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(cli_runner):
    """Run the imgedit CLI in-process; returns click's Result."""
    from imgedit.cli import cli

    def run(*args, **kwargs):
        return cli_runner.invoke(cli, [str(a) for a in args], **kwargs)

    return run


def fake_distribution(site, name, module_source):
    """Install a one-module plugin package by hand: the files pip would write."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[imgedit]\n{name} = {name}\n")


def run_imgedit(*args, env=None, cwd=None, **kwargs):
    """Run imgedit in a fresh interpreter, as a user's shell would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "imgedit", *map(str, args)], capture_output=True, text=True, env=full_env, cwd=cwd, **kwargs
    )
