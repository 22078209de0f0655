"""Writing a sequence of frames: an animated GIF or WebP (Pillow), an MP4
(OpenCV's video writer, MPEG-4 part 2, which every OpenCV wheel can encode),
or a folder of numbered PNGs.

Every file is written atomically: an interrupted run leaves the old file or
none, never half a video; a folder of frames is written beside its target
and moved in whole, so it keeps the old sequence or gets the new one.

Formats have limits, kept by adjusting what is written (the verb says so up
front, :func:`output_notes`): a GIF's frame delay is in 10 ms units and
browsers play delays under 20 ms at 100 ms, so GIFs play at most at
:data:`GIF_MAX_FPS`; MPEG-4 needs even sides, so an odd side is padded by
repeating its edge pixels (every pixel kept).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from imgedit.atomic import DestinationExists, new_file_mode, write_bytes_atomic
from imgedit.errors import UsageError

ANIMATION_SUFFIXES = (".gif", ".webp", ".mp4")
FRAME_NAME = re.compile(r"frame_\d{4,}\.png")  # as frame_paths names them
STAGING_SUFFIX = ".frames.tmp"  # a folder of new frames beside the target: .NAME.XXXX.frames.tmp
GIF_MAX_FPS = 50.0  # a 20 ms delay: browsers play shorter ones at 100 ms

OnFrame = Callable[[int], None]  # called with the number of frames just written (a progress bar)


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(N, 3, H, W)`` in [0, 1] -> ``(N, H, W, 3)`` uint8, rounded."""
    return (frames.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def output_kind(path: Path) -> str:
    """``gif``, ``webp``, ``mp4`` or ``folder`` (a path without a suffix, or an existing folder).

    Raises:
        UsageError: any other suffix.
    """
    suffix = path.suffix.lower()
    if suffix in ANIMATION_SUFFIXES:
        return suffix[1:]
    if path.is_dir() or not suffix:
        return "folder"
    raise UsageError(f"-o {path}: write a .gif, .webp or .mp4 file, or give a folder for numbered PNG frames")


def frame_paths(folder: Path, count: int) -> list[Path]:
    digits = max(4, len(str(count - 1)))
    return [folder / f"frame_{i:0{digits}d}.png" for i in range(count)]


def existing_frames(folder: Path) -> list[Path]:
    """The numbered PNG frames already in ``folder`` (named as :func:`frame_paths` names them; other files are not ours)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if FRAME_NAME.fullmatch(p.name) and p.is_file())


def check_free(path: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output that exists (unless ``overwrite``)
    or that could not be written (a file where the frames' folder should be,
    a folder where the file should be, a folder that cannot be written in).

    Raises:
        UsageError: as :func:`write_animation` would, after the work.
    """
    from imgedit.atomic import check_writable_folder

    kind = output_kind(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UsageError(f"-o {path} is a file: give a .gif, .webp or .mp4 name, or a folder for numbered PNG frames")
    if kind != "folder" and path.is_dir():
        raise UsageError(f"-o {path} is a folder: give a file name, or a folder name without .{kind}")
    check_writable_folder(path.parent, f"-o {path}")  # the file's temporary, or the frames' staging folder, goes there
    if kind == "folder" and path.is_dir():
        check_writable_folder(path, f"-o {path}")
    if overwrite:
        return
    if kind == "folder":
        # any earlier frame counts, not only those of the same names: the folder would hold a mixed sequence
        existing = existing_frames(path)
        if existing:
            raise UsageError(f"{existing[0]} exists ({len(existing)} frames in {path}); pass --overwrite to replace them")
    elif path.exists():
        raise UsageError(f"{path} exists; pass --overwrite to replace it")


def gif_delay_ms(fps: float) -> int:
    """The frame delay a GIF can hold nearest ``fps``: whole 10 ms units, at least 20 ms."""
    return 10 * max(2, round(100 / fps))


def output_notes(path: Path, fps: float, height: int, width: int) -> list[str]:
    """One line per way the output will differ from what was asked (see the module docstring)."""
    kind, notes = output_kind(path), []
    if kind == "gif" and fps > GIF_MAX_FPS:
        notes.append(f"a GIF plays at most {GIF_MAX_FPS:g} fps (frame delay 20 ms; browsers slow shorter delays "
                     f"to 100 ms): writing {GIF_MAX_FPS:g} fps, not {fps:g}; write .webp or .mp4 for {fps:g} fps")
    if kind == "mp4" and (height % 2 or width % 2):
        notes.append(f"MP4 needs even sides: {width}x{height} frames are padded to {width + width % 2}x"
                     f"{height + height % 2} by repeating the edge pixels")
    return notes


def write_animation(frames: torch.Tensor, path: Path, fps: float = 12.0, overwrite: bool = False,
                    on_frame: Optional[OnFrame] = None, source_mode: Optional[int] = None) -> list[Path]:
    """Write ``frames`` ``(N, 3, H, W)`` in [0, 1] to ``path`` (see :func:`output_kind`).
    Animations loop forever; a GIF plays at most at :data:`GIF_MAX_FPS` and
    an MP4's odd sides are padded (:func:`output_notes` says so). Returns
    the files written; ``on_frame(k)`` follows the frames as they are encoded.
    ``source_mode``: the key photos' permission bits, ANDed: new files are
    readable by no one they withhold a photo from.

    Raises:
        UsageError: an unknown suffix, or an existing output without ``overwrite``.
        OSError: the file cannot be written (or OpenCV cannot encode MP4).
    """
    kind = output_kind(path)
    pixels = frames_to_uint8(frames)
    on_frame = on_frame or (lambda done: None)
    try:
        if kind == "folder":
            return _write_frames(pixels, path, overwrite, on_frame, source_mode)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _encode_mp4(pixels, fps, on_frame) if kind == "mp4" else _encode_pillow(pixels, kind, fps, on_frame)
        write_bytes_atomic(path, data, overwrite=overwrite, source_mode=source_mode)
    except DestinationExists as exc:
        raise UsageError(f"{exc} exists; pass --overwrite to replace it") from None
    return [path]


def _encode_pillow(pixels: np.ndarray, kind: str, fps: float, on_frame: OnFrame) -> bytes:
    from PIL import Image

    def image(frame: np.ndarray) -> "Image.Image":
        on_frame(1)  # Pillow takes the frames one by one as it encodes
        return Image.fromarray(frame)

    delay = gif_delay_ms(fps) if kind == "gif" else round(1000 / fps)
    first, rest = image(pixels[0]), (image(frame) for frame in pixels[1:])
    options = {"duration": delay, "loop": 0, "save_all": True, "append_images": rest}
    if kind == "webp":
        options.update(quality=90, method=4)
    else:
        options.update(optimize=False, disposal=1)
    buffer = io.BytesIO()
    first.save(buffer, format=kind.upper(), **options)
    return buffer.getvalue()


def _encode_mp4(pixels: np.ndarray, fps: float, on_frame: OnFrame) -> bytes:
    n, h, w = pixels.shape[:3]
    if h % 2 or w % 2:  # MPEG-4 needs even sides: OpenCV would drop the last row or column
        pixels = np.pad(pixels, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = h + h % 2, w + w % 2
    with tempfile.TemporaryDirectory(prefix="imgedit-video-") as folder:
        target = str(Path(folder) / "video.mp4")
        writer = _video_writer(target, fps, (w, h))
        try:
            for frame in pixels:
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV wants BGR
                on_frame(1)
        finally:
            writer.release()
        return Path(target).read_bytes()


#: The codecs an .mp4 is written with, the first OpenCV can encode: VP9,
#: which browsers play (OpenCV's wheels have no H.264 encoder), else MPEG-4
#: Part 2, which VLC and mpv play but browsers do not.
MP4_CODECS = ("vp09", "mp4v")


def _video_writer(target: str, fps: float, size: tuple[int, int]) -> Any:
    import cv2

    for codec in MP4_CODECS:
        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*codec), fps, size)
        if writer.isOpened():
            return writer
    raise OSError("OpenCV cannot write MP4 on this system; write a .gif or .webp instead")


def _write_frames(pixels: np.ndarray, folder: Path, overwrite: bool, on_frame: OnFrame,
                  source_mode: Optional[int] = None) -> list[Path]:
    """Numbered PNGs in ``folder``, all or nothing: written into a staging
    folder beside it, then moved in and (with ``overwrite``) an earlier
    run's frames beyond this run's removed, so the folder holds one
    sequence, the old or the new, whatever interrupts the writing."""
    from PIL import Image

    check_free(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{_staging_stem(folder)}.", suffix=STAGING_SUFFIX))
    try:
        staged = frame_paths(staging, len(pixels))
        for frame, path in zip(pixels, staged):
            with path.open("wb") as handle:  # the staging folder is private: no per-file atomicity needed
                Image.fromarray(frame).save(handle, format="PNG", compress_level=4)
            if source_mode is not None:
                os.chmod(path, new_file_mode(source_mode))
            on_frame(1)
        with _deferred_interrupt():  # a few renames: Ctrl-C here would mix the sequences again
            paths = _move_frames_in(staged, folder, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def _move_frames_in(staged: list[Path], folder: Path, overwrite: bool) -> list[Path]:
    """Rename the staged frames into ``folder``, then remove its frames this sequence does not have."""
    check_free(folder, overwrite)  # another run may have written frames meanwhile
    folder.mkdir(exist_ok=True)
    paths = [folder / path.name for path in staged]
    for source, target in zip(staged, paths):
        os.replace(source, target)
    for stale in set(existing_frames(folder)) - set(paths):
        stale.unlink()
    return paths


def _staging_stem(folder: Path) -> str:
    """The NAME of ``.NAME.XXXXXXXX.frames.tmp``: ``folder``'s name, or for a
    name too long for that, its start and a hash (as atomic files do)."""
    from imgedit.atomic import name_max, temp_stem

    return temp_stem(folder.name, name_max(folder.parent), STAGING_SUFFIX)


def remove_stale_staging(folder: Path) -> None:
    """Remove the staging folders that killed writers of ``folder`` left beside it."""
    with suppress(OSError):
        prefix = f".{_staging_stem(folder)}."
        for entry in folder.parent.iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(STAGING_SUFFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and kill or a job scheduler


@contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) or SIGTERM until the block ends, then deliver
    it to the handler it would have reached (main thread only: elsewhere
    signals cannot be caught, nor arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {number: signal.signal(number, lambda got, frame: caught.append(got)) for number in DEFERRED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    if caught:
        signal.raise_signal(caught[0])  # KeyboardInterrupt, the verb's SIGTERM handler, or the default: the process ends
