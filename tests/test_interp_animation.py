"""Writing frames: GIF, WebP and MP4 files open with the right number of
frames, a folder gets numbered PNGs, existing output is refused, nothing is
left half-written."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from imgedit.errors import UsageError
from imgedit_interp.animation import STAGING_SUFFIX, _staging_stem, check_free, frames_to_uint8, output_kind, write_animation


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


def test_mp4_is_vp9_where_opencv_can_write_it(tmp_path):
    # browsers play VP9 in MP4, not the MPEG-4 Part 2 of OpenCV's fallback
    from imgedit_interp.animation import MP4_CODECS

    probe = cv2.VideoWriter(str(tmp_path / "probe.mp4"), cv2.VideoWriter_fourcc(*"vp09"), 12, (32, 32))
    expected = "vp09" if probe.isOpened() else "mp4v"
    probe.release()
    path = tmp_path / "morph.mp4"
    write_animation(frames(3), path, fps=12)
    entries = [codec for codec in ("vp09", "mp4v") if codec.encode() in path.read_bytes()]  # the stsd sample entry
    assert MP4_CODECS[0] == "vp09" and entries == [expected]


def test_folder_gets_numbered_pngs_in_order(tmp_path):
    out = tmp_path / "frames"
    written = write_animation(frames(5), out)
    assert [p.name for p in written] == [f"frame_{i:04d}.png" for i in range(5)]
    assert np.array_equal(np.asarray(Image.open(written[3])), frames_to_uint8(frames(5))[3])


def test_existing_output_is_refused_before_and_at_writing(tmp_path):
    path = tmp_path / "a.gif"
    path.write_bytes(b"keep me")
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        check_free(path, overwrite=False)
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        write_animation(frames(3), path)
    assert path.read_bytes() == b"keep me"
    write_animation(frames(3), path, overwrite=True)
    assert Image.open(path).n_frames == 3


def test_overwriting_a_folder_with_fewer_frames_leaves_one_sequence(tmp_path):
    out = tmp_path / "frames"
    write_animation(frames(4), out)
    (out / "notes.txt").write_text("mine")
    (out / "frame_keep.png").write_bytes(b"not one of ours")
    with pytest.raises(UsageError, match="exists .*pass --overwrite"):
        write_animation(frames(2), out)
    written = write_animation(frames(2), out, overwrite=True)
    assert sorted(p.name for p in out.glob("frame_*.png")) == ["frame_0000.png", "frame_0001.png", "frame_keep.png"]
    assert written == sorted(out.glob("frame_000*.png"))
    assert (out / "notes.txt").read_text() == "mine"  # only files named as frames are removed


def test_any_earlier_frame_refuses_a_folder_without_overwrite(tmp_path):
    out = tmp_path / "frames"
    out.mkdir()
    (out / "frame_0007.png").write_bytes(b"old")  # not a name this run writes, but the same sequence
    with pytest.raises(UsageError, match="frame_0007.png exists"):
        check_free(out, overwrite=False)
    (out / "frame_0007.png").unlink()
    (out / "other.png").write_bytes(b"x")
    check_free(out, overwrite=False)  # files that are not frames are not in the way


def test_unknown_suffix_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"\.gif, \.webp or \.mp4"):
        output_kind(tmp_path / "x.avi")
    assert output_kind(tmp_path / "frames") == "folder"


def test_gif_plays_at_most_50_fps_and_says_so(tmp_path):
    from imgedit_interp.animation import output_notes

    path = tmp_path / "fast.gif"
    write_animation(frames(3), path, fps=120)
    with Image.open(path) as im:
        assert im.info["duration"] == 20  # round(1000 / 120) = 8 ms: written as 0, played at 100 ms
    write_animation(frames(3), path, fps=30, overwrite=True)
    with Image.open(path) as im:
        assert im.info["duration"] == 30  # GIF delays are whole 10 ms units
    (note,) = output_notes(path, 120, 32, 32)
    assert "at most 50 fps" in note and ".webp or .mp4" in note
    assert output_notes(path, 50, 32, 32) == [] and output_notes(tmp_path / "f.webp", 120, 32, 32) == []


def test_mp4_keeps_every_pixel_of_odd_sizes(tmp_path):
    from imgedit_interp.animation import output_notes

    path = tmp_path / "odd.mp4"
    write_animation(frames(3, size=9), path, fps=12)
    video = cv2.VideoCapture(str(path))
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (10, 10)
    ok, first = video.read()
    expected = frames_to_uint8(frames(3, size=9))[0][:, :, ::-1].astype(float)  # BGR
    assert ok and np.abs(first[:9, :9].astype(float) - expected).mean() < 12
    assert np.abs(first[:9, 9].astype(float) - expected[:, 8]).mean() < 12  # the padding repeats the edge
    (note,) = output_notes(path, 12, 9, 9)
    assert "padded to 10x10" in note


def test_an_interrupted_folder_rewrite_keeps_the_old_sequence(tmp_path):
    out = tmp_path / "frames"
    write_animation(frames(4), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt_at_the_third(done, count=[0]):
        count[0] += done
        if count[0] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_animation(1 - frames(6), out, overwrite=True, on_frame=interrupt_at_the_third)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new frame mixed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # the staging folder is gone
    write_animation(1 - frames(2), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png"]


def test_sigterm_during_the_moves_waits_until_the_new_sequence_is_in(tmp_path, monkeypatch):
    import os
    import signal

    out = tmp_path / "frames"
    write_animation(frames(4), out)
    moved, replace = [], os.replace

    def move_and_terminate(source, target):
        moved.append(target)
        if len(moved) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as the verb's handler would, it raises: mid-move, mixing the sequences
        replace(source, target)

    class Stopped(KeyboardInterrupt):
        pass

    def stop(signum, frame):
        raise Stopped

    monkeypatch.setattr(os, "replace", move_and_terminate)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stopped):  # held until the moves are done, then delivered
            write_animation(1 - frames(6), out, overwrite=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:04d}.png" for i in range(6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


def test_a_killed_runs_staging_folder_is_removed_by_the_next(tmp_path):
    left = tmp_path / ".frames.k1ll3d.frames.tmp"
    left.mkdir()
    (left / "frame_0000.png").write_bytes(b"half")
    other = tmp_path / ".other.abc.frames.tmp"  # another target's: not ours to remove
    other.mkdir()
    write_animation(frames(2), tmp_path / "frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.frames.tmp", "frames"]


def test_a_frame_folder_named_near_name_max_is_staged_under_a_shortened_name(tmp_path):
    from imgedit.atomic import name_max

    out = tmp_path / ("f" * (name_max(tmp_path) - 5))  # legal, but ".NAME.XXXXXXXX.frames.tmp" is not
    write_animation(frames(3), out)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    left = tmp_path / f".{_staging_stem(out)}.k1ll3d{STAGING_SUFFIX}"  # a killed run's, named as this one names them
    left.mkdir()
    write_animation(frames(2), out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert sorted(p.name for p in out.iterdir()) == ["frame_0000.png", "frame_0001.png"]


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(UsageError, match="afile is a file: give a .gif"):
        check_free(afile, overwrite=True)
    (tmp_path / "dir.gif").mkdir()
    with pytest.raises(UsageError, match="dir.gif is a folder: give a file name"):
        check_free(tmp_path / "dir.gif", overwrite=True)
    with pytest.raises(UsageError, match="afile is a file, not a folder"):
        check_free(afile / "x.gif", overwrite=False)
