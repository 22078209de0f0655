"""Tests for imgedit.masks: where the inpainting hole comes from."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgedit.errors import MaskError, UsageError
from imgedit.imageio import pngchunks
from imgedit.masks import MaskOptions, find_mask, load_mask_file, parse_box, parse_color, sidecar_path

H, W = 40, 60


def rgb_image() -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: a plain gradient (the reader's contract)."""
    x = np.linspace(0, 1, W, dtype=np.float32)
    return np.stack(np.broadcast_arrays(x[None, :], np.full((H, 1), 0.5, np.float32), 1 - x[None, :]), -1)


def save_mask(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (H, W)) -> Path:
    """White (hole) box x,y,w,h on black, as an 8-bit PNG."""
    x, y, w, h = box
    arr = np.zeros(size, np.uint8)
    arr[y : y + h, x : x + w] = 255
    Image.fromarray(arr).save(path)
    return path


def box_hole(box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    hole = np.zeros((H, W), bool)
    hole[y : y + h, x : x + w] = True
    return hole


def alpha_with_hole(box: tuple[int, int, int, int]) -> np.ndarray:
    return np.where(box_hole(box), 0.0, 1.0).astype(np.float32)


@pytest.fixture
def image_path(tmp_path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"")  # find_mask never reads the image itself
    return path


# ----------------------------------------------------------------- parsing
def test_parse_box():
    assert parse_box("10,20,30,40") == (10, 20, 30, 40)
    assert parse_box(" -5, 2 ,3,4") == (-5, 2, 3, 4)
    for bad in ("10,20,30", "a,b,c,d", "1,2,0,4", "1,2,3,-4", ""):
        with pytest.raises(UsageError):
            parse_box(bad)


def test_parse_color():
    assert parse_color("#ff00FF") == (255, 0, 255)
    assert parse_color("00ff00") == (0, 255, 0)
    assert parse_color("#f0f") == (255, 0, 255)
    for bad in ("#ff00f", "red", "#gg0000", ""):
        with pytest.raises(UsageError):
            parse_color(bad)


def test_any_explicit():
    assert not MaskOptions().any_explicit()
    assert MaskOptions(mask_box=(1, 1, 2, 2)).any_explicit()
    assert MaskOptions(mask_color="#fff").any_explicit()
    assert MaskOptions(mask=Path("m.png")).any_explicit()


# ----------------------------------------------------------------- each source
def test_mask_file(tmp_path, image_path):
    mask = save_mask(tmp_path / "m.png", (5, 6, 10, 8))
    hole, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask=mask))
    assert np.array_equal(hole, box_hole((5, 6, 10, 8)))
    assert source == "mask file m.png"


def test_mask_file_missing(tmp_path, image_path):
    with pytest.raises(MaskError, match="mask file not found: .*nope.png"):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask=tmp_path / "nope.png"))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_mask_that_is_a_device_is_not_said_missing(image_path):
    with pytest.raises(MaskError, match="mask /dev/zero is not a regular file"):
        load_mask_file(Path("/dev/zero"), (20, 30))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_mask_that_is_a_device_or_fifo_is_refused_before_any_work(tmp_path, invoke, image_path):
    # a run that keeps a journal hashed --mask first: /dev/zero read forever, a FIFO blocked in open()
    os.mkfifo(tmp_path / "fifo.png")
    for mask in ("/dev/zero", tmp_path / "fifo.png"):
        result = invoke("inpaint", image_path, "-o", tmp_path / "out", "--mask", mask, "--method", "telea")
        assert result.exit_code == 2 and result.stderr.strip() == f"Error: --mask {mask}: not a regular file or a folder"
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["photo.png", "photo.mask.png", "photo_mask.webp", "photo.PNG"])
def test_mask_dir_pairs_by_stem(tmp_path, image_path, name):
    folder = tmp_path / "masks"
    folder.mkdir()
    save_mask(folder / "other.png", (0, 0, 5, 5))  # another image's mask: ignored
    save_mask(folder / name, (10, 10, 4, 4))
    hole, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask=folder))
    assert np.array_equal(hole, box_hole((10, 10, 4, 4)))
    assert name in source


def test_mask_dir_without_that_stem(tmp_path, image_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    save_mask(folder / "other.png", (0, 0, 5, 5))
    with pytest.raises(MaskError, match=r"'photo'.*masks"):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask=folder))


def test_mask_dir_is_the_image_folder(tmp_path):
    # --mask . must not pair photo.png with itself.
    image = tmp_path / "photo.png"
    Image.fromarray((rgb_image() * 255).astype(np.uint8)).save(image)
    with pytest.raises(MaskError, match="no mask for 'photo'"):
        find_mask(image, rgb_image(), None, MaskOptions(mask=tmp_path))


# ----------------------------------------------------------------- folders paired by relative path
@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """``in/`` with ``sub/a.jpg`` and ``other/a.jpg``, and an empty ``masks/``."""
    root, masks = tmp_path / "in", tmp_path / "masks"
    for rel in ("sub/a.jpg", "other/a.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    masks.mkdir()
    return root, masks


@pytest.mark.parametrize("name", ["a.png", "a.mask.png", "a_mask.webp", "a.TIF"])
def test_mask_dir_pairs_by_relative_path(tree, name):
    root, masks = tree
    (masks / "sub").mkdir()
    save_mask(masks / "sub" / name, (10, 10, 4, 4))
    save_mask(masks / "a.png", (0, 0, 5, 5))  # the flat mask loses to the sub-folder one
    save_mask(masks / "sub" / "b.png", (0, 0, 5, 5))  # another image's mask: ignored
    hole, source = find_mask(root / "sub/a.jpg", rgb_image(), None, MaskOptions(mask=masks),
                             relative=Path("sub/a.jpg"))
    assert np.array_equal(hole, box_hole((10, 10, 4, 4)))
    assert source == f"mask file sub/{name}"


def test_mask_dir_relative_falls_back_to_flat(tree):
    root, masks = tree
    (masks / "sub").mkdir()
    save_mask(masks / "sub" / "b.png", (0, 0, 5, 5))  # sub-folder exists, no match for a
    save_mask(masks / "a.mask.png", (20, 5, 6, 6))
    for rel in ("sub/a.jpg", "other/a.jpg"):  # masks/other does not exist at all
        hole, source = find_mask(root / rel, rgb_image(), None, MaskOptions(mask=masks), relative=Path(rel))
        assert np.array_equal(hole, box_hole((20, 5, 6, 6)))
        assert source == "mask file a.mask.png"


def test_mask_dir_top_level_relative_is_flat(tmp_path, image_path):
    folder = tmp_path / "masks"
    folder.mkdir()
    save_mask(folder / "photo.png", (10, 10, 4, 4))
    hole, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask=folder), relative=Path("photo.jpg"))
    assert np.array_equal(hole, box_hole((10, 10, 4, 4))) and source == "mask file photo.png"


def test_mask_dir_without_relative_ignores_sub_folders(tree):
    root, masks = tree
    (masks / "sub").mkdir()
    save_mask(masks / "sub" / "a.png", (10, 10, 4, 4))
    with pytest.raises(MaskError, match="no mask for 'a' in"):
        find_mask(root / "sub/a.jpg", rgb_image(), None, MaskOptions(mask=masks))


def test_mask_dir_relative_nothing_matches(tree):
    root, masks = tree
    (masks / "sub").mkdir()
    save_mask(masks / "sub" / "b.png", (0, 0, 5, 5))
    save_mask(masks / "other.png", (0, 0, 5, 5))
    with pytest.raises(MaskError) as info:
        find_mask(root / "sub/a.jpg", rgb_image(), None, MaskOptions(mask=masks), relative=Path("sub/a.jpg"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"no mask for 'sub/a.jpg' in {masks} ")
    assert str(masks / "sub") in message and "a.mask.png" in message


def test_mask_dir_is_the_input_root(tree):
    # --mask in: in/sub/c.png must not pair with itself, but in/sub/c.mask.png does.
    root, _ = tree
    image = root / "sub" / "c.png"
    Image.fromarray((rgb_image() * 255).astype(np.uint8)).save(image)
    with pytest.raises(MaskError, match="no mask for 'sub/c.png'"):
        find_mask(image, rgb_image(), None, MaskOptions(mask=root), relative=Path("sub/c.png"))
    save_mask(root / "sub" / "c.mask.png", (10, 10, 4, 4))
    assert find_mask(image, rgb_image(), None, MaskOptions(mask=root), relative=Path("sub/c.png"))[1] == (
        "mask file sub/c.mask.png"
    )


def test_mask_file_ignores_relative(tree, tmp_path):
    root, _ = tree
    mask = save_mask(tmp_path / "one.png", (5, 6, 10, 8))
    for rel in ("sub/a.jpg", "other/a.jpg"):
        hole, source = find_mask(root / rel, rgb_image(), None, MaskOptions(mask=mask), relative=Path(rel))
        assert np.array_equal(hole, box_hole((5, 6, 10, 8))) and source == "mask file one.png"


def test_transparent_pixels(image_path):
    hole, source = find_mask(image_path, rgb_image(), alpha_with_hole((3, 4, 5, 6)), MaskOptions())
    assert np.array_equal(hole, box_hole((3, 4, 5, 6)))
    assert source == "transparent pixels"


def test_opaque_alpha_is_not_a_hole(image_path):
    with pytest.raises(MaskError, match="no hole found"):
        find_mask(image_path, rgb_image(), np.ones((H, W), np.float32), MaskOptions())


def test_uint8_alpha(image_path):
    alpha = (alpha_with_hole((3, 4, 5, 6)) * 255).astype(np.uint8)
    hole, _ = find_mask(image_path, rgb_image(), alpha, MaskOptions())
    assert np.array_equal(hole, box_hole((3, 4, 5, 6)))


@pytest.mark.parametrize("name", ["photo.mask.png", "photo_mask.png", "photo.mask.bmp"])
def test_sidecar(tmp_path, image_path, name):
    save_mask(tmp_path / name, (20, 5, 6, 6))
    hole, source = find_mask(image_path, rgb_image(), None, MaskOptions())
    assert np.array_equal(hole, box_hole((20, 5, 6, 6)))
    assert source == f"sidecar {name}"


def test_sidecar_path(tmp_path, image_path):
    assert sidecar_path(image_path) is None
    assert sidecar_path(None) is None
    assert sidecar_path(tmp_path / "missing" / "photo.jpg") is None
    save_mask(tmp_path / "photo.png", (0, 0, 2, 2))  # a plain same-stem file is not a sidecar
    assert sidecar_path(image_path) is None
    save_mask(tmp_path / "photo_mask.PNG", (0, 0, 2, 2))
    assert sidecar_path(image_path) == tmp_path / "photo_mask.PNG"
    save_mask(tmp_path / "photo.mask.webp", (0, 0, 2, 2))
    assert sidecar_path(image_path) == tmp_path / "photo.mask.webp"  # .mask beats _mask


def test_color_with_jpeg_like_noise(image_path):
    rgb = rgb_image()
    hole_truth = box_hole((30, 10, 8, 8))
    rng = np.random.default_rng(0)
    magenta = np.array([1.0, 0.0, 1.0]) + rng.uniform(-15, 15, (H, W, 3)) / 255  # JPEG wobble
    rgb[hole_truth] = np.clip(magenta[hole_truth], 0, 1)
    hole, source = find_mask(image_path, rgb, None, MaskOptions(mask_color="#ff00ff"))
    assert np.array_equal(hole, hole_truth)
    assert source == "colour #ff00ff"
    strict, _ = find_mask(image_path, rgb, None, MaskOptions(mask_color="#ff00ff", color_tolerance=5))
    assert strict.sum() < hole_truth.sum()  # an exact-match rule misses some of the hole (its edge rule takes many back)


def test_color_absent(image_path):
    with pytest.raises(MaskError, match="#00ff00"):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask_color="00ff00"))


def test_box_clipped_and_outside(image_path):
    hole, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(50, 30, 100, 100)))
    assert np.array_equal(hole, box_hole((50, 30, 10, 10)))
    assert source == "box 50,30,100,100"
    with pytest.raises(MaskError, match="outside"):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(100, 0, 5, 5)))


def test_nothing_found_lists_the_ways(image_path):
    with pytest.raises(MaskError) as info:
        find_mask(image_path, rgb_image(), None, MaskOptions())
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"no hole found for {image_path}:")
    for way in ("--mask FILE|DIR", "transparent", "photo.mask.png", "--mask-color", "--mask-box"):
        assert way in message


# ----------------------------------------------------------------- precedence
def test_precedence(tmp_path, image_path, caplog):
    rgb = rgb_image()
    rgb[box_hole((0, 0, 3, 3))] = (1.0, 0.0, 1.0)
    everything = MaskOptions(mask=save_mask(tmp_path / "explicit.png", (1, 1, 2, 2)),
                             mask_color="#ff00ff", mask_box=(40, 20, 5, 5))
    alpha = alpha_with_hole((10, 10, 2, 2))
    save_mask(tmp_path / "photo.mask.png", (20, 20, 2, 2))

    assert find_mask(image_path, rgb, alpha, everything)[1] == "mask file explicit.png"
    everything.mask = None
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        assert find_mask(image_path, rgb, alpha, everything)[1] == "transparent pixels"
    assert f"{image_path}: ignoring --mask-color and --mask-box because the image has transparent" in caplog.text
    caplog.clear()  # the image is named: in a batch the others take the options
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        assert find_mask(image_path, rgb, None, everything)[1] == "sidecar photo.mask.png"
    assert f"{image_path}: ignoring --mask-color and --mask-box because photo.mask.png lies beside" in caplog.text
    (tmp_path / "photo.mask.png").unlink()
    assert find_mask(image_path, rgb, None, everything)[1] == "colour #ff00ff"
    everything.mask_color = None
    assert find_mask(image_path, rgb, None, everything)[1] == "box 40,20,5,5"


def test_no_image_path_uses_alpha_colour_box():
    hole, source = find_mask(None, rgb_image(), None, MaskOptions(mask_box=(1, 2, 3, 4)))
    assert source == "box 1,2,3,4" and hole.sum() == 12
    with pytest.raises(MaskError, match="no hole found"):
        find_mask(None, rgb_image(), None, MaskOptions())


# ----------------------------------------------------------------- adjustments
def test_wrong_size_mask_resized_with_warning(tmp_path, caplog):
    path = save_mask(tmp_path / "small.png", (5, 5, 10, 10), size=(H // 2, W // 2))
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        hole = load_mask_file(path, (H, W))
    assert hole.shape == (H, W)
    assert np.array_equal(hole, box_hole((10, 10, 20, 20)))
    assert "30x20" in caplog.text and "60x40" in caplog.text


def test_a_mask_of_another_shape_is_refused_not_stretched(tmp_path):
    turned = save_mask(tmp_path / "turned.png", (1, 1, 5, 5), size=(W, H))  # the image's sides swapped
    with pytest.raises(MaskError, match=r"is 40x60 but the image is 60x40, another shape \(drawn on the photo before"):
        load_mask_file(turned, (H, W))
    cropped = save_mask(tmp_path / "cropped.png", (1, 1, 5, 5), size=(H, W - 10))
    with pytest.raises(MaskError, match="is 50x40 but the image is 60x40, another shape: stretched"):
        load_mask_file(cropped, (H, W))
    third = save_mask(tmp_path / "third.png", (2, 2, 4, 4), size=(13, 20))  # drawn on a copy a third the size
    assert load_mask_file(third, (H, W)).shape == (H, W)


def test_load_mask_file_16_bit_and_rgba(tmp_path):
    arr = np.zeros((H, W), np.uint16)
    arr[:10] = 65535
    Image.fromarray(arr).save(tmp_path / "m16.png")
    assert load_mask_file(tmp_path / "m16.png", (H, W)).sum() == 10 * W
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[:5, :, :3] = 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert load_mask_file(tmp_path / "rgba.png", (H, W)).sum() == 5 * W


def test_unreadable_mask_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="bad.png"):
        load_mask_file(tmp_path / "bad.png", (H, W))


def header_only_png(path: Path, width: int, height: int, bits: int = 8) -> Path:
    """A gray PNG declaring ``width`` x ``height`` with almost no pixel data: decoding it would fail (truncated)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
    path.write_bytes(pngchunks.PNG_SIGNATURE + pngchunks.make_chunk(b"IHDR", ihdr)
                     + pngchunks.make_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + pngchunks.make_chunk(b"IEND", b""))
    return path


def test_mask_above_the_pixel_limit_is_refused_from_its_header(tmp_path, monkeypatch, capfd):
    huge = header_only_png(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(MaskError, match=r"cannot read mask file .*huge.png: image is 100000x100000 = 1e\+04 MP, above"):
        load_mask_file(huge, (H, W))
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "1000")  # the photos' limit applies to masks too
    with pytest.raises(MaskError, match="above the limit of 0.001 MP"):
        load_mask_file(save_mask(tmp_path / "m.png", (1, 1, 5, 5)), (H, W))
    assert capfd.readouterr() == ("", "")


def test_mask_far_larger_than_the_image_is_refused_before_decoding(tmp_path):
    big = header_only_png(tmp_path / "big.png", 15_040, 11_280, bits=1)  # 170 MP, the image's shape
    with pytest.raises(MaskError, match=r"big.png is 15040x11280, over 4 times the size of the 60x40 image"):
        load_mask_file(big, (H, W))
    taller = header_only_png(tmp_path / "taller.png", 4 * W, 4 * H + 1)
    with pytest.raises(MaskError, match="taller.png is 240x161, over 4 times"):
        load_mask_file(taller, (H, W))
    twice = save_mask(tmp_path / "twice.png", (10, 10, 20, 20), size=(2 * H, 2 * W))  # a larger copy's mask
    assert np.array_equal(load_mask_file(twice, (H, W)), box_hole((5, 5, 10, 10)))


def test_mask_ignores_pillows_own_limit_and_prints_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 60x40 is past twice this: Pillow would refuse it
    path = save_mask(tmp_path / "m.png", (1, 1, 5, 5))
    assert load_mask_file(path, (H, W)).sum() == 25
    assert Image.MAX_IMAGE_PIXELS == 500 and capfd.readouterr() == ("", "")


def test_a_mask_too_large_for_memory_is_a_one_line_error(tmp_path, monkeypatch):
    from PIL import ImageFile

    def out_of_memory(self):
        raise MemoryError()

    monkeypatch.setattr(ImageFile.ImageFile, "load", out_of_memory)
    with pytest.raises(MaskError, match=r"^cannot read mask file .*m.png: not enough memory to decode it$"):
        load_mask_file(save_mask(tmp_path / "m.png", (1, 1, 5, 5)), (H, W))


def test_dilate_grows(image_path):
    plain, _ = find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(20, 15, 10, 10)))
    grown, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(20, 15, 10, 10), dilate=3))
    assert source == "box 20,15,10,10"
    assert grown[plain].all() and grown.sum() > plain.sum()
    assert grown[15 + 5, 17] and not grown[15 + 5, 16]  # 3 px left of the box, not 4
    assert not grown[12, 17]  # elliptical: the far corner stays out
    with pytest.raises(UsageError):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(1, 1, 2, 2), dilate=-1))


def test_invert(image_path):
    hole, _ = find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(20, 15, 10, 10), invert=True))
    assert np.array_equal(hole, ~box_hole((20, 15, 10, 10)))
    with pytest.raises(MaskError, match="empty"):
        find_mask(image_path, rgb_image(), None, MaskOptions(mask_box=(0, 0, W, H), invert=True))


def test_an_empty_mask_inverted_is_the_whole_image(tmp_path, image_path, caplog):
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(black)
    with pytest.raises(MaskError, match="empty"):  # not inverted: still an empty hole
        find_mask(image_path, rgb_image(), None, MaskOptions(mask=black))
    with caplog.at_level(logging.WARNING, logger="imgedit"):
        hole, source = find_mask(image_path, rgb_image(), None, MaskOptions(mask=black, invert=True))
    assert hole.shape == (H, W) and hole.all() and source == "mask file black.png"
    assert "covers the whole image" in caplog.text
    hole, _ = find_mask(image_path, rgb_image(), None, MaskOptions(mask=black, invert=True, dilate=2))
    assert hole.all()  # dilating nothing leaves nothing, inverted: all


def test_a_colour_hole_in_a_jpeg_takes_the_smeared_edge_too(tmp_path, invoke):
    from PIL import Image

    from conftest import smooth_rgb

    rgb = smooth_rgb(96, 128, seed=3)
    rgb[30:62, 40:80] = (255, 0, 255)  # a magenta hole painted on the photo
    Image.fromarray(rgb).save(tmp_path / "p.jpg", quality=92)  # 4:2:0: the magenta bleeds a few px out
    result = invoke("inpaint", tmp_path / "p.jpg", "--mask-color", "ff00ff", "--method", "telea", "-o", tmp_path / "o.png")
    assert result.exit_code == 0 and "grown 3 px" in result.output, result.output
    out = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    tint = (out[..., 0] + out[..., 2]) / 2 - out[..., 1]  # how magenta
    original = (rgb[..., 0].astype(int) + rgb[..., 2]) / 2 - rgb[..., 1]
    band = np.zeros(tint.shape, bool)
    band[24:68, 34:86] = True  # the hole and 6 px around it
    assert (tint - original)[band].max() < 60  # no ring of paint left for the fill to spread
    lossless = tmp_path / "p.png"
    Image.fromarray(rgb).save(lossless)
    hole, source = find_mask(lossless, rgb, None, MaskOptions(mask_color="ff00ff"))
    assert source == "colour #ff00ff" and hole.sum() == 32 * 40  # exact paint on a smooth photo: its exact hole


def test_a_colour_holes_anti_aliased_edge_is_taken_into_the_hole():
    from conftest import smooth_rgb

    photo = smooth_rgb(96, 128, seed=5).astype(np.float64)
    big = Image.new("L", (128 * 4, 96 * 4))
    from PIL import ImageDraw

    ImageDraw.Draw(big).line([(40, 60), (470, 300)], fill=255, width=22)  # drawn at 4x, scaled down: anti-aliased
    coverage = np.asarray(big.resize((128, 96), Image.Resampling.BOX)).astype(np.float64)[..., None] / 255
    painted = np.rint(coverage * [255, 0, 0] + (1 - coverage) * photo).astype(np.uint8)
    hole, source = find_mask(None, painted, None, MaskOptions(mask_color="ff0000"))
    touched = np.abs(painted.astype(int) - photo.round()).max(-1) > 20  # the stroke and the rim it tinted
    assert source == "colour #ff0000 and its anti-aliased edge" and hole[touched].all()
    assert hole.sum() < 1.6 * touched.sum()  # the rim, not a broad band of the photo


def test_the_journal_hashes_every_mask_find_mask_could_take_and_in_its_order(tmp_path):
    # One rule (masks.mask_search) for where a mask may lie: the run's journal hashes the files
    # find_mask looks at, so a redrawn mask redoes its image, whichever of them wins.
    import numpy as np
    from PIL import Image

    from imgedit.inputs import InputFile
    from imgedit.masks import MaskOptions, find_mask
    from imgedit.journal_keys import _MaskFiles

    photo = tmp_path / "photos" / "trip" / "x.png"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(photo)
    hole = np.zeros((8, 8), np.uint8)
    for where, top in (("masks/trip/x.png", 1), ("masks/x_mask.png", 2), ("masks/x.png", 3)):
        (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
        marked = hole.copy()
        marked[top, top] = 255  # each file a hole of its own, to tell which one was taken
        Image.fromarray(marked).save(tmp_path / where)
    item = InputFile(photo, tmp_path / "photos", from_folder=True)
    candidates = _MaskFiles(tmp_path / "masks")._candidates(item)
    assert candidates == [tmp_path / "masks/trip/x.png", tmp_path / "masks/x_mask.png", tmp_path / "masks/x.png"]
    found, _ = find_mask(photo, np.zeros((8, 8, 3), np.uint8), None, MaskOptions(mask=tmp_path / "masks"),
                         relative=item.relative)
    assert np.argwhere(found).tolist() == [[1, 1]]  # the first candidate, the image's own sub-folder's
    Image.new("RGB", (8, 8)).save(photo.with_name("x.mask.png"))  # a sidecar: only without --mask
    assert _MaskFiles(None)._candidates(item) == [photo.with_name("x.mask.png")]


def test_a_filled_hole_of_transparency_and_its_feathered_rim_become_opaque():
    """A soft eraser leaves a translucent rim around the hole it made: left so
    around the fill it shows as a ring; translucency apart from the hole is
    the picture's own and stays."""
    from imgedit.masks import opaque_over_filled_hole

    alpha = np.ones((12, 12), np.float32)
    alpha[3:7, 3:7] = 0.7  # the eraser's feathered edge
    alpha[4:6, 4:6] = 0.0  # the hole it erased
    alpha[9:11, 9:11] = 0.6  # a translucent patch of the picture's own (from 0.5: known, no hole)
    hole = alpha < 0.5
    out = opaque_over_filled_hole(alpha, hole)
    assert (out[3:7, 3:7] == 1.0).all()  # hole and rim
    assert (out[9:11, 9:11] == np.float32(0.6)).all() and out.dtype == np.float32
    assert (out[alpha == 1.0] == 1.0).all()
