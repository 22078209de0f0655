"""imgedit.run on what a notebook holds: NumPy arrays and PIL images come
back in their kind, dtype, layout and alpha; unclipped noisy input is taken;
a tensor result owns its memory."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import imgedit
from conftest import smooth_rgb
from imgedit.errors import ShapeError, UsageError
from imgedit.operations import Capabilities, Operation

PANELS = 3  # the fills the fake "panels" operation puts side by side, as inpaint samples=3


@pytest.fixture
def ops(test_plugin):
    """Fake operations with known answers; ``ops`` records what ``probe`` was given."""
    seen = []

    def probe(ctx):
        return lambda image, mask: seen.append(mask.clone()) or image

    def panels(ctx):
        apply = lambda image, mask: torch.cat([image] * PANELS, dim=-1)  # noqa: E731
        apply.output_shape = lambda shape: (*shape[:-1], shape[-1] * PANELS)
        return apply

    def tint(image, mask):
        image = image.clone()
        image[:, 2] = 0  # no blue: colour from gray
        return image

    made = [
        Operation("keep", "same", lambda ctx: (lambda image, mask: image)),
        Operation("halve", "inplace", lambda ctx: (lambda image, mask: image.mul_(0.5))),
        Operation("brighten", "add", lambda ctx: (lambda image, mask: image + 0.25)),
        Operation("darken", "sub", lambda ctx: (lambda image, mask: image - 0.25)),
        Operation("tint", "noblue", lambda ctx: tint),
        Operation("panels", "copies", panels),
        Operation("probe", "seen", probe, capabilities=Capabilities(needs_mask=True)),
    ]
    test_plugin("arrays_test_plugin", register_operations=lambda register: [register(op) for op in made])
    return seen


def noisy_pair(sigma=25, seed=0):
    """A smooth clean image and the same with unclipped Gaussian noise, (1, 3, 48, 64)."""
    clean = torch.from_numpy(smooth_rgb()).permute(2, 0, 1)[None].float() / 255
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed)) * sigma / 255
    return clean, clean + noise


def mse(a, b):
    return float(((torch.as_tensor(a, dtype=torch.float32) - torch.as_tensor(b, dtype=torch.float32)) ** 2).mean())


# --- 1. unclipped noisy input ----------------------------------------------------------------

def test_unclipped_noisy_input_is_taken_and_denoised():
    clean, noisy = noisy_pair()
    assert noisy.min() < 0 and noisy.max() > 1  # the benchmark's protocol: the noise is not clipped
    out = imgedit.run("denoise sigma=25", noisy)
    assert out.shape == clean.shape and mse(out, clean) < mse(noisy, clean) / 3


@pytest.mark.parametrize("kind", ["tensor", "array"])
def test_values_on_an_8_bit_scale_are_refused_with_the_hint_to_divide(kind):
    image = torch.rand(1, 3, 8, 8) * 255
    target = image if kind == "tensor" else image[0].permute(1, 2, 0).numpy()
    with pytest.raises(UsageError, match=r"got \S+ to \S+ \(divide 8-bit values by 255\)$"):
        imgedit.run("denoise method=nlm", target)


@pytest.mark.parametrize("low, high", [(-0.6, 0.9), (0.1, 1.6)])
def test_values_somewhat_out_of_range_are_refused_without_the_8_bit_hint(low, high):
    image = torch.full((1, 3, 8, 8), 0.5)
    image[0, 0, 0, :2] = torch.tensor([low, high])
    with pytest.raises(UsageError) as info:
        imgedit.run("denoise method=nlm", image)
    message = str(info.value)
    assert f"got {low:g} to {high:g}" in message and "-0.5 to 1.5" in message and "255" not in message


# --- 2. NumPy arrays -------------------------------------------------------------------------

def picture(shape, dtype, seed=0):
    """Random samples of ``dtype`` on its scale (float in [0, 1], as float32 holds them)."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 10), (6, 10, 3), (6, 10, 4)])
def test_an_array_comes_back_in_its_dtype_layout_and_values(ops, dtype, shape):
    given = picture(shape, dtype)
    if len(shape) == 2:  # gray: channels that stay equal come back as one
        given = given[..., None].repeat(3, axis=2)[..., 0]
    before = given.copy()
    out = imgedit.run("keep", given)
    assert out.dtype == given.dtype and out.shape == given.shape and out.flags.c_contiguous
    assert np.array_equal(out, given) and np.array_equal(given, before)


def test_the_callers_array_is_never_changed_and_integers_are_rounded_and_clipped(ops):
    given = np.array([[[255, 0, 4]]], np.uint8)
    before = given.copy()
    assert imgedit.run("halve", given).tolist() == [[[128, 0, 2]]]  # 127.5 rounds up: truncated it was 127
    assert np.array_equal(given, before)  # the operation halved its input in place
    assert imgedit.run("brighten", given).tolist() == [[[255, 64, 68]]]  # 1.25 clipped, not wrapped to 63
    assert imgedit.run("darken", given).tolist() == [[[191, 0, 0]]]  # below 0 clipped, not wrapped
    assert imgedit.run("halve", given.astype(np.uint16) * 257).tolist() == [[[32768, 0, 514]]]


def test_a_float_result_is_not_clipped_as_a_tensors_is_not(ops):
    out = imgedit.run("brighten", np.ones((2, 2, 3), np.float64))
    assert out.dtype == np.float64 and np.all(out == 1.25)


def test_a_gray_array_whose_result_has_colour_comes_back_rgb(ops):
    given = np.full((4, 5), 200, np.uint8)
    out = imgedit.run("tint", given)
    assert out.shape == (4, 5, 3) and out[0, 0].tolist() == [200, 200, 0]


def test_alpha_comes_back_unchanged_and_only_the_hole_is_filled():
    rgb = smooth_rgb()
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)  # transparency is no hole here
    hole = np.zeros(rgb.shape[:2], bool)
    hole[10:20, 12:24] = True
    rgb[hole] = (255, 0, 255)  # a blemish to fill
    out = imgedit.run("inpaint method=telea", np.dstack([rgb, alpha]), mask=hole)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 4)
    assert np.array_equal(out[..., 3], alpha)
    assert np.array_equal(out[~hole][:, :3], rgb[~hole])
    assert (out[hole][:, :3] != (255, 0, 255)).any(axis=1).all()


def test_nlm_denoises_a_uint8_array():
    clean = smooth_rgb()
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 5, clean.shape), 0, 255).round().astype(np.uint8)
    out = imgedit.run("denoise method=nlm sigma=5", noisy)
    assert out.dtype == np.uint8 and out.shape == noisy.shape
    assert mse(out, clean) < mse(noisy, clean) / 2


@pytest.mark.parametrize("shape", [(6, 10), (6, 10, 4)])
def test_fills_side_by_side_come_back_as_one_wide_array_with_alpha_per_fill(ops, shape):
    given = picture(shape, np.uint8)
    if len(shape) == 2:
        given = given[..., None].repeat(3, axis=2)[..., 0]
    out = imgedit.run("panels", given)
    assert out.shape == (6, 10 * PANELS, *shape[2:]) and out.dtype == np.uint8
    for panel in np.split(out, PANELS, axis=1):
        assert np.array_equal(panel, given)  # the alpha too, once per fill


@pytest.mark.parametrize("array, error, message", [
    (np.zeros((8, 8), bool), ShapeError, "got bool (a bool array is a mask: pass it as mask=)"),
    (np.zeros((8, 8, 3), np.int32), ShapeError, "uint8 (0-255), uint16 (0-65535) or float (0-1) samples, got int32"),
    (np.zeros((8, 8, 2), np.uint8), ShapeError, "(H, W, 3) or (H, W, 4) NumPy array, got shape (8, 8, 2)"),
    (np.zeros((8, 8, 5), np.uint8), ShapeError, "got shape (8, 8, 5)"),
    (np.zeros((0, 8, 3), np.uint8), ShapeError, "H, W > 0"),
    (np.zeros((1, 3, 8, 8), np.float32), UsageError, "got a NumPy array of shape (1, 3, 8, 8)"),
    (np.full((8, 8), np.nan, np.float32), UsageError, "image values must be finite"),
])
def test_an_array_that_is_no_image_is_refused_with_a_typed_error(ops, array, error, message):
    with pytest.raises(error) as info:
        imgedit.run("keep", array)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_options_for_paths_are_refused_for_an_array(ops, tmp_path):
    with pytest.raises(UsageError, match="for a NumPy array the result is returned"):
        imgedit.run("keep", np.zeros((4, 4, 3), np.uint8), tmp_path / "out.png")
    with pytest.raises(UsageError, match="overwrite do not apply to a PIL image"):
        imgedit.run("keep", Image.new("RGB", (4, 4)), overwrite=True)


# --- 2. PIL images ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16"])
def test_a_pil_image_comes_back_in_its_mode_and_pixels(ops, mode):
    samples = {"L": (6, 10), "LA": (6, 10, 2), "RGB": (6, 10, 3), "RGBA": (6, 10, 4)}
    pixels = picture(samples[mode], np.uint8) if mode != "I;16" else picture((6, 10), np.uint16)
    given = Image.fromarray(pixels)
    assert given.mode == mode
    out = imgedit.run("keep", given)
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == (10, 6)
    assert np.array_equal(np.asarray(out), pixels)


def test_a_pil_image_of_another_mode_comes_back_as_pillow_converts_it(ops):
    given = Image.fromarray(smooth_rgb()).convert("P")
    out = imgedit.run("keep", given)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(given.convert("RGB")))


def test_a_gray_pil_image_whose_result_has_colour_comes_back_rgb(ops):
    assert imgedit.run("tint", Image.new("L", (3, 2), 90)).mode == "RGB"
    assert imgedit.run("tint", Image.new("I;16", (3, 2), 9000)).mode == "RGB"  # Pillow has no 16-bit colour


def test_a_pil_image_keeps_its_colour_profile_exif_and_dpi(ops):
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the pixels are as stored, and stay so
    given = Image.fromarray(smooth_rgb())
    given.info.update(icc_profile=srgb, dpi=(300, 300), exif=exif.tobytes())
    out = imgedit.run("keep", given)
    assert out.info["icc_profile"] == srgb and out.info["dpi"] == (300, 300) and out.info["exif"] == exif.tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    gray = Image.new("L", (3, 2), 90)
    gray.info["icc_profile"] = lab[:16] + b"GRAY" + lab[20:]  # a header that says it describes gray
    assert imgedit.run("keep", gray).info["icc_profile"] == gray.info["icc_profile"]
    assert "icc_profile" not in imgedit.run("tint", gray).info  # a gray profile on colour pixels is invalid


def test_a_pil_image_of_32_bit_samples_is_refused(ops):
    with pytest.raises(ShapeError, match="got mode F"):
        imgedit.run("keep", Image.new("F", (4, 4), 0.5))


# --- 2. masks as arrays and PIL images ----------------------------------------------------------

@pytest.mark.parametrize("dtype, values, hole", [
    (np.uint8, (0, 76, 255), (0, 0, 1)),  # as an 8-bit mask file: above 127 is the hole
    (np.bool_, (False, True, True), (0, 1, 1)),
    (np.int64, (0, 1, 7), (0, 1, 1)),  # 0/1 labels: nonzero is the hole
    (np.uint32, (0, 1, 7), (0, 1, 1)),
    (np.uint16, (0, 20000, 65535), (0, 0, 1)),  # as a 16-bit mask file (a PIL I;16 mask alike): above 32767
    (np.float32, (0.1, 0.5, 0.9), (0, 1, 1)),  # fractional: from 0.5
    (np.longdouble, (0.1, 0.5, 0.9), (0, 1, 1)),  # float128 on x86: a type torch does not hold
])
def test_an_array_mask_is_read_as_a_tensor_mask_is(ops, dtype, values, hole):
    mask = np.zeros((6, 6), dtype)
    mask[:, :3] = values
    imgedit.run("probe", np.zeros((6, 6, 3), np.uint8), mask=mask)
    assert ops[0].shape == (1, 1, 6, 6) and ops[0].dtype == torch.float32
    assert ops[0][0, 0, 0, :3].tolist() == [float(h) for h in hole] and ops[0][..., 3:].sum() == 0


@pytest.mark.parametrize("mode", ["L", "1", "RGB"])
def test_a_pil_mask_is_read_as_a_mask_file_white_is_the_hole(ops, mode):
    drawn = np.zeros((6, 8), np.uint8)
    drawn[2:4, 1:5] = 255
    mask = Image.fromarray(drawn).convert(mode)
    imgedit.run("probe", Image.new("RGB", (8, 6)), mask=mask)
    assert torch.equal(ops[0][0, 0], torch.from_numpy(drawn > 127).float())


def test_a_16_bit_mask_reads_alike_as_an_array_a_pil_image_a_tensor_and_a_file(ops, tmp_path):
    from imgedit.masks import load_mask_file
    from imgedit.tensor import mask_to_tensor

    drawn = np.zeros((6, 8), np.uint16)
    drawn[2:4, 1:5], drawn[2:4, 5] = 65535, 20000  # a soft edge: not all hole
    Image.fromarray(drawn).save(tmp_path / "m.png")
    expected = torch.from_numpy(drawn > 32767).float()
    for mask in (drawn, Image.fromarray(drawn), torch.from_numpy(drawn.astype(np.int32)).to(torch.uint16)[None, None]):
        imgedit.run("probe", torch.zeros(1, 3, 6, 8), mask=mask)
        assert torch.equal(ops.pop()[0, 0], expected), type(mask)
    assert torch.equal(mask_to_tensor(drawn)[0, 0], expected)
    assert torch.equal(torch.from_numpy(load_mask_file(tmp_path / "m.png", (6, 8))).float(), expected)


def test_mask_to_tensor_refuses_nan_as_imgedit_run_does():
    from imgedit.tensor import mask_to_tensor

    mask = np.zeros((4, 4), np.float32)
    mask[0, 0] = np.nan
    with pytest.raises(UsageError, match="finite"):
        mask_to_tensor(mask)


def test_an_array_mask_serves_every_image_of_a_tensor_batch(ops):
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    imgedit.run("probe", torch.rand(2, 3, 6, 6), mask=mask)
    assert ops[0].shape == (2, 1, 6, 6) and ops[0].sum() == 8


@pytest.mark.parametrize("mask, message", [
    (np.ones((4, 4), bool), "mask: expected an (H, W) = (6, 8) array or PIL image, white = hole, got shape (4, 4)"),
    (np.ones((1, 1, 6, 8), bool), "got shape (1, 1, 6, 8)"),
    (Image.new("L", (6, 8), 255), "got shape (8, 6)"),  # turned: width and height swapped
    (np.full((6, 8), "x"), "mask: expected bool, integer or float values"),
])
def test_a_mask_array_of_another_shape_is_refused(ops, mask, message):
    with pytest.raises(ShapeError) as info:
        imgedit.run("probe", np.zeros((6, 8, 3), np.uint8), mask=mask)
    assert message in str(info.value) and ops == []


# --- 3. a tensor result owns its memory ----------------------------------------------------------

@pytest.mark.parametrize("pipeline", ["denoise method=nlm sigma=5", "denoise sigma=25"])
def test_a_tensor_result_is_contiguous_and_holds_only_its_own_values(pipeline):
    out = imgedit.run(pipeline, noisy_pair()[1].clamp(0, 1))  # both tile through a padded buffer
    assert out.is_contiguous()
    assert out.untyped_storage().nbytes() == out.numel() * out.element_size()
    assert out.view(1, 3, -1).shape == (1, 3, 48 * 64)


# --- 4. fills side by side -----------------------------------------------------------------------

def test_fills_side_by_side_split_as_the_docs_say(ops):
    given = torch.rand(2, 3, 5, 7)
    out = imgedit.run("panels", given)
    assert out.shape == (2, 3, 5, 7 * PANELS)
    split = out.unflatten(-1, (PANELS, 7))  # (B, 3, H, K, W)
    assert all(torch.equal(split[..., k, :], given) for k in range(PANELS))
    assert all(torch.equal(chunk, given) for chunk in out.chunk(PANELS, dim=-1))
    assert "result.unflatten(-1, (K, W))" in imgedit.run.__doc__


# --- the module stays cheap to import ------------------------------------------------------------

def test_importing_imgedit_and_its_api_loads_no_numpy_pil_or_array_helpers():
    probe = ("import sys, imgedit, imgedit.api; "
             "print(sorted(m for m in ('numpy', 'PIL', 'torch', 'imgedit.arrays') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_mask_for_a_pipeline_that_uses_none_is_said_to_be_ignored(caplog):
    # the CLI warns of mask options no stage uses; the API took them silently
    image = torch.rand(1, 3, 16, 16)
    hole = torch.zeros(1, 1, 16, 16)
    hole[..., 4:8, 4:8] = 1
    for given in ({"mask": hole}, {"mask_box": (2, 2, 4, 4)}):
        caplog.clear()
        out = imgedit.run("denoise method=nlm sigma=5", image, **given)
        assert out.shape == image.shape
        said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert said == [f"ignoring {next(iter(given))}: no stage of the pipeline uses a mask"], said


def test_big_endian_samples_and_a_uint8_mask_of_ones_are_read_as_their_values_say():
    # '>u2' (PIL's I;16B) was refused as not uint16; a NumPy 0/1 uint8 mask lost the tensor's hint
    image = np.full((8, 8), 40000, dtype=">u2")
    out = imgedit.run("denoise method=nlm sigma=0", image)
    assert out.dtype == np.uint16 and out.shape == (8, 8) and np.array_equal(out, image.astype(np.uint16))
    photo = np.full((8, 8, 3), 128, np.uint8)
    ones = np.zeros((8, 8), np.uint8)
    ones[2:4, 2:4] = 1
    with pytest.raises(Exception, match="mask.bool"):
        imgedit.run("inpaint method=telea", photo, mask=ones)
