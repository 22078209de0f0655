"""Tests for imgedit.imageio: lossless reading/writing, metadata, atomic writes, bad inputs."""

from __future__ import annotations

import io
import re
import logging
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from imgedit import imageio
from imgedit.errors import ImageReadError, ImageWriteError, ShapeError, UsageError
from imgedit.imageio import Picture, describe_image, pngchunks, read_image, write_image

RNG = np.random.default_rng(1234)


# ---------------------------------------------------------------- helpers


def _rgb8(h: int = 6, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _rgb16(h: int = 6, w: int = 10) -> np.ndarray:
    # Values that are not multiples of 257, so an 8-bit detour would change them.
    return RNG.integers(0, 65536, size=(h, w, 3), dtype=np.uint16)


def _write_cv2(path: Path, rgb_or_gray: np.ndarray) -> Path:
    arr = rgb_or_gray[:, :, ::-1] if rgb_or_gray.ndim == 3 else rgb_or_gray
    ok, data = cv2.imencode(path.suffix, np.ascontiguousarray(arr))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _png_bit_depth(path: Path) -> int:
    ihdr = pngchunks.read_ihdr(path.read_bytes()[:64])
    assert ihdr is not None
    return ihdr.bit_depth


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int, **tags: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = tags.get("make", "ACME")
    exif[0x0110] = tags.get("model", "Camera 3000")
    return exif


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def _picture(rgb: np.ndarray, **kwargs) -> Picture:
    top = 65535.0 if rgb.dtype == np.uint16 else 255.0
    kwargs.setdefault("bit_depth", 16 if rgb.dtype == np.uint16 else 8)
    return Picture(rgb=rgb.astype(np.float32) / np.float32(top), **kwargs)


# ---------------------------------------------------------------- round trips


def test_png8_rgb_roundtrip_is_exact(tmp_path):
    src = _rgb8()
    Image.fromarray(src).save(tmp_path / "in.png")
    pic = read_image(tmp_path / "in.png")
    assert pic.rgb.dtype == np.float32 and pic.rgb.shape == (6, 10, 3)
    assert (pic.format, pic.bit_depth, pic.grayscale, pic.alpha) == ("PNG", 8, False, None)
    assert (pic.width, pic.height) == (10, 6)
    out = write_image(pic, tmp_path / "out.png")
    assert np.array_equal(np.asarray(Image.open(out)), src)
    assert _png_bit_depth(out) == 8


def test_png16_rgb_roundtrip_keeps_16_bits(tmp_path):
    src = _rgb16()
    pic = read_image(_write_cv2(tmp_path / "in.png", src))
    assert pic.bit_depth == 16 and not pic.grayscale
    assert np.array_equal(np.round(pic.rgb * 65535).astype(np.uint16), src)
    out = write_image(pic, tmp_path / "out.png")
    assert _png_bit_depth(out) == 16
    back = cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back[:, :, ::-1], src)
    assert np.array_equal(read_image(out).rgb, pic.rgb)


def test_tiff16_roundtrip_keeps_16_bits(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    src = _rgb16()
    tifffile.imwrite(tmp_path / "in.tif", src, photometric="rgb")
    pic = read_image(tmp_path / "in.tif")
    assert (pic.format, pic.bit_depth) == ("TIFF", 16)
    assert np.array_equal(np.round(pic.rgb * 65535).astype(np.uint16), src)
    out = write_image(pic, tmp_path / "out.tif")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and np.array_equal(back, src)


def test_tiff16_rgba_roundtrip(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    src = RNG.integers(0, 65536, size=(5, 7, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", src, photometric="rgb", extrasamples=("unassalpha",))
    pic = read_image(tmp_path / "in.tif")
    assert pic.bit_depth == 16 and pic.alpha is not None
    assert np.array_equal(np.round(pic.alpha * 65535).astype(np.uint16), src[:, :, 3])
    out = write_image(pic, tmp_path / "out.tif")
    assert np.array_equal(tifffile.imread(out), src)


def test_png16_grayscale_roundtrip(tmp_path):
    src = RNG.integers(0, 65536, size=(5, 8), dtype=np.uint16)
    pic = read_image(_write_cv2(tmp_path / "in.png", src))
    assert pic.grayscale and pic.bit_depth == 16
    assert np.array_equal(pic.rgb[:, :, 0], pic.rgb[:, :, 2])
    out = write_image(pic, tmp_path / "out.png")
    ihdr = pngchunks.read_ihdr(out.read_bytes()[:64])
    assert (ihdr.bit_depth, ihdr.color_type) == (16, 0)
    back = cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back.ndim == 2 and np.array_equal(back, src)


def test_png16_gray_alpha_roundtrip(tmp_path):
    src = RNG.integers(0, 65536, size=(4, 6, 2), dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(pngchunks.encode_png16(src, []))
    pic = read_image(tmp_path / "in.png")
    assert pic.grayscale and pic.bit_depth == 16 and pic.alpha is not None
    assert np.array_equal(np.round(pic.rgb[:, :, 1] * 65535).astype(np.uint16), src[:, :, 0])
    assert np.array_equal(np.round(pic.alpha * 65535).astype(np.uint16), src[:, :, 1])
    out = write_image(pic, tmp_path / "out.png")
    assert pngchunks.read_ihdr(out.read_bytes()[:64]).color_type == 4
    assert np.array_equal(read_image(out).alpha, pic.alpha)


def test_rgba_png_alpha_preserved(tmp_path):
    src = np.dstack([_rgb8(), RNG.integers(0, 256, size=(6, 10), dtype=np.uint8)])
    Image.fromarray(src).save(tmp_path / "in.png")
    pic = read_image(tmp_path / "in.png")
    assert pic.alpha is not None and pic.alpha.shape == (6, 10)
    out = write_image(pic, tmp_path / "out.png")
    back = Image.open(out)
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), src)


def test_palette_transparency_becomes_alpha(tmp_path):
    im = Image.fromarray(_rgb8()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    im.save(tmp_path / "in.png", transparency=0)
    pic = read_image(tmp_path / "in.png")
    expected = np.asarray(Image.open(tmp_path / "in.png").convert("RGBA"))
    assert 0 < (expected[:, :, 3] == 0).sum() < expected[:, :, 3].size
    assert pic.alpha is not None and np.array_equal(np.round(pic.alpha * 255), expected[:, :, 3])
    assert np.array_equal(np.round(pic.rgb * 255), expected[:, :, :3])


def test_grayscale_jpeg_stays_grayscale(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(16, 16), dtype=np.uint8)).save(tmp_path / "in.jpg")
    pic = read_image(tmp_path / "in.jpg")
    assert pic.grayscale and pic.format == "JPEG"
    assert np.array_equal(pic.rgb[:, :, 0], pic.rgb[:, :, 1])
    assert Image.open(write_image(pic, tmp_path / "out.jpg")).mode == "L"


def test_grayscale_with_channels_a_rounding_apart_uses_luma(tmp_path):
    gray = RNG.integers(1, 255, size=(6, 10), dtype=np.uint8)
    rgb = np.stack([gray, gray + RNG.integers(0, 2, gray.shape, dtype=np.uint8), gray - 1], axis=2)  # 8-bit rounding
    pic = _picture(rgb, grayscale=True)
    out = write_image(pic, tmp_path / "out.png")
    expected = np.round(np.clip(pic.rgb @ np.array([0.299, 0.587, 0.114], np.float32), 0, 1) * 255)
    back = Image.open(out)
    assert back.mode == "L" and np.array_equal(np.asarray(back), expected.astype(np.uint8))


def _gray_source(path: Path, mode: str) -> Path:
    """A small gray file: 8-bit gray, gray+alpha, 16-bit gray or bilevel."""
    gray = RNG.integers(0, 256, size=(6, 10), dtype=np.uint8)
    if mode == "I;16":
        return _write_cv2(path, gray.astype(np.uint16) * 257 + 3)
    image = Image.fromarray(gray).convert(mode) if mode != "LA" else Image.merge("LA", [Image.fromarray(gray)] * 2)
    image.save(path)
    return path


@pytest.mark.parametrize("mode,colour_mode", [("L", "RGB"), ("LA", "RGBA"), ("I;16", "RGB"), ("1", "RGB")])
@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".webp"])
def test_colour_edit_of_a_gray_source_is_written_in_colour_in_every_format(tmp_path, mode, colour_mode, suffix):
    pic = read_image(_gray_source(tmp_path / "in.png", mode))
    assert pic.grayscale
    tinted = pic.with_rgb(pic.rgb * np.array([1.0, 0.6, 0.2], np.float32))  # what a style does to a gray photo
    back = read_image(write_image(tinted, tmp_path / f"out{suffix}"))
    assert not back.grayscale
    if suffix in (".png", ".tif"):  # lossless: the colours themselves, at the source's depth
        assert back.bit_depth == pic.bit_depth and (back.alpha is not None) == (colour_mode == "RGBA")
        assert np.abs(back.rgb - tinted.rgb).max() <= 0.5 / (255 if pic.bit_depth == 8 else 65535) + 1e-6


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_still_gray_edit_of_a_gray_source_stays_gray(tmp_path, suffix):
    pic = read_image(_gray_source(tmp_path / "in.png", "L"))
    denoised = pic.with_rgb(np.repeat(pic.rgb.mean(axis=2, keepdims=True) * 0.9, 3, axis=2))
    assert Image.open(write_image(denoised, tmp_path / f"out{suffix}")).mode == "L"


def test_gray_profile_is_not_put_on_colour_pixels(tmp_path):
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    gray_icc = lab_icc[:16] + b"GRAY" + lab_icc[20:]  # a profile whose header says it describes gray
    pic = _picture(_rgb8(), grayscale=True, icc_profile=gray_icc)
    assert Image.open(write_image(pic, tmp_path / "out.png")).info.get("icc_profile") is None


def test_16bit_to_jpeg_becomes_8bit(tmp_path):
    pic = read_image(_write_cv2(tmp_path / "in.png", RNG.integers(0, 65536, size=(8, 8), dtype=np.uint16)))
    out = write_image(pic, tmp_path / "out.jpg")
    assert Image.open(out).mode == "L"
    assert read_image(out).bit_depth == 8


# ---------------------------------------------------------------- metadata


def _non_square_pattern() -> np.ndarray:
    # 8 rows x 16 columns with a bright block in the top-left corner only.
    arr = np.zeros((8, 16, 3), dtype=np.uint8)
    arr[:4, :4] = 255
    return arr


def test_jpeg_exif_orientation_applied_and_reset(tmp_path):
    exif = _exif(6)
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal, in the Exif sub-IFD
    Image.fromarray(_non_square_pattern()).save(tmp_path / "in.jpg", exif=exif, quality=100, subsampling=0)
    pic = read_image(tmp_path / "in.jpg")
    # Orientation 6 = rotate 90 degrees clockwise to display: 8x16 becomes 16x8, block top-right.
    assert (pic.height, pic.width) == (16, 8)
    assert pic.rgb[1, 6].mean() > 0.9 and pic.rgb[1, 1].mean() < 0.1
    out = write_image(pic, tmp_path / "out.jpg")
    written = Image.open(out).getexif()
    assert written[0x0112] == 1
    assert (written[0x010F], written[0x0110]) == ("ACME", "Camera 3000")
    assert written.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"
    again = read_image(out)
    assert (again.height, again.width) == (16, 8)


def test_xmp_orientation_applied_and_reset(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    info.add_itxt("XML:com.adobe.xmp", xmp)
    Image.fromarray(_non_square_pattern()).save(tmp_path / "in.png", pnginfo=info)
    pic = read_image(tmp_path / "in.png")
    assert (pic.height, pic.width) == (16, 8) and pic.exif is None
    assert 'tiff:Orientation="1"' in pic.text["XML:com.adobe.xmp"]
    assert read_image(write_image(pic, tmp_path / "out.png")).width == 8


@pytest.mark.parametrize("depth", [8, 16])
def test_exif_camera_tags_reach_tiff(tmp_path, depth):
    if depth == 16:
        pytest.importorskip("tifffile")
    exif = _exif(1, make="Nikon", model="D1")
    exif[0x0131], exif[0x013B], exif[0x8298] = "Lightroom 9", "A. Person", "(c) 2026"
    Image.fromarray(_rgb8()).save(tmp_path / "in.jpg", exif=exif)
    pic = read_image(tmp_path / "in.jpg")
    pic.bit_depth = depth
    tags = Image.open(write_image(pic, tmp_path / "out.tif")).tag_v2
    assert (tags[271], tags[272], max(tags[258])) == ("Nikon", "D1", depth)
    assert (tags[305], tags[315], tags[33432]) == ("Lightroom 9", "A. Person", "(c) 2026")
    pic.text = {"Software": "imgedit test"}  # text the picture carries wins over its EXIF's copy
    tags = Image.open(write_image(pic, tmp_path / "text.tif")).tag_v2
    assert tags[305] == "imgedit test" and tags[315] == "A. Person"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    Image.fromarray(_rgb8(5, 9)).save(tmp_path / "in.png", exif=_exif(orientation))
    pic = read_image(tmp_path / "in.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "in.png")))
    assert np.array_equal(np.round(pic.rgb * 255).astype(np.uint8), expected)
    parsed = Image.Exif()
    parsed.load(pic.exif)
    assert parsed[0x0112] == 1 and parsed[0x010F] == "ACME"


def test_orientation_applied_to_16bit_pixels(tmp_path):
    src = _rgb16(4, 7)
    # Write it ourselves: a 16-bit PNG carrying an eXIf chunk with orientation 8.
    pic = _picture(src, exif=_exif(8).tobytes())
    path = write_image(pic, tmp_path / "in.png")
    back = read_image(path)
    assert back.bit_depth == 16 and (back.height, back.width) == (7, 4)
    assert np.array_equal(np.round(back.rgb * 65535).astype(np.uint16), np.rot90(src, 1))
    exif = Image.Exif()
    exif.load(back.exif)
    assert exif[0x0112] == 1


@pytest.mark.parametrize("orientation", [3, 6, 7])
def test_tiff_orientation_8_and_16_bit(tmp_path, orientation):
    tifffile = pytest.importorskip("tifffile")
    src16 = _rgb16(4, 7)
    tag = [(274, "H", 1, orientation, True)]
    tifffile.imwrite(tmp_path / "a16.tif", src16, photometric="rgb", extratags=tag)
    tifffile.imwrite(tmp_path / "a8.tif", (src16 >> 8).astype(np.uint8), photometric="rgb", extratags=tag)
    expected = {3: np.rot90(src16, 2), 6: np.rot90(src16, -1), 7: src16.swapaxes(0, 1)[::-1, ::-1]}[orientation]
    pic16, pic8 = read_image(tmp_path / "a16.tif"), read_image(tmp_path / "a8.tif")
    assert np.array_equal(np.round(pic16.rgb * 65535).astype(np.uint16), expected)
    assert np.array_equal(np.round(pic8.rgb * 255).astype(np.uint8), (expected >> 8).astype(np.uint8))
    info = describe_image(tmp_path / "a16.tif")
    assert (info["width"], info["height"], info["orientation"]) == (pic16.width, pic16.height, orientation)
    out = write_image(pic16, tmp_path / "out.tif")
    assert Image.open(out).tag_v2.get(274, 1) == 1
    assert np.array_equal(read_image(out).rgb, pic16.rgb)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_icc_profile_kept(tmp_path, suffix):
    icc = _srgb_icc()
    Image.fromarray(_rgb8()).save(tmp_path / "in.png", icc_profile=icc)
    pic = read_image(tmp_path / "in.png")
    assert pic.icc_profile == icc
    out = write_image(pic, tmp_path / f"out{suffix}")
    assert Image.open(out).info.get("icc_profile") == icc
    assert read_image(out).icc_profile == icc


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_icc_profile_kept_at_16_bits(tmp_path, suffix):
    if suffix == ".tif":
        pytest.importorskip("tifffile")
    icc = _srgb_icc()
    out = write_image(_picture(_rgb16(), icc_profile=icc, dpi=(300.0, 150.0)), tmp_path / f"out{suffix}")
    pic = read_image(out)
    assert pic.bit_depth == 16 and pic.icc_profile == icc
    assert pic.dpi is not None and np.allclose(pic.dpi, (300.0, 150.0), atol=0.1)
    assert describe_image(out)["icc_description"]


def test_png_text_chunks_kept(tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Title", "a test")
    info.add_text("Comment", "long " * 400, zip=True)
    info.add_itxt("Author", "Zoë ✓")
    Image.fromarray(_rgb8()).save(tmp_path / "in.png", pnginfo=info)
    pic = read_image(tmp_path / "in.png")
    assert pic.text == {"Title": "a test", "Comment": "long " * 400, "Author": "Zoë ✓"}
    for name, depth in [("out8.png", 8), ("out16.png", 16)]:
        pic.bit_depth = depth
        out = write_image(pic, tmp_path / name)
        assert _png_bit_depth(out) == depth
        assert read_image(out).text == pic.text


@pytest.mark.parametrize("suffix,depth", [(".jpg", 8), (".webp", 8), (".tif", 8), (".tif", 16), (".png", 16)])
def test_xmp_carried_across_formats(tmp_path, suffix, depth):
    if suffix == ".tif" and depth == 16:
        pytest.importorskip("tifffile")
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description dc:title="t"/></x:xmpmeta>'
    pic = _picture(_rgb8(), text={"XML:com.adobe.xmp": xmp, "Description": "desc"}, bit_depth=depth)
    back = read_image(write_image(pic, tmp_path / f"out{suffix}"))
    assert back.text["XML:com.adobe.xmp"] == xmp
    if suffix in (".tif", ".png"):
        assert back.text["Description"] == "desc"


def test_dpi_and_jpeg_comment_kept(tmp_path):
    Image.fromarray(_rgb8()).save(tmp_path / "in.jpg", dpi=(300, 300), comment="hello")
    pic = read_image(tmp_path / "in.jpg")
    assert pic.dpi == (300.0, 300.0) and pic.text["Comment"] == "hello"
    for suffix in (".jpg", ".png", ".tif"):
        back = read_image(write_image(pic, tmp_path / f"out{suffix}"))
        assert back.dpi is not None and np.allclose(back.dpi, (300, 300), atol=0.1), suffix
    assert read_image(tmp_path / "out.jpg").text["Comment"] == "hello"


def test_jpeg_quality_changes_file_size(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
    pic = Picture(rgb=np.clip(ramp + RNG.normal(0, 0.1, ramp.shape).astype(np.float32), 0, 1))
    low = write_image(pic, tmp_path / "low.jpg", quality=20)
    high = write_image(pic, tmp_path / "high.jpg", quality=95)
    assert low.stat().st_size < high.stat().st_size
    with pytest.raises(UsageError):
        write_image(pic, tmp_path / "bad.jpg", quality=0)


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    Image.fromarray(_rgb8()).convert("CMYK").save(tmp_path / "in.jpg")
    pic = read_image(tmp_path / "in.jpg")
    assert pic.rgb.shape == (6, 10, 3) and not pic.grayscale and pic.icc_profile is None
    assert 0.0 <= pic.rgb.min() and pic.rgb.max() <= 1.0


# ---------------------------------------------------------------- other formats


@pytest.mark.parametrize("suffix,fmt", [(".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF"), (".gif", "GIF")])
def test_other_formats_read(tmp_path, suffix, fmt):
    src = _rgb8()
    Image.fromarray(src).save(tmp_path / f"in{suffix}", **({"lossless": True} if fmt == "WEBP" else {}))
    pic = read_image(tmp_path / f"in{suffix}")
    assert pic.format == fmt and pic.bit_depth == 8 and pic.rgb.shape == (6, 10, 3)
    if fmt != "GIF":  # GIF quantises to a palette
        assert np.array_equal(np.round(pic.rgb * 255).astype(np.uint8), src)


def _unit_samples(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 65536, size=shape).astype(np.float64) / 65535


@pytest.mark.parametrize("layout", ["float32 RGB", "float16 RGB", "uint16 gray+alpha", "float32 RGB planar"])
def test_tiffs_pillow_cannot_open_are_read_with_tifffile(tmp_path, layout):
    import tifffile

    gray = "gray" in layout
    unit = _unit_samples((6, 10, 2) if gray else (6, 10, 3))
    samples = {"float32": unit.astype(np.float32), "float16": unit.astype(np.float16),
               "uint16": np.round(unit * 65535).astype(np.uint16)}[layout.split()[0]]
    options = {"extrasamples": ["unassalpha"]} if gray else {"photometric": "rgb"}
    if "planar" in layout:
        samples, options = np.moveaxis(samples, -1, 0), {**options, "planarconfig": "separate"}
    tifffile.imwrite(tmp_path / "in.tif", samples, **options, resolution=(300, 300), resolutionunit=2)
    with pytest.raises(UnidentifiedImageError):  # the premise: Pillow has no mode for these
        Image.open(tmp_path / "in.tif")
    pic = read_image(tmp_path / "in.tif")
    expected = unit.astype(np.float16) if "float16" in layout else unit
    assert (pic.format, pic.bit_depth, pic.grayscale, pic.dpi) == ("TIFF", 16, gray, (300.0, 300.0))
    if gray:
        assert np.abs(pic.rgb[:, :, 1] - expected[:, :, 0]).max() < 1e-6
        assert np.abs(pic.alpha - expected[:, :, 1]).max() < 1e-6
    else:
        assert pic.alpha is None and np.abs(pic.rgb - expected).max() < 1e-6
    info = describe_image(tmp_path / "in.tif")
    assert (info["width"], info["height"], info["has_alpha"], info["grayscale"]) == (10, 6, gray, gray)


def test_float_tiff_beyond_0_1_is_clipped_and_says_so(tmp_path, caplog):
    import tifffile

    tifffile.imwrite(tmp_path / "hdr.tif", np.array([[[0.5, 2.0, -0.25]] * 4] * 3, np.float32), photometric="rgb")
    pic = read_image(tmp_path / "hdr.tif")
    assert np.array_equal(pic.rgb[0, 0], np.array([0.5, 1.0, 0.0], np.float32))
    assert "-0.25 to 2 are clipped to [0, 1]" in caplog.text


@pytest.mark.parametrize("dtype", [np.uint32, np.int32])
def test_32_bit_integer_tiff_is_scaled_by_its_type_or_refused_when_that_makes_it_black(tmp_path, dtype):
    import tifffile

    top = np.iinfo(dtype).max
    unit = _unit_samples((6, 10))
    tifffile.imwrite(tmp_path / "full.tif", np.round(unit * top).astype(dtype))
    pic = read_image(tmp_path / "full.tif")
    assert pic.grayscale and pic.bit_depth == 16 and np.abs(pic.rgb[:, :, 0] - unit).max() < 1e-6
    small = np.round(unit * 255000).astype(dtype)
    small[0, 0] = 255000
    tifffile.imwrite(tmp_path / "small.tif", small)  # once clipped at 65535: mostly white
    with pytest.raises(ImageReadError, match=f"reach only 255000 of {top}; scaled to that range the picture is black"):
        read_image(tmp_path / "small.tif")


def test_webp_lossless_at_quality_100_keeps_alpha(tmp_path):
    src = np.dstack([_rgb8(), RNG.integers(1, 256, size=(6, 10), dtype=np.uint8)])
    pic = _picture(src[:, :, :3], alpha=src[:, :, 3].astype(np.float32) / 255)
    back = read_image(write_image(pic, tmp_path / "out.webp", quality=100))
    assert np.array_equal(np.round(back.rgb * 255), src[:, :, :3])
    assert np.array_equal(np.round(back.alpha * 255), src[:, :, 3])


def test_jpeg_and_bmp_drop_alpha(tmp_path):
    pic = _picture(_rgb8(), alpha=np.full((6, 10), 0.5, np.float32))
    assert Image.open(write_image(pic, tmp_path / "o.jpg")).mode == "RGB"
    assert Image.open(write_image(pic, tmp_path / "o.bmp")).mode == "RGB"


def test_format_for_path_and_suffix_for_format():
    assert imageio.format_for_path("a/out.jpg") == "JPEG"
    assert imageio.format_for_path("OUT.JPEG") == "JPEG"
    assert imageio.format_for_path("x.tiff") == "TIFF"
    assert imageio.format_for_path("x.webp") == "WEBP"
    for bad in ("noext", "file.xyz", "file.txt"):
        with pytest.raises(UsageError, match="file|noext"):
            imageio.format_for_path(bad)
    assert [imageio.suffix_for_format(f) for f in ("JPEG", "png", "TIFF", "WEBP", "BMP")] == [
        ".jpg", ".png", ".tif", ".webp", ".bmp"]
    with pytest.raises(UsageError):
        imageio.suffix_for_format("NOPE")


def test_image_suffixes():
    suffixes = imageio.IMAGE_SUFFIXES
    assert isinstance(suffixes, frozenset)
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= suffixes
    assert not {".h5", ".mpg", ".pdf", ".txt"} & suffixes


def test_write_with_explicit_format(tmp_path):
    out = write_image(Picture(rgb=np.zeros((2, 2, 3), np.float32)), tmp_path / "x.img", format="png")
    assert Image.open(out).format == "PNG"
    with pytest.raises(UsageError):
        write_image(Picture(rgb=np.zeros((2, 2, 3), np.float32)), tmp_path / "y.png", format="NOPE")


# ---------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_no_temp_and_refuses_overwrite(tmp_path):
    pic = Picture(rgb=np.full((3, 3, 3), 0.25, np.float32))
    out = write_image(pic, tmp_path / "sub" / "dir" / "out.png")
    assert out.is_file() and _no_temp_files(out.parent)
    if os.name == "posix":  # permissions as for a normal file, not mkstemp's 0600
        umask = os.umask(0o022)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    before = out.read_bytes()
    with pytest.raises(ImageWriteError, match="exists; pass --overwrite") as err:
        write_image(pic.with_rgb(np.zeros((3, 3, 3), np.float32)), out)
    assert str(out) in str(err.value)
    assert out.read_bytes() == before
    write_image(pic.with_rgb(np.zeros((3, 3, 3), np.float32)), out, overwrite=True)
    assert out.read_bytes() != before and _no_temp_files(out.parent)


def test_encoder_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(ImageWriteError, match="out.jpg"):
        write_image(Picture(rgb=np.zeros((4, 4, 3), np.float32)), tmp_path / "out.jpg")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_file_leaves_nothing(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError, match="No space left") as err:
        write_image(Picture(rgb=np.zeros((4, 4, 3), np.float32)), tmp_path / "out.png")
    assert "out.png" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_overwrite(tmp_path, monkeypatch):
    out = write_image(Picture(rgb=np.zeros((4, 4, 3), np.float32)), tmp_path / "out.png")
    before = out.read_bytes()

    def failing_replace(src, dst):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ImageWriteError):
        write_image(Picture(rgb=np.ones((4, 4, 3), np.float32)), out, overwrite=True)
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_write_rejects_bad_shapes(tmp_path):
    with pytest.raises(ShapeError):
        write_image(Picture(rgb=np.zeros((4, 4), np.float32)), tmp_path / "a.png")
    with pytest.raises(ShapeError):
        write_image(Picture(rgb=np.zeros((4, 4, 3), np.float32), alpha=np.zeros((2, 2), np.float32)),
                    tmp_path / "b.png")
    with pytest.raises(ImageWriteError, match="directory"):
        write_image(Picture(rgb=np.zeros((4, 4, 3), np.float32)), tmp_path, format="PNG")


def test_write_rounds_and_clips(tmp_path):
    rgb = np.array([[[-0.5, 0.5 / 255 + 1e-4, 2.0]]], dtype=np.float32)
    out = write_image(Picture(rgb=rgb), tmp_path / "o.png")
    assert np.asarray(Image.open(out)).tolist() == [[[0, 1, 255]]]


def test_write_maps_nan_to_black_and_infinities_to_the_bounds(tmp_path):
    rgb = np.array([[[np.nan, np.inf, -np.inf], [1e30, -1e30, 0.5]]], dtype=np.float32)
    out = write_image(Picture(rgb=rgb), tmp_path / "o.png")
    assert np.asarray(Image.open(out)).tolist() == [[[0, 255, 0], [255, 0, 128]]]


@pytest.mark.parametrize("band", [None, 100], ids=["whole", "in bands"])
@pytest.mark.parametrize("layout", ["interleaved", "planar", "strided", "gray", "gray+alpha"])
def test_8_bit_quantisation_is_round_half_even_of_the_clipped_values_in_any_memory_layout(layout, band,
                                                                                          monkeypatch):
    from imgedit.imageio import encode
    from imgedit.imageio.encode import _quantize

    if band is not None:  # a photo larger than a band: quantised a band of rows at a time
        monkeypatch.setattr(encode, "QUANTIZE_BLOCK_VALUES", band)
    rng = np.random.default_rng(0)
    chw = (rng.random((3, 37, 53), dtype=np.float32) * 1.4 - 0.2)
    chw[0, 30, :3] = [np.nan, np.inf, -np.inf]  # NaN -> 0, also in a later band
    values = {
        "interleaved": np.ascontiguousarray(chw.transpose(1, 2, 0)),
        "planar": chw.transpose(1, 2, 0),  # the HWC view of a CHW tensor
        "strided": np.ascontiguousarray(chw.transpose(1, 2, 0))[::2, ::3],
        "gray": chw[0],
        "gray+alpha": np.ascontiguousarray(chw[:2].transpose(1, 2, 0)),
    }[layout]
    expected = np.nan_to_num(np.rint(np.clip(values, 0, 1) * np.float32(255)), nan=0).astype(np.uint8)  # float32, as stored
    got = _quantize(values, 8)
    assert got.dtype == np.uint8 and got.shape == values.shape
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("band", [None, 100], ids=["whole", "in bands"])
def test_16_bit_quantisation_is_round_half_even_of_the_clipped_values(band, monkeypatch):
    from imgedit.imageio import encode

    if band is not None:
        monkeypatch.setattr(encode, "QUANTIZE_BLOCK_VALUES", band)
    values = (np.random.default_rng(1).random((29, 41, 3), dtype=np.float32) * 1.4 - 0.2)
    values[20, :3, 1] = [np.nan, np.inf, -np.inf]
    expected = np.nan_to_num(np.rint(np.clip(values * np.float32(65535), 0, 65535)), nan=0).astype(np.uint16)
    got = encode._quantize(values, 16)
    assert got.dtype == np.uint16 and np.array_equal(got, expected)


# ---------------------------------------------------------------- bad inputs


def _absurd_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    path.write_bytes(pngchunks.PNG_SIGNATURE + pngchunks.make_chunk(b"IHDR", ihdr)
                     + pngchunks.make_chunk(b"IDAT", idat) + pngchunks.make_chunk(b"IEND", b""))
    return path


def _truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def _truncated_png16(path: Path) -> Path:
    data = _write_cv2(path, _rgb16(32, 32)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_png8(path: Path) -> Path:
    Image.fromarray(_rgb8(32, 32)).save(path)
    path.write_bytes(path.read_bytes()[:-200])
    return path


BAD_INPUTS = {
    "missing": (lambda p: p / "missing.jpg", "no such file"),
    "directory": (lambda p: (p / "adir.png").mkdir() or p / "adir.png", "directory"),
    "empty": (lambda p: (p / "empty.jpg").write_bytes(b"") and None or p / "empty.jpg", "empty"),
    "text": (lambda p: (p / "notes.jpg").write_text("hello\n") and None or p / "notes.jpg", "not an image"),
    "truncated_jpeg": (lambda p: _truncated_jpeg(p / "trunc.jpg"), "truncated"),
    "truncated_png": (lambda p: _truncated_png8(p / "trunc.png"), "truncated"),
    "truncated_png16": (lambda p: _truncated_png16(p / "trunc16.png"), "truncated"),
    "absurd": (lambda p: _absurd_png(p / "huge.png"), "above the limit of 250 MP; raise it with IMGEDIT_MAX_PIXELS"),
}


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_with_data(path: Path, rgb: np.ndarray, interlaced: bool = False, cut: int = 0) -> Path:
    """An RGB PNG whose IDAT is one complete zlib stream, of the filtered rows less the last ``cut`` bytes
    (interlaced: Adam7, the passes written by hand, as Pillow cannot)."""
    passes = _ADAM7 if interlaced else ((0, 0, 1, 1),)
    raw = b"".join(b"\0" + row.tobytes() for x0, y0, dx, dy in passes for row in rgb[y0::dy, x0::dx] if row.size)
    ihdr = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, int(interlaced))
    path.write_bytes(pngchunks.PNG_SIGNATURE + pngchunks.make_chunk(b"IHDR", ihdr)
                     + pngchunks.make_chunk(b"IDAT", zlib.compress(raw[: len(raw) - cut]))
                     + pngchunks.make_chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("interlaced", [False, True])
@pytest.mark.parametrize("height", [12, 13])  # interlaced: the last row is in the last pass, or the one above it
def test_png_whose_complete_data_stream_holds_too_few_rows_is_refused(tmp_path, interlaced, height):
    rgb = RNG.integers(1, 256, size=(height, 16, 3), dtype=np.uint8)
    path = _png_with_data(tmp_path / "short.png", rgb, interlaced, cut=49 * (height // 2))  # whole rows of 49 bytes
    assert Image.open(path).load() is not None  # Pillow itself takes it, leaving rows black
    with pytest.raises(ImageReadError, match="corrupt or truncated image .not enough image data"):
        read_image(path)
    cut_in_last_pass = _png_with_data(tmp_path / "one_row_short.png", rgb, interlaced, cut=49)
    with pytest.raises(ImageReadError, match="corrupt or truncated image"):
        read_image(cut_in_last_pass)


@pytest.mark.parametrize("interlaced", [False, True])
def test_png_with_black_last_rows_is_read_whole(tmp_path, interlaced):
    rgb = RNG.integers(1, 256, size=(13, 16, 3), dtype=np.uint8)
    rgb[-2:] = 0  # the sign of missing rows, here genuine: the data stream is checked, and complete
    pic = read_image(_png_with_data(tmp_path / "black.png", rgb, interlaced))
    assert np.array_equal(np.round(pic.rgb * 255).astype(np.uint8), rgb)
    palette = Image.fromarray(rgb).quantize(8)
    palette.putpixel((0, 12), 0)
    palette.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").height == 13


def test_huge_png_header_over_one_row_of_data_is_refused_at_once(tmp_path):
    path = tmp_path / "big.png"  # 25 MP, under the limit; one whole row of data
    ihdr = struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)
    path.write_bytes(pngchunks.PNG_SIGNATURE + pngchunks.make_chunk(b"IHDR", ihdr)
                     + pngchunks.make_chunk(b"IDAT", zlib.compress(bytes(1 + 5000 * 3)))
                     + pngchunks.make_chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match="not enough image data"):
        read_image(path)


@pytest.mark.parametrize("case", ["absurd", "text"])
def test_a_large_file_is_refused_from_its_header_without_being_read_whole(tmp_path, monkeypatch, case):
    from imgedit.imageio import read as reading

    make, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    monkeypatch.setattr(reading, "HEADER_FIRST_BYTES", 0)  # as if it were a 10 GB file
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"{self} was read whole"))
    with pytest.raises(ImageReadError, match=re.escape(expected)):
        reading.read_file_bytes(path)


def test_a_large_image_whose_header_passes_is_read_as_any_other(tmp_path, monkeypatch):
    from imgedit.imageio import read as reading

    tifffile = pytest.importorskip("tifffile")
    monkeypatch.setattr(reading, "HEADER_FIRST_BYTES", 0)
    Image.fromarray(_rgb8(8, 16)).save(tmp_path / "plain.png")
    tifffile.imwrite(tmp_path / "float.tif", np.full((5, 9, 3), 0.5, np.float32), photometric="rgb")  # tifffile only
    assert read_image(tmp_path / "plain.png").rgb.shape == (8, 16, 3)
    assert read_image(tmp_path / "float.tif").rgb.shape == (5, 9, 3)
    assert reading.read_file_bytes(tmp_path / "float.tif") == (tmp_path / "float.tif").read_bytes()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_image_read_error(tmp_path, case, capfd):
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert str(path) in message and expected in message and "\n" not in message
    assert capfd.readouterr() == ("", "")  # library code prints nothing (OpenCV included)


def test_absurd_dimensions_message_and_limits(tmp_path, monkeypatch):
    path = _absurd_png(tmp_path / "huge.png", 60_000, 60_000)
    with pytest.raises(ImageReadError, match=r"60000x60000 = 3600 MP, above the limit of 250 MP"):
        read_image(path)
    small = tmp_path / "small.png"
    Image.fromarray(_rgb8(10, 10)).save(small)
    with pytest.raises(ImageReadError, match="above the limit of 5e-05 MP"):
        read_image(small, max_pixels=50)
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "99")
    with pytest.raises(ImageReadError, match="above the limit"):
        read_image(small)
    assert read_image(small, max_pixels=100).width == 10
    monkeypatch.setenv("IMGEDIT_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="IMGEDIT_MAX_PIXELS"):
        read_image(small)


def test_pillow_limit_does_not_fire_first(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow's own limit far below ours
    Image.fromarray(_rgb8(10, 10)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").width == 10
    assert Image.MAX_IMAGE_PIXELS == 10  # restored


def test_a_tiff_past_pillows_limit_reads_under_ours(tmp_path, monkeypatch):
    # Pillow checks a TIFF's size again when it decodes (load), not only at open
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    Image.fromarray(_rgb8(10, 10)).save(tmp_path / "a.tif")
    assert read_image(tmp_path / "a.tif").width == 10
    assert read_image(tmp_path / "a.tif", max_pixels=0).width == 10
    with pytest.raises(ImageReadError, match="above the limit"):
        read_image(tmp_path / "a.tif", max_pixels=50)
    assert Image.MAX_IMAGE_PIXELS == 10  # restored


def _no_raw_warning(stderr: str) -> bool:
    """No warning printed as Python prints one ("/.../PIL/TiffImagePlugin.py:946: UserWarning: ..."); the
    debug log may show it, where an earlier test left the imgedit logger at debug level."""
    return "Warning: " not in stderr.replace("UserWarning while decoding", "") and ".py:" not in stderr


@pytest.fixture
def command_warnings():
    """Warnings shown as the ``imgedit`` command shows them (pytest records them otherwise)."""
    from imgedit.cli import _decoding_warnings_logged

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _decoding_warnings_logged(warnings.showwarning)
        yield


def test_decoder_warnings_are_logged_not_printed(tmp_path, caplog, capfd, command_warnings):
    tag = struct.pack("<HHII", 0x010E, 2, 0x7FFFFFFF, 26)  # ImageDescription of 2 GB, in a file of 700 bytes
    exif = b"Exif\0\0II*\0" + struct.pack("<IH", 8, 1) + tag + struct.pack("<I", 0)
    Image.fromarray(_rgb8()).save(tmp_path / "a.jpg", exif=exif)
    shown = warnings.showwarning
    with caplog.at_level(logging.DEBUG, logger="imgedit"):
        assert read_image(tmp_path / "a.jpg").width == 10
    # Pillow's words for it vary ("Truncated File Read" before Pillow 12)
    assert f"{tmp_path / 'a.jpg'}: UserWarning while decoding: " in caplog.text
    assert _no_raw_warning(capfd.readouterr().err) and warnings.showwarning is shown
    from imgedit.cli import _decoding_warnings_logged

    shown_before = []
    warnings.showwarning = _decoding_warnings_logged(lambda message, *rest: shown_before.append(str(message)))
    with caplog.at_level(logging.DEBUG, logger="imgedit"):
        warnings.warn("a warning of the program's own", UserWarning)  # no file decoding: shown as before
    assert shown_before == ["a warning of the program's own"] and "own" not in caplog.text


def test_decoding_switches_nothing_for_the_other_threads(tmp_path, monkeypatch):
    # a host application's own Image.open keeps Pillow's limit, as it set it,
    # while imgedit decodes on another thread past that limit
    import threading

    from imgedit.imageio.source import decoding

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 10x10 is past twice this: Pillow refuses it
    Image.fromarray(_rgb8(10, 10)).save(tmp_path / "a.png")
    inside, done = threading.Event(), threading.Event()

    def imgedit_decoding():
        with decoding(tmp_path / "a.png"):
            inside.set()
            done.wait(10)

    worker = threading.Thread(target=imgedit_decoding)
    worker.start()
    try:
        assert inside.wait(10)
        with pytest.raises(Image.DecompressionBombError):
            Image.open(tmp_path / "a.png")
        assert Image.MAX_IMAGE_PIXELS == 40
    finally:
        done.set()
        worker.join()
    assert read_image(tmp_path / "a.png").width == 10  # imgedit's own decode: its limit, not Pillow's


# ---------------------------------------------------------------- Picture, describe


def test_with_rgb_resizes_alpha():
    alpha = np.zeros((4, 6), np.float32)
    alpha[:, 3:] = 1.0
    pic = Picture(rgb=np.zeros((4, 6, 3), np.float32), alpha=alpha, text={"a": "b"}, icc_profile=b"icc")
    bigger = pic.with_rgb(np.ones((8, 12, 3), np.float32))
    assert bigger.alpha.shape == (8, 12) and bigger.alpha.dtype == np.float32
    assert bigger.alpha[0, 0] == 0.0 and bigger.alpha[0, -1] == 1.0
    assert (bigger.icc_profile, bigger.text) == (b"icc", {"a": "b"}) and bigger.text is not pic.text
    same = pic.with_rgb(np.ones((4, 6, 3), np.float64))
    assert same.alpha is pic.alpha and same.rgb.dtype == np.float32
    with pytest.raises(ShapeError):
        pic.with_rgb(np.ones((4, 6), np.float32))


def test_describe_image_fields_without_decoding(tmp_path, monkeypatch):
    icc = _srgb_icc()
    Image.fromarray(_rgb8(8, 16)).save(tmp_path / "a.jpg", exif=_exif(6), icc_profile=icc, dpi=(72, 72))
    from PIL import ImageFile

    def no_decode(self):
        raise AssertionError("describe_image decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    info = describe_image(tmp_path / "a.jpg")
    assert info["format"] == "JPEG" and info["mode"] == "RGB"
    assert (info["width"], info["height"], info["orientation"]) == (8, 16, 6)
    assert (info["bit_depth"], info["channels"], info["has_alpha"], info["grayscale"]) == (8, 3, False, False)
    assert info["exif"] is True and info["icc_profile"] is True and "sRGB" in info["icc_description"]
    assert info["dpi"] == (72.0, 72.0) and info["file_size"] == (tmp_path / "a.jpg").stat().st_size
    assert info["megapixels"] == pytest.approx(128 / 1e6, abs=1e-3) and info["path"] == str(tmp_path / "a.jpg")

    src = np.dstack([_rgb16(3, 5), _rgb16(3, 5)[:, :, 0]])
    (tmp_path / "b.png").write_bytes(pngchunks.encode_png16(src, [pngchunks.text_chunk("Title", "x")]))
    info = describe_image(tmp_path / "b.png")
    assert (info["bit_depth"], info["channels"], info["has_alpha"], info["text"]) == (16, 4, True, ["Title"])
    with pytest.raises(ImageReadError, match="missing.png"):
        describe_image(tmp_path / "missing.png")


def test_image_size_is_the_displayed_size_from_the_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    from imgedit.imageio.describe import image_size

    tifffile = pytest.importorskip("tifffile")
    Image.fromarray(_rgb8(8, 16)).save(tmp_path / "turned.jpg", exif=_exif(6))  # stored 16 wide, shown 8 wide
    Image.fromarray(_rgb8(8, 16)).save(tmp_path / "plain.png")
    tifffile.imwrite(tmp_path / "turned.tif", _rgb16(4, 7), photometric="rgb", extratags=[(274, "H", 1, 7, True)])
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((5, 9, 3), np.float32), photometric="rgb")  # tifffile only
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("image_size decoded pixels"))
    sizes = {name: image_size(tmp_path / name) for name in ("turned.jpg", "plain.png", "turned.tif", "float.tif")}
    assert sizes == {"turned.jpg": (16, 8), "plain.png": (8, 16), "turned.tif": (7, 4), "float.tif": (5, 9)}
    for name, size in sizes.items():
        info = describe_image(tmp_path / name)
        assert (info["height"], info["width"]) == size
    (tmp_path / "text.png").write_text("not an image")
    for bad in ("missing.png", "text.png"):
        with pytest.raises(ImageReadError, match=bad):
            image_size(tmp_path / bad)


def test_import_is_cheap():
    code = "import sys, imgedit.imageio; print('cv2' in sys.modules, 'torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_with_rgb_repeats_alpha_per_panel_of_a_side_by_side_sheet():
    alpha = np.ones((4, 6), np.float32)
    alpha[1:3, 4:] = 0.0  # transparent at the right edge: a stretch would smear it over the seam
    pic = Picture(rgb=np.zeros((4, 6, 3), np.float32), alpha=alpha)
    sheet = pic.with_rgb(np.ones((4, 18, 3), np.float32))  # three panels, as inpaint --samples 3 writes
    assert sheet.alpha.dtype == np.float32 and np.array_equal(sheet.alpha, np.tile(alpha, (1, 3)))
    odd = pic.with_rgb(np.ones((4, 9, 3), np.float32))  # not whole panels: resized as before
    assert odd.alpha.shape == (4, 9) and odd.alpha[0, 0] == 1.0 and odd.alpha[2, -1] == 0.0
    assert 0.0 < odd.alpha[2, 5] < 1.0


def test_only_the_first_frame_is_read_and_the_count_is_kept(tmp_path, caplog, capfd, command_warnings):
    frames = [Image.fromarray(_rgb8(6, 10)) for _ in range(3)]
    frames[0].save(tmp_path / "p.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:2], lossless=True)
    frames[0].convert("P").save(tmp_path / "a.gif", save_all=True, append_images=[f.convert("P") for f in frames[1:]])
    frames[0].save(tmp_path / "one.png")
    tif = read_image(tmp_path / "p.tif")
    assert tif.frames == 3 and np.array_equal(np.round(tif.rgb * 255).astype(np.uint8), np.asarray(frames[0]))
    assert read_image(tmp_path / "a.webp").frames == 2
    assert read_image(tmp_path / "a.gif").frames == 3
    assert read_image(tmp_path / "one.png").frames == 1
    data = (tmp_path / "p.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * 0.6)])  # the second page is damaged
    with caplog.at_level(logging.DEBUG, logger="imgedit"):
        cut = read_image(tmp_path / "cut.tif")
    assert cut.frames == 1 and np.array_equal(cut.rgb, tif.rgb)  # the first page still reads
    # Pillow's warning about the damaged page: logged for --debug, naming the file, not printed raw
    assert f"{tmp_path / 'cut.tif'}: UserWarning while decoding: " in caplog.text
    assert _no_raw_warning(capfd.readouterr().err)


def test_describe_reports_the_stored_bit_depth_of_bilevel_and_low_depth_gray(tmp_path):
    bits = RNG.integers(0, 2, size=(6, 10)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    Image.fromarray(bits).save(tmp_path / "bits.tif")
    Image.fromarray((RNG.integers(0, 4, size=(6, 10)) * 85).astype(np.uint8)).save(tmp_path / "two.png", bits=2)
    Image.fromarray(bits).convert("P").save(tmp_path / "pal.png")
    assert [describe_image(tmp_path / n)["mode"] for n in ("bits.png", "bits.tif")] == ["1", "1"]
    assert describe_image(tmp_path / "bits.png")["bit_depth"] == 1
    assert describe_image(tmp_path / "bits.tif")["bit_depth"] == 1
    stored = (tmp_path / "two.png").read_bytes()[24]  # IHDR's bit depth: 2, as Pillow 13 writes it (8 before)
    assert describe_image(tmp_path / "two.png")["bit_depth"] == stored
    assert describe_image(tmp_path / "pal.png")["bit_depth"] == 8  # a palette's entries are 8-bit
    assert read_image(tmp_path / "bits.png").bit_depth == 8  # decoded pixels are 8-bit, as before


def test_unwritable_output_places_are_refused(tmp_path):
    from imgedit.atomic import check_writable_folder

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UsageError, match="afile is a file, not a folder"):
        check_writable_folder(afile / "sub", "-o out")
    check_writable_folder(tmp_path / "new" / "deeper", "-o out")  # made later: its nearest existing folder is writable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the probe is gone, nothing was made
