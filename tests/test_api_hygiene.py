"""What a notebook user of the Python API meets: a parameter given as None,
NumPy arrays of 8- and 16-bit values, tab completion, latent models on the
default device, short reprs and a warning said once, not on every call."""

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import imgedit
from imgedit import operations
from imgedit.errors import DeviceError, MaskError, ShapeError, UsageError
from imgedit.latents import load_latent_model, load_latent_model_argument
from imgedit.operations import Operation, Param
from imgedit.pipeline import Pipeline, Stage
from imgedit.tensor import mask_to_tensor, to_tensor


@pytest.fixture
def image():
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def hole():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 10:20, 10:20] = 1
    return mask


# -- 1. None means the parameter's default ------------------------------------------------


def test_sigma_none_is_the_default_and_runs(image):
    pipeline = Pipeline.from_specs([("denoise", {"sigma": None})])
    assert pipeline.stages[0].params["sigma"] == pipeline.stages[0].operation.param("sigma").default == "auto"
    assert imgedit.run(pipeline, image).shape == image.shape  # was PluginError: float() ... 'NoneType'


def test_samples_none_is_the_default_and_runs(image, hole):
    pipeline = Pipeline.from_specs([("inpaint", {"samples": None})])
    assert pipeline.stages[0].params["samples"] == pipeline.stages[0].operation.param("samples").default == 1
    assert imgedit.run(pipeline, image, mask=hole).shape == image.shape  # was a bare TypeError


def test_strength_none_is_the_default():
    assert Pipeline.from_specs([("denoise", {"strength": None})]) == Pipeline.parse("denoise")


def test_param_parse_of_none_gives_the_default():
    assert Param("strength", float, default=1.0).parse(None, "here") == 1.0
    assert Param("seed", int, default=None).parse(None, "here") is None  # "not given" stays so
    assert Param("sigma", float, default="auto", allow_auto=True).parse(None, "here") == "auto"


def test_text_none_is_no_default_in_a_pipeline_string():
    with pytest.raises(UsageError, match="parameter 'strength' must be float, got 'None'"):
        Pipeline.parse("denoise strength=None")  # the key=value path reads text: None is no number there
    assert Pipeline.parse("denoise strength=0.5").stages[0].params["strength"] == 0.5


# -- 2. 8- and 16-bit arrays on the [0, 1] scale -----------------------------------------------


def test_an_8_bit_mask_is_read_as_a_mask_file():
    blurred_edge = np.array([[0, 40, 127], [128, 200, 255]], dtype=np.uint8)
    got = mask_to_tensor(blurred_edge)
    assert got.shape == (1, 1, 2, 3) and got.dtype == torch.float32
    assert got[0, 0].tolist() == [[0, 0, 0], [1, 1, 1]]  # was every nonzero value a hole


@pytest.mark.parametrize("mask, hole", [
    (np.array([[False, True]]), [[0, 1]]),
    (np.array([[0, 1], [2, 0]], dtype=np.int64), [[0, 1], [1, 0]]),  # labels: nonzero is a hole
    (np.array([[0, 65535], [32767, 32768]], dtype=np.uint16), [[0, 1], [0, 1]]),  # as a 16-bit mask file
    (np.array([[0.49, 0.5]], dtype=np.float64), [[0, 1]]),
])
def test_other_masks_are_read_as_the_api_reads_them(mask, hole):
    assert mask_to_tensor(mask)[0, 0].tolist() == hole


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_to_tensor_refuses_0_1_labels_read_as_a_mask_file_would_be(dtype):
    # they read as no hole at all: said, as imgedit.run says it, not a photo left as it was
    with pytest.raises(MaskError, match="for 0/1 values pass mask.astype"):
        mask_to_tensor(np.array([[0, 1], [1, 0]], dtype=dtype))


def test_a_mask_of_another_shape_is_refused():
    with pytest.raises(ShapeError, match=r"mask: expected shape \(H, W\)"):
        mask_to_tensor(np.zeros((4, 4, 1), dtype=bool))


@pytest.mark.parametrize("dtype, full", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_pictures_are_scaled_to_unit_range(dtype, full):
    rgb = np.array([[[0, full // 2, full]]], dtype=dtype)  # (1, 1, 3)
    got = to_tensor(rgb)
    assert got.shape == (1, 3, 1, 1) and got.dtype == torch.float32
    assert got.flatten().tolist() == pytest.approx([0.0, (full // 2) / full, 1.0])


def test_float32_pictures_are_a_view_and_others_are_kept_as_given():
    rgb = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    got = to_tensor(rgb)
    assert got.shape == (1, 3, 4, 5) and np.shares_memory(got.numpy(), rgb)
    assert torch.equal(to_tensor(rgb.astype(np.float64) * 2), got * 2)  # floats are not rescaled


def test_a_picture_of_unscaled_integers_is_refused():
    with pytest.raises(ShapeError, match="expected float, uint8 or uint16 values, got int32"):
        to_tensor(np.zeros((2, 2, 3), dtype=np.int32))


# -- 3. dir() and tab completion ---------------------------------------------------------------


def test_dir_lists_the_lazy_names():
    assert {"run", "Pipeline", "hookimpl", "ImgeditError", "__version__"} <= set(dir(imgedit))


def test_dir_imports_nothing_heavy():
    code = "import sys, imgedit; dir(imgedit); print(sorted({'torch', 'pluggy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# -- 4. latent models on the default device ----------------------------------------------------

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_a_missing_gpu_is_a_device_error(device):
    with pytest.raises(DeviceError, match="device 'cuda(:0)?' is not available"):
        load_latent_model("faces64-gan", device)


def test_a_device_that_is_none_is_a_device_error():
    with pytest.raises(DeviceError, match="'gpu' is not a device"):
        load_latent_model("faces64-gan", "gpu")
    with pytest.raises(DeviceError, match="'gpu' is not a device"):
        load_latent_model_argument("faces64-gan", "gpu")


@no_gpu
@pytest.mark.parametrize("given", [{}, {"device": "auto"}, {"device": None}, {"device": "AUTO"}])
def test_auto_and_none_load_on_the_cpu(given, monkeypatch):
    monkeypatch.delenv("IMGEDIT_DEVICE", raising=False)
    model = load_latent_model("faces64-gan", **given)
    assert model.device == torch.device("cpu")
    assert model.decode(model.sample_latents(1, seed=0)).shape == (1, 3, *model.image_size)


# -- 5. short reprs ----------------------------------------------------------------------------


def test_a_pipeline_repr_is_short_and_parses_back():
    pipeline = Pipeline.parse("denoise sigma=25 | inpaint")
    text = repr(pipeline)
    assert text == "Pipeline('denoise.vae sigma=25 | inpaint.vae')"  # was about 2.5 KB of help texts
    assert eval(text, {"Pipeline": Pipeline.parse}) == pipeline
    assert repr(pipeline.stages[0]) == "Stage('denoise.vae sigma=25')"


def test_repr_leaves_equality_alone():
    assert Pipeline.parse("denoise sigma=25") == Pipeline.parse("denoise sigma=25.0")
    assert hash(Pipeline.parse("denoise sigma=25")) == hash(Pipeline.parse("denoise sigma=25.0"))
    assert Pipeline.parse("denoise sigma=25") != Pipeline.parse("denoise sigma=25.5")


def test_repr_quotes_text_so_it_parses_back(test_plugin):
    op = Operation("caption", "text", lambda ctx, **p: (lambda image, mask: image), params=(
        Param("words", str, default=""), Param("bold", bool, default=False), Param("size", float, default=1.0)))
    test_plugin("caption_plugin", register_operations=lambda register: register(op))
    pipeline = Pipeline.from_specs([("caption", {"words": "it's a | b", "bold": True, "size": 0.25})])
    assert eval(repr(pipeline), {"Pipeline": Pipeline.parse}) == pipeline
    assert repr(Pipeline((Stage(op, {}),))) == "Pipeline('caption.text')"


# -- 6. a warning once per process -------------------------------------------------------------


def _said(caplog, text):
    return [r for r in caplog.records if text in r.getMessage()]


def test_a_clamped_sigma_is_said_once(image, caplog):
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        imgedit.run("denoise sigma=100", image)
        imgedit.run("denoise sigma=100", image)
    assert len(_said(caplog, "denoise.vae was trained for sigma up to 75; using 75 instead of 100")) == 1


def test_a_precision_the_cpu_does_not_use_is_said_once(image, caplog):
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        imgedit.run("denoise sigma=5", image, precision="fp16", device="cpu")
        imgedit.run("denoise sigma=5", image, precision="fp16", device="cpu")
    assert len(_said(caplog, "precision fp16 is not used on the CPU; running in fp32")) == 1


def test_another_message_is_said_too(caplog):
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        for sigma in (80, 90, 80):
            operations.warn_once("trained up to %g; got %g", 75, sigma)
    assert [r.getMessage() for r in caplog.records] == ["trained up to 75; got 80", "trained up to 75; got 90"]
