"""Data-parallel training: ``imgedit train ... --nproc 2`` (torchrun, DDP on
gloo) trains the same network as one process with the same global batch."""

import json
import os

import numpy as np
import pytest
import torch
from conftest import blob_images, run_imgedit
from PIL import Image

from imgedit import distributed
from imgedit.checkpoint import load_checkpoint
from imgedit.errors import UsageError

ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return blob_images(tmp_path_factory.mktemp("blobs") / "images", count=12, size=24)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Images large enough for the denoising and inpainting VAEs (64 px)."""
    return blob_images(tmp_path_factory.mktemp("photos") / "images", count=8, size=64)


@pytest.fixture(scope="module")
def painting(tmp_path_factory):
    path = tmp_path_factory.mktemp("painting") / "stripes.png"
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[::4] = (200, 40, 30)
    stripes[:, ::6] = (20, 60, 220)
    Image.fromarray(stripes).save(path)
    return path


def train(verb, args, out, nproc, steps):
    result = run_imgedit("train", verb, *args, "--steps", steps, "--out", out, "--export", out / "w.safetensors",
                         "--nproc", nproc, "-q", env=ONE_THREAD, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_networks(a, b, kind, parts):
    one, two = load_checkpoint(a / "checkpoint.safetensors", kind), load_checkpoint(b / "checkpoint.safetensors", kind)
    assert one["step"] == two["step"]
    assert torch.equal(one["generator"], two["generator"])  # the random streams stayed in step
    for part in parts:
        for name, tensor in one[part].items():
            assert torch.allclose(tensor, two[part][name], rtol=1e-4, atol=1e-4), f"{part}.{name}"


# verb, its arguments (blobs: 24-px images; photos: 64-px ones; painting), checkpoint kind, networks
VERBS = {
    "style": ("style", lambda d: ["--style-image", d["painting"], "--data", d["blobs"], "--batch", 4, "--patch", 16,
                                  "--style-size", 32, "--preview-every", 2], "style", ["model"]),
    "denoise": ("denoise", lambda d: ["--data", d["photos"], "--batch", 4, "--patch", 32], "denoise", ["model"]),
    "inpaint": ("inpaint", lambda d: ["--data", d["photos"], "--batch", 4, "--patch", 32], "inpaint",
                ["model", "critic"]),
    "interp-vae": ("interp-vae", lambda d: ["--data", d["blobs"], "--size", 16, "--z-dim", 8, "--batch", 4], "interp-vae",
                   ["model"]),
}


@pytest.fixture(scope="module")
def inputs(data, photos, painting):
    return {"blobs": data, "photos": photos, "painting": painting}


@pytest.mark.parametrize("name", sorted(VERBS))
def test_two_processes_train_what_one_process_trains(name, inputs, tmp_path):
    verb, args, kind, parts = VERBS[name]
    train(verb, args(inputs), tmp_path / "one", nproc=1, steps=3)
    train(verb, args(inputs), tmp_path / "two", nproc=2, steps=3)
    assert_same_networks(tmp_path / "one", tmp_path / "two", kind, parts)
    # rank 0 alone logs: one record per validation, not one per process
    one = (tmp_path / "one" / "log.jsonl").read_text().splitlines()
    two = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len(one) == len(two) >= 1
    assert (tmp_path / "two" / "w.safetensors").is_file()


def test_inpaint_steps_that_skip_the_posterior_train_in_two_processes(inputs, tmp_path):
    verb, args, kind, parts = VERBS["inpaint"]
    every = [*args(inputs), "--sample-every", 2]  # steps 1 and 3 leave the posterior encoder and critic out
    train(verb, every, tmp_path / "one", nproc=1, steps=4)
    train(verb, every, tmp_path / "two", nproc=2, steps=4)
    assert_same_networks(tmp_path / "one", tmp_path / "two", kind, parts)


def test_resume_under_two_processes_continues_exactly(inputs, tmp_path):
    verb, args, kind, parts = VERBS["style"]
    train(verb, args(inputs), tmp_path / "straight", nproc=1, steps=4)
    train(verb, args(inputs), tmp_path / "split", nproc=2, steps=2)
    resume = ["--resume", tmp_path / "split" / "checkpoint.safetensors"]
    train(verb, [*args(inputs), *resume], tmp_path / "split", nproc=2, steps=4)
    assert_same_networks(tmp_path / "straight", tmp_path / "split", kind, parts)


def test_gan_trains_in_two_processes(data, tmp_path):
    # batch-norm statistics are per process on the CPU (SyncBatchNorm needs CUDA): it runs, rank 0 writes
    result = train("gan", ["--data", data, "--size", 16, "--batch", 4], tmp_path / "gan", nproc=2, steps=2)
    assert load_checkpoint(tmp_path / "gan" / "checkpoint.safetensors", "gan")["step"] == 2
    card = json.loads((tmp_path / "gan" / "w.json").read_text())
    assert card["training"]["steps"] == 2
    assert result.stdout.count("Trained 2 steps") == 1  # the report once, from rank 0


def test_a_batch_that_does_not_split_is_refused_before_training(data, painting, tmp_path):
    result = run_imgedit("train", "style", "--style-image", painting, "--data", data, "--batch", 3, "--patch", 16,
                         "--steps", 1, "--out", tmp_path / "r", "--nproc", 2, "-q", env=ONE_THREAD, timeout=300)
    assert result.returncode != 0
    assert "--batch 3 does not split into 2 processes" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_outside_torchrun_the_helpers_are_the_identity(monkeypatch):
    monkeypatch.delenv(distributed.TORCHRUN_ENV, raising=False)
    x = torch.arange(6.0)
    assert distributed.world() == 1 and distributed.is_main()
    assert distributed.shard(x) is x
    assert torch.equal(distributed.batch_draw(lambda s: torch.ones(s), (3, 2)), torch.ones(3, 2))
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net) is net
    net(x[:2]).sum().backward()
    grad = net.weight.grad.clone()
    distributed.average_gradients(net)
    assert torch.equal(net.weight.grad, grad)


def test_each_process_keeps_its_rows_of_the_global_draw(monkeypatch):
    monkeypatch.setenv(distributed.TORCHRUN_ENV, "test")
    monkeypatch.setenv("WORLD_SIZE", "2")
    draw = lambda shape: torch.arange(shape[0] * shape[1]).view(shape)  # noqa: E731
    monkeypatch.setenv("RANK", "0")
    first = distributed.batch_draw(draw, (2, 3))
    monkeypatch.setenv("RANK", "1")
    second = distributed.batch_draw(draw, (2, 3))
    assert torch.equal(torch.cat([first, second]), draw((4, 3)))
    assert torch.equal(distributed.shard(torch.arange(4)), torch.tensor([2, 3]))
    with pytest.raises(UsageError, match="does not split"):
        distributed.check_batch(5)


def test_nproc_is_taken_out_of_the_relaunched_command():
    argv = ["train", "style", "--nproc", "2", "--data", "x", "--nproc=3", "--steps", "4"]
    assert distributed.without_nproc(argv) == ["train", "style", "--data", "x", "--steps", "4"]


def test_a_finished_worker_leaves_with_status_0_and_its_output_written():
    # end_finished_worker() skips interpreter shutdown (os._exit), so it must flush what the process printed itself
    import subprocess
    import sys

    code = ("import logging, sys; from imgedit.cli import end_finished_worker; print('out', end=''); "
            "sys.stderr.write('err'); logging.getLogger('imgedit').warning('logged'); end_finished_worker(); print('after')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout == "out"
    assert result.stderr.startswith("err") and "logged" in result.stderr


def test_a_failed_run_exits_with_a_processs_own_code_before_a_signals():
    from imgedit.distributed import failure_status

    assert failure_status([-15, 2]) == 2  # rank 0 terminated by torchrun after rank 1's usage error
    assert failure_status([1, -15]) == 1
    assert failure_status([-9, -15]) == 137  # killed (out of memory, say): as a shell reports it
    assert failure_status([]) == 1


@pytest.mark.parametrize("error, said", [
    ("UsageError", ""), ("TrainingDiverged", ""),  # every process raises these alike: rank 0 alone says it
    ("WeightsError", "Error (process 1): broken\n")])
def test_an_error_every_process_shares_is_said_once(monkeypatch, error, said):
    import click
    from click.testing import CliRunner

    from imgedit import errors, training
    from imgedit.cli import ImgeditGroup

    raised = getattr(errors, error, None) or getattr(training, error)

    @click.group(cls=ImgeditGroup)
    def group():
        pass

    @group.command()
    def fail():
        raise raised("broken")

    monkeypatch.setenv(distributed.TORCHRUN_ENV, "test")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == raised.exit_code
    assert result.stderr == said
    monkeypatch.setenv("RANK", "0")
    assert CliRunner().invoke(group, ["fail"]).stderr == "Error: broken\n"


def test_the_processes_share_the_cpus_out_also_under_a_quota(monkeypatch):
    # under a 4-CPU quota the command set OMP_NUM_THREADS=4 for itself, and each of 4
    # processes then took 4 threads: 16 in 4 CPUs' time
    from imgedit import process_tuning

    monkeypatch.setattr(distributed, "usable_cpus", lambda: 4)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setattr(process_tuning, "_FITTED", True)
    distributed._share_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setattr(process_tuning, "_FITTED", False)  # the user's own setting stands
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    distributed._share_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    distributed._share_threads(2)
    assert os.environ["OMP_NUM_THREADS"] == "2"
