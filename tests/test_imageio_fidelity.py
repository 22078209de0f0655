"""Tests for imgedit.imageio's faithfulness to the source beyond pixels: the EXIF thumbnail,
lossless WebP, JPEG quality / subsampling / progressive, non-ASCII TIFF text, EXIF in TIFF, AVIF metadata,
sRGB for formats without a profile, EXIF too large for JPEG, PNG gamma chunks, GIF/TGA alpha."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin, features

from imgedit.imageio import Picture, encode, pngchunks, read_image, write_image
from imgedit.imageio.compression import estimate_jpeg_quality, is_lossless_webp
from imgedit.imageio.exif import without_thumbnail

RNG = np.random.default_rng(99)
IFD1 = ExifTags.IFD.IFD1
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
MAKER_NOTE = b"ACME\0" + bytes(range(40))  # opaque vendor data; must come through byte for byte


# ---------------------------------------------------------------- helpers


def _rgb8(h: int = 8, w: int = 16) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _smooth8(h: int = 16, w: int = 24) -> np.ndarray:
    """A gradient: JPEG-friendly, so quality and subsampling show in the tables, not in noise."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=2).astype(np.uint8)


def _thumbnail_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_rgb8(4, 6)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _camera_exif(orientation: int, width: int, height: int, order: str = "<") -> Image.Exif:
    exif = Image.Exif()
    exif.endian = order  # "<": little-endian ("II") EXIF, ">": big-endian ("MM")
    exif[0x0112] = orientation
    exif[0x010F] = "ACME"
    sub = exif.get_ifd(EXIF_IFD)
    sub[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal
    sub[0xA002], sub[0xA003] = width, height  # PixelXDimension / PixelYDimension
    sub[0x927C] = MAKER_NOTE
    exif.get_ifd(GPS_IFD)[1] = "N"  # GPSLatitudeRef
    return exif


def _with_thumbnail(exif: bytes, thumbnail: bytes) -> bytes:
    """Appends IFD1 with a JPEG thumbnail to EXIF (``Exif\\0\\0`` + TIFF), as cameras store it:
    linked from IFD0, after everything else. Pillow's writer cannot do this itself."""
    tiff = bytearray(exif[6:])
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd0,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd0)
    ifd1 = len(tiff) + len(tiff) % 2
    struct.pack_into(order + "I", tiff, ifd0 + 2 + 12 * count, ifd1)
    data_at = ifd1 + 2 + 3 * 12 + 4
    entries = [(0x0103, 3, 1, 6), (0x0201, 4, 1, data_at), (0x0202, 4, 1, len(thumbnail))]  # Compression=JPEG
    directory = struct.pack(order + "H", len(entries))
    for tag, typ, n, value in entries:
        directory += struct.pack(order + "HHI", tag, typ, n)
        directory += struct.pack(order + "HH", value, 0) if typ == 3 else struct.pack(order + "I", value)
    directory += struct.pack(order + "I", 0)
    tiff += bytes(ifd1 - len(tiff)) + directory + thumbnail
    return exif[:6] + bytes(tiff)


def _camera_jpeg(path: Path, orientation: int = 1, order: str = "<") -> bytes:
    """A JPEG (16 x 8 stored) whose EXIF holds a thumbnail; returns the thumbnail's bytes."""
    thumbnail = _thumbnail_jpeg()
    exif = _with_thumbnail(_camera_exif(orientation, 16, 8, order).tobytes(), thumbnail)
    Image.fromarray(_rgb8(8, 16)).save(path, exif=exif, quality=90)
    assert Image.open(path).getexif().get_ifd(IFD1), "the test input must really have IFD1"
    return thumbnail


def _webp_bytes(lossless: bool, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_rgb8()).save(buffer, format="WEBP", lossless=lossless, **options)
    return buffer.getvalue()


def _jpeg(path: Path, quality: int, subsampling: int, **options) -> Path:
    Image.fromarray(_smooth8()).save(path, quality=quality, subsampling=subsampling, **options)
    return path


# ---------------------------------------------------------------- EXIF thumbnail


@pytest.mark.parametrize("suffix,depth", [(".jpg", 8), (".png", 8), (".png", 16), (".webp", 8)])
def test_exif_thumbnail_is_dropped_and_the_rest_kept(tmp_path, suffix, depth):
    thumbnail = _camera_jpeg(tmp_path / "in.jpg")
    picture = read_image(tmp_path / "in.jpg")
    picture.bit_depth = depth
    out = write_image(picture, tmp_path / f"out{suffix}")
    # The thumbnail shows the unedited picture: not even its bytes may remain.
    assert thumbnail[20:] not in out.read_bytes()
    written = Image.open(out).getexif()
    assert written.get_ifd(IFD1) == {}
    assert written[0x010F] == "ACME" and written.get_ifd(GPS_IFD)[1] == "N"
    assert written.get_ifd(EXIF_IFD)[0x9003] == "2024:01:02 03:04:05"
    assert written.get_ifd(EXIF_IFD)[0x927C] == MAKER_NOTE


@pytest.mark.parametrize("order", ["<", ">"])
def test_dropping_the_thumbnail_keeps_every_byte_before_it(tmp_path, order):
    # In place, not re-serialised: maker notes with their own offsets stay valid.
    thumbnail = _thumbnail_jpeg()
    source = _with_thumbnail(_camera_exif(1, 16, 8, order).tobytes(), thumbnail)
    kept = without_thumbnail(source)
    head = _camera_exif(1, 16, 8, order).tobytes()  # the same EXIF without IFD1
    assert kept == head and thumbnail not in kept


def test_rotated_source_gets_upright_exif_without_its_sideways_thumbnail(tmp_path):
    _camera_jpeg(tmp_path / "in.jpg", orientation=6)
    picture = read_image(tmp_path / "in.jpg")
    assert (picture.width, picture.height) == (8, 16)
    written = Image.open(write_image(picture, tmp_path / "out.jpg")).getexif()
    assert written[0x0112] == 1 and written.get_ifd(IFD1) == {}
    # The stored pixel size describes the written (upright) image.
    assert (written.get_ifd(EXIF_IFD)[0xA002], written.get_ifd(EXIF_IFD)[0xA003]) == (8, 16)


def test_exif_pixel_size_follows_a_resized_result(tmp_path):
    _camera_jpeg(tmp_path / "in.jpg")
    picture = read_image(tmp_path / "in.jpg")
    bigger = picture.with_rgb(np.zeros((80, 21, 3), dtype=np.float32))  # an operation that resizes
    written = Image.open(write_image(bigger, tmp_path / "out.jpg")).getexif().get_ifd(EXIF_IFD)
    assert (written[0xA002], written[0xA003]) == (21, 80)


def test_pixel_size_above_65535_widens_a_short_tag():
    from imgedit.imageio.exif import with_pixel_size

    exif = _camera_exif(1, 16, 8).tobytes()  # Pillow stores small sizes as SHORT
    parsed = Image.Exif()
    parsed.load(with_pixel_size(exif, 70_000, 9))
    assert (parsed.get_ifd(EXIF_IFD)[0xA002], parsed.get_ifd(EXIF_IFD)[0xA003]) == (70_000, 9)


# ---------------------------------------------------------------- lossless WebP


def test_lossless_webp_source_stays_lossless_without_a_quality(tmp_path):
    (tmp_path / "in.webp").write_bytes(_webp_bytes(lossless=True))
    picture = read_image(tmp_path / "in.webp")
    edited = picture.with_rgb(np.where(np.eye(8, 16, dtype=bool)[:, :, None], 1.0, picture.rgb))
    out = write_image(edited, tmp_path / "out.webp")
    assert np.array_equal(read_image(out).rgb, edited.rgb)
    assert is_lossless_webp(out.read_bytes()) and picture.encoding.lossless


def test_explicit_quality_and_lossy_sources_stay_lossy(tmp_path):
    (tmp_path / "lossless.webp").write_bytes(_webp_bytes(lossless=True))
    (tmp_path / "lossy.webp").write_bytes(_webp_bytes(lossless=False))
    asked = write_image(read_image(tmp_path / "lossless.webp"), tmp_path / "asked.webp", quality=95)
    kept = write_image(read_image(tmp_path / "lossy.webp"), tmp_path / "kept.webp")
    assert not is_lossless_webp(asked.read_bytes()) and not is_lossless_webp(kept.read_bytes())


def test_lossless_webp_detection_walks_the_chunks():
    decoy = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">VP8L</x:xmpmeta>'  # "VP8L" where a byte search finds it
    assert not is_lossless_webp(_webp_bytes(lossless=False, xmp=decoy))
    assert is_lossless_webp(_webp_bytes(lossless=True, xmp=decoy, exif=b"Exif\0\0II*\0"))  # extended (VP8X)
    frames = [Image.fromarray(_rgb8()), Image.fromarray(_rgb8())]
    animated = io.BytesIO()
    frames[0].save(animated, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert is_lossless_webp(animated.getvalue())
    assert not is_lossless_webp(b"RIFF\x04\x00\x00\x00WEBP") and not is_lossless_webp(b"not a webp")


# ---------------------------------------------------------------- JPEG quality, subsampling, progressive


@pytest.mark.parametrize("quality", [30, 60, 75, 90, 95, 100])
def test_jpeg_quality_estimate_matches_libjpeg(tmp_path, quality):
    tables = Image.open(_jpeg(tmp_path / "q.jpg", quality, 2)).quantization
    assert estimate_jpeg_quality(tables) == quality
    assert estimate_jpeg_quality({}) is None


def test_jpeg_source_keeps_its_quality_and_subsampling_without_a_quality(tmp_path):
    source = _jpeg(tmp_path / "in.jpg", 85, 2)  # 4:2:0
    out = write_image(read_image(source), tmp_path / "out.jpg")
    written = Image.open(out)
    assert JpegImagePlugin.get_sampling(written) == 2
    assert written.quantization == Image.open(source).quantization  # the same quality, exactly


@pytest.mark.parametrize("source_quality,kept", [(40, 75), (100, 95)])
def test_kept_jpeg_quality_stays_within_75_and_95(tmp_path, source_quality, kept):
    out = write_image(read_image(_jpeg(tmp_path / "in.jpg", source_quality, 0)), tmp_path / "out.jpg")
    assert estimate_jpeg_quality(Image.open(out).quantization) == kept


def test_explicit_jpeg_quality_keeps_the_old_settings(tmp_path):
    picture = read_image(_jpeg(tmp_path / "in.jpg", 85, 2))
    written = Image.open(write_image(picture, tmp_path / "out.jpg", quality=95))
    assert JpegImagePlugin.get_sampling(written) == 0 and estimate_jpeg_quality(written.quantization) == 95


def test_non_jpeg_source_to_jpeg_gets_quality_95_without_subsampling(tmp_path):
    picture = Picture(rgb=_smooth8().astype(np.float32) / 255)
    written = Image.open(write_image(picture, tmp_path / "out.jpg"))
    assert JpegImagePlugin.get_sampling(written) == 0 and estimate_jpeg_quality(written.quantization) == 95


@pytest.mark.parametrize("quality", [None, 80])
def test_progressive_jpeg_stays_progressive(tmp_path, quality):
    source = _jpeg(tmp_path / "in.jpg", 90, 2, progressive=True)
    assert read_image(source).encoding.progressive
    out = write_image(read_image(source), tmp_path / "out.jpg", quality=quality)
    assert Image.open(out).info.get("progressive")
    plain = write_image(read_image(_jpeg(tmp_path / "plain.jpg", 90, 2)), tmp_path / "plain_out.jpg")
    assert not Image.open(plain).info.get("progressive")


# ---------------------------------------------------------------- TIFF text


@pytest.mark.parametrize("depth", [8, 16])
def test_non_ascii_text_round_trips_through_tiff(tmp_path, depth):
    if depth == 16:
        pytest.importorskip("tifffile")
    text = {"Description": "Café ✓ 東京", "Software": "Bildbearbeitung für Ärzte", "Author": "Zoë",
            "Copyright": "© 2024"}
    picture = Picture(rgb=_rgb8().astype(np.float32) / 255, text=dict(text), bit_depth=depth)
    out = write_image(picture, tmp_path / "out.tif")
    assert read_image(out).text == text
    assert "Café ✓ 東京".encode("utf-8") in out.read_bytes()  # UTF-8, as other readers expect


def test_latin1_tiff_text_is_still_read(tmp_path):
    Image.fromarray(_rgb8()).save(tmp_path / "in.tif", description=b"caf\xe9")  # not valid UTF-8
    assert read_image(tmp_path / "in.tif").text["Description"] == "café"


# ---------------------------------------------------------------- EXIF in TIFF outputs

_TIFF_SOURCE_TAGS = {270: "A description", 271: "ACME", 272: "Cam 1", 305: "SomeSoft",
                     306: "2024:05:01 11:00:00", 315: "A. Person", 33432: "(c) 2024"}


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _tiff_depth(depth: int) -> None:
    if depth == 16:
        pytest.importorskip("tifffile")


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_source_camera_tags_reach_a_tiff(tmp_path, depth):
    _tiff_depth(depth)
    Image.fromarray(_rgb8()).save(tmp_path / "in.tif", tiffinfo=dict(_TIFF_SOURCE_TAGS), icc_profile=_srgb_icc())
    picture = read_image(tmp_path / "in.tif")
    picture.bit_depth = depth
    written = Image.open(write_image(picture, tmp_path / "out.tif"))
    assert {tag: written.tag_v2.get(tag) for tag in _TIFF_SOURCE_TAGS} == _TIFF_SOURCE_TAGS
    assert written.info["icc_profile"] == _srgb_icc() and max(written.tag_v2[258]) == depth
    assert 274 not in written.tag_v2  # no orientation: the pixels are upright
    from imgedit.imageio.describe import describe_image

    assert describe_image(tmp_path / "in.tif")["exif"] is True  # 'imgedit info' said False
    # ...and to other formats, as EXIF (there is no other home for them there)
    exif = Image.open(write_image(picture, tmp_path / "out.jpg")).getexif()
    assert (exif[271], exif[272], exif[306]) == ("ACME", "Cam 1", "2024:05:01 11:00:00")


@pytest.mark.parametrize("depth", [8, 16])
def test_exif_and_gps_ifds_reach_a_tiff(tmp_path, depth):
    _tiff_depth(depth)
    _camera_jpeg(tmp_path / "in.jpg", orientation=6)  # stored 16 x 8, shown 8 x 16
    picture = read_image(tmp_path / "in.jpg")
    picture.bit_depth = depth
    out = write_image(picture, tmp_path / "out.tif")
    written = Image.open(out)
    exif = written.getexif()
    sub = exif.get_ifd(EXIF_IFD)
    assert sub[0x9003] == "2024:01:02 03:04:05" and sub[0x927C] == MAKER_NOTE
    assert (sub[0xA002], sub[0xA003]) == (8, 16) == written.size  # the written size, not the source's
    assert exif.get_ifd(GPS_IFD)[1] == "N" and exif[0x010F] == "ACME"
    assert exif.get(0x0112, 1) == 1
    back = read_image(out)  # the pixels are intact behind the rewritten directory
    assert (back.width, back.height) == (8, 16)
    assert np.abs(back.rgb - picture.rgb).max() <= (1 / 255 if depth == 8 else 1 / 65535) + 1e-6


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_tiff_source_exif_ifds_are_carried(tmp_path, suffix):
    # Pillow's own (uncompressed) TIFF writer can link an Exif IFD: a TIFF as cameras and raw converters write
    Image.fromarray(_rgb8(8, 16)).save(tmp_path / "in.tif", exif=_camera_exif(1, 16, 8).tobytes())
    exif = Image.open(write_image(read_image(tmp_path / "in.tif"), tmp_path / f"out{suffix}")).getexif()
    assert exif.get_ifd(EXIF_IFD)[0x9003] == "2024:01:02 03:04:05" and exif.get_ifd(GPS_IFD)[1] == "N"
    assert exif[0x010F] == "ACME"


def test_tiff_without_exif_ifds_is_written_unchanged():
    from imgedit.imageio.exif import with_sub_ifds

    buffer = io.BytesIO()
    Image.fromarray(_rgb8()).save(buffer, format="TIFF", compression="tiff_adobe_deflate")
    plain = Image.Exif()
    plain[0x010F] = "ACME"  # IFD0 only
    assert with_sub_ifds(buffer.getvalue(), plain.tobytes()) == buffer.getvalue()
    assert with_sub_ifds(buffer.getvalue(), b"Exif\0\0not a TIFF") == buffer.getvalue()


# ---------------------------------------------------------------- AVIF, and formats without a profile


def _adobe_rgb_icc() -> bytes:
    """A minimal ICC v2 matrix/TRC display profile: Adobe RGB (1998)'s D50-adapted primaries, gamma 2.2."""

    def xyz(*values: float) -> bytes:
        return b"XYZ \0\0\0\0" + struct.pack(">3i", *(round(v * 65536) for v in values))

    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, 563) + b"\0\0"  # 563/256 = 2.2 (u8Fixed8)
    text = b"Adobe RGB (test)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(78)  # no Unicode or ScriptCode text
    white = xyz(0.9642, 1.0, 0.8249)
    tags = [(b"desc", desc), (b"wtpt", white), (b"rXYZ", xyz(0.6097, 0.3111, 0.0195)),
            (b"gXYZ", xyz(0.2053, 0.6257, 0.0609)), (b"bXYZ", xyz(0.1492, 0.0632, 0.7446)),
            (b"rTRC", gamma), (b"gTRC", gamma), (b"bTRC", gamma)]
    table, body, start = b"", b"", 128 + 4 + 12 * len(tags)
    for signature, data in tags:
        data += bytes(-len(data) % 4)
        table += signature + struct.pack(">II", start + len(body), len(data))
        body += data
    size = start + len(body)
    header = struct.pack(">I4sI4s4s4s12s4s", size, bytes(4), 0x02100000, b"mntr", b"RGB ", b"XYZ ", bytes(12), b"acsp")
    header += bytes(28) + white[8:] + bytes(48)  # platform..intent, the D50 illuminant, creator, id, reserved
    return header + struct.pack(">I", len(tags)) + table + body


@pytest.mark.skipif(not features.check("avif"), reason="Pillow without AVIF")
def test_avif_round_trip_keeps_alpha_icc_exif_and_xmp(tmp_path):
    rgba = np.dstack([_smooth8(), np.tile(np.linspace(0, 255, 24).astype(np.uint8), (16, 1))])
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc>test</dc></x:xmpmeta>'
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgba).save(tmp_path / "in.avif", quality=90, icc_profile=icc,
                               exif=_camera_exif(1, 24, 16).tobytes(), xmp=xmp)
    out = write_image(read_image(tmp_path / "in.avif"), tmp_path / "out.avif")
    back = read_image(out)
    assert back.alpha is not None and np.abs(back.alpha * 255 - rgba[:, :, 3]).max() < 8
    assert back.icc_profile == icc and "xmpmeta" in back.text["XML:com.adobe.xmp"]
    assert Image.open(out).getexif()[0x010F] == "ACME"


@pytest.mark.parametrize("suffix", [".bmp", ".gif", ".tga"])
def test_a_format_without_profiles_gets_adobe_rgb_pixels_converted_to_srgb(tmp_path, suffix):
    icc = _adobe_rgb_icc()
    rgb = _smooth8()
    out = write_image(Picture(rgb=rgb.astype(np.float32) / 255, icc_profile=icc), tmp_path / f"out{suffix}")
    srgb = ImageCms.profileToProfile(Image.fromarray(rgb), ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                     ImageCms.createProfile("sRGB"))
    written = np.asarray(Image.open(out).convert("RGB"), np.int16)
    error = np.abs(written - np.asarray(srgb, np.int16)).mean()
    assert error < 3 if suffix == ".gif" else error == 0  # GIF: a palette of 256 colours
    assert np.abs(written - rgb).mean() > 5  # the unconverted pixels: they would show dull


def test_an_srgb_source_to_bmp_keeps_its_pixels_exactly(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = _rgb8()
    out = write_image(Picture(rgb=rgb.astype(np.float32) / 255, icc_profile=icc), tmp_path / "out.bmp")
    assert np.array_equal(np.asarray(Image.open(out)), rgb)


# ---------------------------------------------------------------- EXIF and XMP too large for JPEG


def test_exif_too_large_for_a_jpeg_keeps_what_fits_and_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(encode, "_warned", set())
    exif = _camera_exif(1, 16, 8)
    exif[0x8298] = "(c) ACME"  # Copyright
    exif.get_ifd(EXIF_IFD)[0x927C] = b"M" * 40_000  # a long MakerNote
    exif[0x010E] = "d" * 30_000  # and a long ImageDescription: 70 KB in all
    picture = Picture(rgb=_rgb8().astype(np.float32) / 255, exif=exif.tobytes(), path=tmp_path / "in.png")
    for name in ("a.jpg", "b.jpg"):
        written = Image.open(write_image(picture, tmp_path / name)).getexif()
        assert (written[0x010F], written[0x8298], written[0x010E]) == ("ACME", "(c) ACME", "d" * 30_000)
        assert written.get_ifd(EXIF_IFD)[0x9003] == "2024:01:02 03:04:05" and 0x927C not in written.get_ifd(EXIF_IFD)
    assert caplog.text.count("left out: MakerNote") == 1


def test_xmp_too_large_for_a_jpeg_is_left_out_with_a_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(encode, "_warned", set())
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/">' + "Y" * 70_000 + "</x:xmpmeta>"
    picture = Picture(rgb=_rgb8().astype(np.float32) / 255, text={"XML:com.adobe.xmp": xmp})
    assert "xmp" not in Image.open(write_image(picture, tmp_path / "out.jpg")).info
    assert "XMP of 68 KB is more than a JPEG segment holds" in caplog.text


# ---------------------------------------------------------------- PNG colour chunks


@pytest.mark.parametrize("depth", [8, 16])
def test_png_gamma_chromaticity_and_srgb_chunks_reach_a_png_output(tmp_path, depth):
    Image.fromarray(_rgb8()).save(tmp_path / "in.png")
    chunks = [pngchunks.make_chunk(b"gAMA", struct.pack(">I", 100000)),  # gamma 1.0: linear samples
              pngchunks.make_chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
              pngchunks.make_chunk(b"sRGB", b"\x01")]
    data = (tmp_path / "in.png").read_bytes()
    (tmp_path / "in.png").write_bytes(data[:33] + b"".join(chunks) + data[33:])  # after IHDR
    picture = read_image(tmp_path / "in.png")
    picture.bit_depth = depth
    written = dict(pngchunks.iter_chunks(write_image(picture, tmp_path / "out.png").read_bytes()))
    assert {kind: written.get(kind) for kind in (b"gAMA", b"cHRM", b"sRGB")} == {c[4:8]: c[8:-4] for c in chunks}
    order = list(dict(pngchunks.iter_chunks((tmp_path / "out.png").read_bytes())))
    assert order.index(b"gAMA") < order.index(b"IDAT")


# ---------------------------------------------------------------- alpha in GIF and TGA


@pytest.mark.parametrize("suffix", [".gif", ".tga"])
def test_gif_keeps_transparency_and_tga_keeps_alpha(tmp_path, suffix):
    alpha = np.full((8, 16), 255, np.uint8)
    alpha[2:5, 3:9] = 0
    alpha[6, :] = 100  # half transparent: GIF has only clear or opaque, cut at half
    picture = Picture(rgb=_rgb8().astype(np.float32) / 255, alpha=alpha.astype(np.float32) / 255)
    back = read_image(write_image(picture, tmp_path / f"out{suffix}"))
    assert back.alpha is not None
    expected = (alpha >= 128) * 255 if suffix == ".gif" else alpha
    assert np.array_equal(np.round(back.alpha * 255), expected)
