"""Writing frames: GIF, WebP and MP4 files open with the right number of
frames, a folder gets numbered PNGs, existing output is refused, nothing is
left half-written."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.errors import UsageError
from imgedit_interp.animation import check_free, frames_to_uint8, output_kind, write_animation


def frames(n=7, size=32):
    t = torch.linspace(0, 1, n).view(n, 1, 1, 1)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size).expand(n, 3, size, size)
    return (ramp * (1 - t) + (1 - ramp) * t).contiguous()


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_pillow_animations_have_every_frame(tmp_path, suffix):
    path = tmp_path / f"morph{suffix}"
    write_animation(frames(7), path, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 7 and im.size == (32, 32) and im.info.get("loop") == 0
        im.seek(6)
        last = np.asarray(im.convert("RGB")).astype(float)
    expected = frames_to_uint8(frames(7))[6].astype(float)
    assert np.abs(last - expected).mean() < 12  # lossy palette/codec, same picture
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_mp4_opens_with_the_right_frame_count(tmp_path):
    path = tmp_path / "morph.mp4"
    write_animation(frames(9), path, fps=12)
    video = cv2.VideoCapture(str(path))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 9 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 32


def test_folder_gets_numbered_pngs_in_order(tmp_path):
    out = tmp_path / "frames"
    written = write_animation(frames(5), out)
    assert [p.name for p in written] == [f"frame_{i:04d}.png" for i in range(5)]
    assert np.array_equal(np.asarray(Image.open(written[3])), frames_to_uint8(frames(5))[3])


def test_existing_output_is_refused_before_and_at_writing(tmp_path):
    path = tmp_path / "a.gif"
    path.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        check_free(path, 3, overwrite=False)
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        write_animation(frames(3), path)
    assert path.read_bytes() == b"keep me"
    write_animation(frames(3), path, overwrite=True)
    assert Image.open(path).n_frames == 3


def test_unknown_suffix_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"\.gif, \.webp or \.mp4"):
        output_kind(tmp_path / "x.avi")
    assert output_kind(tmp_path / "frames") == "folder"
