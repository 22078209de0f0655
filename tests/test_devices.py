"""Tests for imgedit.devices: device, precision and thread resolution.

The machine running these has no GPU, so CUDA and MPS are simulated by
monkeypatching torch's availability checks.
"""

from __future__ import annotations

import logging
import platform
from types import SimpleNamespace

import pytest
import torch

from imgedit import devices
from imgedit.devices import (
    available_devices,
    check_supported,
    compute_scope,
    describe_devices,
    resolve_device,
    resolve_precision,
    set_threads,
)
from imgedit.errors import DeviceError, UsageError
from imgedit.operations import Capabilities


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    """Start every test on a CPU-only machine with no IMGEDIT_DEVICE set."""
    monkeypatch.delenv(devices.ENV_DEVICE, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    # a simulated GPU has bf16: an Ampere card, a Mac on macOS 14 (gpu_bf16_problem)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(platform, "mac_ver", lambda: ("14.5", ("", "", ""), "arm64"))


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(devices, "_cuda_problems", {0: "", 1: ""})  # both compute (there is no GPU to ask)


@pytest.fixture
def mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


FP16_OP = Capabilities(precisions=("fp32", "fp16"))
BF16_OP = Capabilities(precisions=("fp32", "bf16"))
FP32_OP = Capabilities(precisions=("fp32",))
CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


class TestResolveDevice:
    def test_auto_is_cpu_without_gpu(self):
        assert resolve_device() == CPU
        assert resolve_device("auto") == CPU
        assert resolve_device(" AUTO ") == CPU

    def test_cpu(self):
        assert resolve_device("cpu") == CPU

    def test_env_var_is_honoured(self, monkeypatch, two_gpus):
        monkeypatch.setenv(devices.ENV_DEVICE, "cpu")
        assert resolve_device() == CPU
        monkeypatch.setenv(devices.ENV_DEVICE, "cuda:1")
        assert resolve_device() == torch.device("cuda", 1)

    def test_explicit_spec_beats_env_var(self, monkeypatch):
        monkeypatch.setenv(devices.ENV_DEVICE, "cuda")
        assert resolve_device("cpu") == CPU

    def test_unavailable_env_device_raises(self, monkeypatch):
        monkeypatch.setenv(devices.ENV_DEVICE, "cuda")
        with pytest.raises(DeviceError, match="available: cpu"):
            resolve_device()

    @pytest.mark.parametrize("spec", ["cuda", "cuda:0", "mps"])
    def test_unavailable_device_raises_with_available_list(self, spec):
        with pytest.raises(DeviceError) as info:
            resolve_device(spec)
        message = str(info.value)
        assert "\n" not in message
        assert f"'{spec}'" in message and "available: cpu" in message

    @pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cuda0", "", "cpu:1", "tpu"])
    def test_malformed_raises(self, spec):
        with pytest.raises(DeviceError, match="available: cpu"):
            resolve_device(spec)

    def test_auto_picks_cuda_when_available(self, two_gpus):
        assert resolve_device() == CUDA
        assert resolve_device("cuda") == CUDA
        assert resolve_device("CUDA:1") == torch.device("cuda", 1)

    def test_cuda_index_out_of_range(self, two_gpus):
        with pytest.raises(DeviceError, match=r"'cuda:2'.*available: cpu, cuda:0, cuda:1"):
            resolve_device("cuda:2")

    def test_under_nproc_each_process_takes_its_own_gpu_and_fewer_gpus_are_refused(self, two_gpus, monkeypatch):
        from imgedit import distributed

        monkeypatch.setenv(distributed.TORCHRUN_ENV, "run")
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert resolve_device() == resolve_device("cuda") == torch.device("cuda", 1)
        with pytest.raises(DeviceError, match=r"^device 'cuda:0': with --nproc each process takes its own GPU"):
            resolve_device("cuda:0")  # all three on one GPU: NCCL's "Duplicate GPU detected"
        monkeypatch.setenv("LOCAL_RANK", "2")  # the third process of three, on two GPUs
        for spec in ("auto", "cuda"):
            with pytest.raises(DeviceError, match=r"^--nproc 3 on CUDA takes a GPU per process, and this machine has 2: "
                                                  r"give --nproc 2 or fewer, or --device cpu$"):
                resolve_device(spec)
        assert resolve_device("cpu") == CPU  # training on the CPU needs no GPU per process
        set_to = []
        monkeypatch.setattr(torch.cuda, "set_device", set_to.append)
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
        monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: None)
        distributed.start()
        assert set_to == []  # no GPU 2 to select (it raised "invalid device ordinal" in process 3)
        monkeypatch.setenv("LOCAL_RANK", "1")
        distributed.start()
        assert set_to == [1]

    def test_a_gpu_that_cannot_compute_is_left_for_the_cpu_by_auto_and_refused_by_name(self, two_gpus, caplog):
        newer = ("CUDA error: no kernel image is available for execution on the device\nCUDA kernel errors might "
                 "be asynchronously reported")  # a GPU newer than the installed torch build
        devices._cuda_problems[0] = " ".join(newer.split())
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_device("auto") == CPU
        assert caplog.messages == [f"cuda:0 cannot compute ({' '.join(newer.split())}); using the CPU: install a "
                                   "torch build for this GPU (pytorch.org), or pass --device cpu to say so"]
        with pytest.raises(DeviceError, match=r"^device 'cuda:0' cannot compute \(CUDA error: no kernel image"):
            resolve_device("cuda")
        assert resolve_device("cuda:1") == torch.device("cuda", 1)

    def test_the_probe_reports_what_torch_says(self, monkeypatch):
        monkeypatch.setattr(devices, "_cuda_problems", {})

        def no_kernel(*args, **kwargs):
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

        monkeypatch.setattr(torch, "zeros", no_kernel)
        assert devices.cuda_problem(3) == "CUDA error: no kernel image is available for execution on the device"
        assert devices.cuda_problem(3) == "CUDA error: no kernel image is available for execution on the device"
        ones = torch.ones(1)
        monkeypatch.setattr(torch, "zeros", lambda *args, **kwargs: ones)  # as a working GPU does
        assert devices.cuda_problem(0) == ""

    def test_auto_prefers_cuda_over_mps(self, two_gpus, mps):
        assert resolve_device() == CUDA

    def test_auto_picks_mps_without_cuda(self, mps):
        assert resolve_device() == torch.device("mps")
        assert resolve_device("mps") == torch.device("mps")


class TestAvailableDevices:
    def test_cpu_only(self):
        assert available_devices() == ["cpu"]

    def test_all(self, two_gpus, mps):
        assert available_devices() == ["cpu", "cuda:0", "cuda:1", "mps"]


class TestResolvePrecision:
    def test_cpu_auto_is_fp32(self, caplog):
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision(None, CPU, FP16_OP) == torch.float32
            assert resolve_precision("auto", CPU, FP16_OP) == torch.float32
        assert caplog.records == []

    @pytest.mark.parametrize("spec", ["fp16", "bf16"])
    def test_cpu_reduced_precision_warns_and_runs_fp32(self, spec, caplog):
        op = Capabilities(precisions=("fp32", "fp16", "bf16"))
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision(spec, CPU, op) == torch.float32
        assert [r.levelno for r in caplog.records] == [logging.WARNING]
        assert spec in caplog.text and "fp32" in caplog.text

    def test_cuda_auto_uses_fp16_when_listed(self):
        assert resolve_precision(None, CUDA, FP16_OP) == torch.float16
        assert resolve_precision("auto", CUDA, Capabilities(precisions=("fp32", "fp16", "bf16"))) == torch.float16

    def test_cuda_auto_uses_bf16_when_only_bf16_listed(self):
        assert resolve_precision("auto", CUDA, BF16_OP) == torch.bfloat16

    def test_cuda_auto_fp32_when_op_lists_only_fp32(self):
        assert resolve_precision("auto", CUDA, FP32_OP) == torch.float32

    def test_bf16_on_a_gpu_without_it_warns_and_runs_fp32(self, monkeypatch, caplog):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a Turing card
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("auto", CUDA, BF16_OP) == torch.float32  # emulated: slower than fp32
            assert resolve_precision("bf16", CUDA, BF16_OP, "denoise.vae") == torch.float32
        assert caplog.messages == ["cuda:0 computes bf16 only by emulation (before Ampere), slower than fp32; "
                                   "running denoise.vae in fp32"]
        caplog.clear()
        monkeypatch.setattr(platform, "mac_ver", lambda: ("13.6.1", ("", "", ""), "arm64"))
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("bf16", torch.device("mps"), BF16_OP, "denoise.vae") == torch.float32
        assert caplog.messages == ["MPS computes bf16 from macOS 14 on; running denoise.vae in fp32"]
        monkeypatch.setattr(platform, "mac_ver", lambda: ("14.5", ("", "", ""), "arm64"))
        monkeypatch.setattr(torch, "__version__", "2.5.1")
        assert devices.gpu_bf16_problem("mps") == "torch 2.5.1 has no bf16 on MPS (torch 2.6 has)"
        monkeypatch.setattr(torch, "__version__", "2.6.0+cpu")
        assert devices.gpu_bf16_problem("mps") == "" and devices.gpu_bf16_problem("cpu") == ""

    def test_a_bf16_training_run_on_a_gpu_without_it_trains_and_records_fp32(self, monkeypatch, caplog):
        from dataclasses import dataclass

        from imgedit import training

        @dataclass(frozen=True)
        class Config:
            precision: str = "bf16"

        trainer = SimpleNamespace(cfg=Config(), device=CUDA)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            training._train_bf16_where_it_runs(trainer)
        assert trainer.cfg.precision == "fp32" and "training in fp32" in caplog.text
        trainer = SimpleNamespace(cfg=Config(), device=CPU)  # on the CPU: as asked
        training._train_bf16_where_it_runs(trainer)
        assert trainer.cfg.precision == "bf16"

    def test_mps_auto_uses_fp16(self):
        assert resolve_precision(None, torch.device("mps"), FP16_OP) == torch.float16

    def test_explicit_supported(self):
        assert resolve_precision("fp16", CUDA, FP16_OP) == torch.float16
        assert resolve_precision("BF16", CUDA, BF16_OP) == torch.bfloat16
        assert resolve_precision("fp32", CUDA, FP16_OP) == torch.float32

    def test_explicit_unsupported_warns_and_runs_fp32(self, caplog):
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("fp16", CUDA, FP32_OP) == torch.float32
        assert "not supported" in caplog.text

    @pytest.mark.parametrize("spec", ["fp8", "half", "32", ""])
    def test_invalid_raises(self, spec):
        with pytest.raises(DeviceError, match="precision"):
            resolve_precision(spec, CPU, FP16_OP)


class TestBf16OnTheCpu:
    OP = Capabilities(precisions=("fp32",), cpu_bf16=True)

    @pytest.fixture
    def native_bf16(self, monkeypatch):
        monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)

    def test_asked_for_allowed_and_native_runs_bf16(self, native_bf16, caplog):
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("bf16", CPU, self.OP) == torch.bfloat16
        assert caplog.records == []

    def test_auto_never_picks_it(self, native_bf16):
        assert resolve_precision("auto", CPU, self.OP) == torch.float32
        assert resolve_precision(None, CPU, self.OP) == torch.float32

    def test_without_native_bf16_warns_and_runs_fp32(self, monkeypatch, caplog):
        monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("bf16", CPU, self.OP) == torch.float32
        assert "natively" in caplog.text and "fp32" in caplog.text

    def test_an_operation_that_does_not_allow_it_is_named(self, native_bf16, caplog):
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("bf16", CPU, Capabilities(precisions=("fp32", "bf16")), "style.fast") == torch.float32
        assert "style.fast does not run in bf16 on the CPU" in caplog.text

    def test_fp16_is_still_refused(self, native_bf16, caplog):
        with caplog.at_level(logging.WARNING, logger="imgedit"):
            assert resolve_precision("fp16", CPU, Capabilities(precisions=("fp32", "fp16"), cpu_bf16=True)) == torch.float32
        assert "fp16" in caplog.text

    def test_the_probe_answers_what_onednn_says(self, monkeypatch):
        asked = []

        def onednn_says(answer):
            def probe():
                asked.append(answer)
                return answer
            monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", probe)

        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
        onednn_says(True)
        assert devices.cpu_has_bf16() is True and describe_devices()["cpu_bf16"] is True
        onednn_says(False)
        assert devices.cpu_has_bf16() is False and describe_devices()["cpu_bf16"] is False
        assert asked == [True, True, False, False]
        onednn_says(True)
        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)  # a build without oneDNN
        assert devices.cpu_has_bf16() is False and asked == [True, True, False, False]

    def test_a_build_without_the_probe_reads_as_no_bf16(self, monkeypatch):
        def missing():
            raise RuntimeError("No such operator mkldnn::_is_mkldnn_bf16_supported")

        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", missing)
        assert devices.cpu_has_bf16() is False

    def test_scope_keeps_tensors_fp32_and_runs_convolutions_in_bf16(self):
        dtype, scope = compute_scope(CPU, torch.bfloat16)
        assert dtype == torch.float32
        x = torch.rand(1, 2, 8, 8)
        weight = torch.rand(3, 2, 3, 3)
        with scope:
            inside = torch.nn.functional.conv2d(x, weight)
        assert inside.dtype == torch.bfloat16
        assert torch.nn.functional.conv2d(x, weight).dtype == torch.float32  # only inside the scope
        assert torch.allclose(inside.float(), torch.nn.functional.conv2d(x, weight), rtol=0.02, atol=0.02)

    @pytest.mark.parametrize("device, dtype", [(CPU, torch.float32), (CUDA, torch.float16), (CUDA, torch.bfloat16)])
    def test_elsewhere_tensors_take_the_dtype_and_no_scope(self, device, dtype):
        got, scope = compute_scope(device, dtype)
        assert got == dtype
        with scope:
            assert torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


class TestCheckSupported:
    def test_supported_passes(self):
        check_supported(CPU, Capabilities(devices=("cpu",)))
        check_supported(CUDA, Capabilities())

    def test_unsupported_names_device_and_op(self):
        with pytest.raises(DeviceError) as info:
            check_supported(CUDA, Capabilities(devices=("cpu",)), what="inpaint.telea")
        assert "inpaint.telea" in str(info.value) and "cuda" in str(info.value)
        assert "supports: cpu" in str(info.value)


class TestSetThreads:
    @pytest.fixture(autouse=True)
    def restore_threads(self):
        before = torch.get_num_threads()
        yield
        torch.set_num_threads(before)

    def test_sets_intra_op_threads(self):
        set_threads(2)
        assert torch.get_num_threads() == 2
        set_threads(1)
        assert torch.get_num_threads() == 1

    def test_none_leaves_default(self):
        before = torch.get_num_threads()
        set_threads(None)
        assert torch.get_num_threads() == before

    def test_interop_already_started_is_harmless(self, monkeypatch):
        def refuse(n):
            raise RuntimeError("Error: cannot set number of interop threads after parallel work has started")

        monkeypatch.setattr(torch, "set_num_interop_threads", refuse)
        set_threads(3)
        assert torch.get_num_threads() == 3

    @pytest.mark.parametrize("n", [0, -1, 1.5, "2", True])
    def test_invalid_raises(self, n):
        with pytest.raises(DeviceError, match=">= 1"):
            set_threads(n)


class TestDescribeDevices:
    def test_cpu_only(self):
        info = describe_devices()
        assert info["torch"] == torch.__version__
        assert info["cuda_available"] is False and info["cuda_devices"] == []
        assert info["mps_available"] is False
        assert info["available"] == ["cpu"] and info["auto"] == "cpu"
        assert info["threads"] >= 1

    def test_lists_cuda_devices(self, monkeypatch, two_gpus):
        props = SimpleNamespace(name="Fake GPU", total_memory=8 * 2**30)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
        info = describe_devices()
        assert info["auto"] == "cuda:0"
        assert info["cuda_devices"] == [
            {"index": 0, "name": "Fake GPU", "memory_mb": 8192},
            {"index": 1, "name": "Fake GPU", "memory_mb": 8192},
        ]


@pytest.mark.parametrize("verb", [["sample", "-n", "1", "-o", "o"], ["interpolate", "--seeds", "1,2", "-o", "o.gif"],
                                  ["train", "denoise", "--data", "."], ["eval", "inpaint", "--data", "."]])
def test_imgedit_device_applies_to_every_verb_with_a_device_option(invoke, tmp_path, monkeypatch, verb):
    monkeypatch.chdir(tmp_path)
    result = invoke(*verb, env={"IMGEDIT_DEVICE": "bogus"})
    assert result.exit_code == 2 and "device 'bogus' is not a device" in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_request_larger_than_memory_is_refused(monkeypatch):
    monkeypatch.setattr(devices, "available_memory", lambda: 2e9)
    devices.check_fits_in_memory(1e9, "small", "less")
    with pytest.raises(UsageError, match=r"^big would need about 3.0 GB of memory and 2.0 GB is available; ask less$"):
        devices.check_fits_in_memory(3e9, "big", "ask less")


def test_resizes_mps_lacks_run_on_the_cpu_and_others_stay(monkeypatch):
    import torch.nn.functional as F

    import imgedit.tensor as tensor

    image = torch.rand(1, 3, 30, 40, generator=torch.Generator().manual_seed(0))
    for mode, options in (("area", {}), ("bicubic", {"align_corners": False}), ("bilinear", {"antialias": True})):
        assert torch.equal(tensor.interpolate(image, (17, 23), mode, **options), F.interpolate(image, size=(17, 23), mode=mode, **options))
    # A meta tensor stands in for an MPS one: copying it to the CPU fails, so a routed resize shows itself.
    monkeypatch.setattr(tensor, "_CPU_RESIZE_DEVICES", ("meta",))
    meta = torch.empty(1, 3, 30, 40, device="meta")
    assert tensor.interpolate(meta, (17, 23), "nearest").shape == (1, 3, 17, 23)  # MPS has it
    for mode, options in (("area", {}), ("bicubic", {}), ("bilinear", {"antialias": True})):
        with pytest.raises(NotImplementedError):
            tensor.interpolate(meta, (17, 23), mode, **options)


def test_ctrl_c_during_torchs_start_up_is_held_and_raised_after_it():
    import os
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default here (ignored in a background job)")
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with devices._ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C while torch's C start-up runs
            reached.append("the rest of the block")  # the start-up is not cut short...
    assert reached == ["the rest of the block"]  # ...and the Ctrl-C is heard after it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with devices._ctrl_c_held():
        pass  # nothing pressed: nothing raised


FORKED_AFTER_AN_EDIT = """
import os, sys, time, torch, imgedit
image = torch.rand(1, 3, 256, 256)
imgedit.run("denoise method=nlm", image)  # the parent computes: torch's CPU threads start
pid = os.fork()
if pid == 0:  # a prefork worker's first request
    out = imgedit.run("denoise method=nlm", image)
    print("child edited", tuple(out.shape), torch.get_num_threads(), flush=True)
    os._exit(0)
for _ in range(240):
    if os.waitpid(pid, os.WNOHANG)[0]:
        sys.exit(0)
    time.sleep(0.25)
os.kill(pid, 9)
print("child hung", flush=True)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork") or __import__("sys").platform == "darwin",
                    reason="fork: Linux and the BSDs")
def test_a_process_forked_after_an_edit_edits_on_one_thread_instead_of_hanging():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORKED_AFTER_AN_EDIT], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert "child edited (1, 3, 256, 256) 1" in done.stdout, (done.stdout, done.stderr)
    assert "forked after imgedit edited in its parent" in done.stderr
