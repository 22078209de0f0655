import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

# Like llm and datasette: skip third-party entry points while our own suite
# runs, so a developer's installed plugins cannot change the results.
sys._called_from_test = True  # type: ignore[attr-defined]

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _user_home_of_the_test_run(tmp_path_factory):
    """Weights that a test trains without --export go to a throwaway user
    folder, never to the developer's own (~/.local/share/imgedit)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGEDIT_HOME", str(tmp_path_factory.mktemp("imgedit-home")))
        yield


@pytest.fixture(autouse=True)
def _each_test_hears_every_warning(monkeypatch):
    """A warning said once per process (imgedit.operations.warn_once) is
    said once per test: the CLI's one process per command, as each test
    is; otherwise a test would miss it where an earlier one said it."""
    from imgedit import operations

    monkeypatch.setattr(operations, "_warned", set())


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
def test_plugin():
    """Register throw-away plugin modules; unregister them afterwards."""
    from imgedit import hookimpl
    from imgedit.plugins import register_plugin, unregister_plugin

    names = []

    def add(name, **hooks):
        module = types.ModuleType(name)
        for hook_name, fn in hooks.items():
            setattr(module, hook_name, hookimpl(fn))
        register_plugin(module, name)
        names.append(name)
        return module

    yield add
    for name in names:
        unregister_plugin(name)


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    """A fresh user weights folder (``IMGEDIT_HOME``), with the registry rebuilt around it."""
    from imgedit import registry

    monkeypatch.setenv("IMGEDIT_HOME", str(tmp_path))
    registry.reset()
    yield tmp_path
    registry.reset()


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


def interruptible():
    """``preexec_fn`` for a child that stands in for a command typed at a
    terminal: Ctrl-C (SIGINT) at its default, even when the tests themselves
    run in the background, where the shell ignores SIGINT for its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_outputs(proc, folder, count, timeout=60):
    """Until ``count`` PNGs are in ``folder``, while ``proc`` (a batch run in
    a child process) writes them; fails at once, with the child's stderr, if
    the child exits first (a crash, an import error)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exited = proc.poll() is not None  # before counting: a child that finished may have written them all
        if folder.is_dir() and len(list(folder.glob("*.png"))) >= count:
            return
        if exited:
            _, stderr = proc.communicate()
            raise AssertionError(f"the batch exited ({proc.returncode}) before writing {count} outputs:\n{stderr}")
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} outputs in {timeout} s")


@contextlib.contextmanager
def reaped(proc, group=False):
    """The block, then ``proc`` killed if a failed assertion left it running
    (with its process group, ``group``: a Ray run and the Ray it started),
    waited for and its pipes closed."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


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


# --- the GAN plugin -------------------------------------------------------------------

TINY_GAN = {"image_size": 16, "z_dim": 16, "g_width": 8, "d_width": 8}


def smooth_images(folder, count=3, height=72, width=80):
    """Small training images for the VAEs: ``count`` smooth colour PNGs (see :func:`smooth_rgb`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(smooth_rgb(height, width, seed=i)).save(folder / f"{i}.png")
    return folder


def trained_tiny_denoiser(invoke, data, path, run_dir, bridge=True):
    """A tiny denoiser trained 2 steps by ``imgedit train denoise`` and saved
    at ``path`` with its card; its head is then randomised and saved again,
    since two steps barely move it from the identity. ``bridge=False`` saves
    it as weights made before the bridge existed. Returns the model."""
    import json

    import torch

    from imgedit.models import save_weights
    from imgedit_vae.denoise import load_denoiser
    from imgedit_vae.model import ConditionalVAE, VAEConfig
    from imgedit_vae.weight_surgery import NEW_PATHS

    result = invoke("train", "denoise", "--data", data, "--steps", "2", "--batch", "2", "--patch", "32",
                    "--widths", "8,16,16,16", "--out", run_dir, "--export", path, "-q")
    assert result.exit_code == 0, result.output
    model = load_denoiser("cpu", path)
    torch.nn.init.normal_(model.decoder.head.weight, std=0.01)
    card, tensors = json.loads(path.with_suffix(".json").read_text()), model.state_dict()
    if not bridge:
        tensors = {k: v for k, v in tensors.items() if not k.startswith(NEW_PATHS)}
        card["model_config"]["bridge"] = False
        model = ConditionalVAE(VAEConfig.from_dict(card["model_config"])).eval()
        model.load_state_dict(tensors)
    save_weights(tensors, path, card)
    return model


def blob_images(folder, count=12, size=24, seed=0):
    """Small training images: a soft blob of a random colour at a random place."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(count):
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (size * 0.8))[..., None]
        rgb = 0.2 + 0.7 * blob * rng.uniform(0.2, 1.0, 3)
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def save_tiny_gan(path, seed=0, **card):
    """An untrained tiny generator saved as a model (weights + card); returns its ModelSpec."""
    import torch

    from imgedit.models import save_weights
    from imgedit_gan.model import GANConfig, Generator

    torch.manual_seed(seed)
    net = Generator(GANConfig(**TINY_GAN))
    card = {"architecture": "imgedit_gan.model.Generator", "model_config": TINY_GAN, "description": "tiny", **card}
    return save_weights(net.state_dict(), path, card)


# --- the interpolation plugin ----------------------------------------------------------

TINY_VAE = {"image_size": 16, "z_dim": 8, "width": 8, "max_width": 16, "res_levels": 1}


def save_tiny_vae(path, seed=0, **card):
    """An untrained tiny interpolation VAE saved as a model; returns its ModelSpec."""
    import torch

    from imgedit.models import save_weights
    from imgedit_interp.model import FaceVAE, FaceVAEConfig

    torch.manual_seed(seed)
    net = FaceVAE(FaceVAEConfig(**TINY_VAE))
    card = {"architecture": "imgedit_interp.model.FaceVAE", "model_config": TINY_VAE, "description": "tiny", **card}
    return save_weights(net.state_dict(), path, card)


# Runs imgedit with PIL's save sending the process a signal at the third image it writes.
_SIGNAL_AT_THE_THIRD_SAVE = """
import os, signal, sys
from PIL import Image
save, saved = Image.Image.save, []
def save_and_signal(self, *args, **kwargs):
    saved.append(1)
    if len(saved) == 3:
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
    return save(self, *args, **kwargs)
Image.Image.save = save_and_signal
from imgedit.cli import cli
cli(sys.argv[1:], prog_name="imgedit")
"""


def run_signalled_at_third_save(signal_name: str, *args) -> "subprocess.CompletedProcess":
    """``imgedit ARGS`` in a child that sends itself ``signal_name`` (SIGTERM,
    SIGINT) as it saves its third image: a kill in the middle of writing."""
    return subprocess.run([sys.executable, "-c", _SIGNAL_AT_THE_THIRD_SAVE, *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "SIGNAL": signal_name}, preexec_fn=interruptible, timeout=300)


# Tiny settings for each plugin's train verb: small enough that one step takes
# well under a second (every trainer goes through imgedit.training.train_or_resume).
TINY_TRAIN_ARGS = {
    "gan": ["--size", 16, "--batch", 2],
    "interp-vae": ["--size", 16, "--z-dim", 8, "--batch", 2],
    "style": ["--patch", 16, "--style-size", 32, "--batch", 1, "--preview-every", 1, "--no-skips"],
    "denoise": ["--patch", 32, "--widths", "8,16,16,16", "--batch", 2],
    "inpaint": ["--patch", 32, "--widths", "8,16,16,16", "--batch", 2],
}
