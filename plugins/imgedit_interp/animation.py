"""Writing a sequence of frames: an animated GIF or WebP (Pillow), an MP4
(OpenCV's video writer, MPEG-4 part 2, which every OpenCV wheel can encode),
or a folder of numbered PNGs.

Every file is written atomically: an interrupted run leaves the old file or
none, never half a video.
"""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from imgedit.atomic import DestinationExists, atomic_file, write_bytes_atomic
from imgedit.errors import UsageError

ANIMATION_SUFFIXES = (".gif", ".webp", ".mp4")
FRAME_SUFFIXES = (".png",)
FRAME_NAME = re.compile(r"frame_\d{4,}\.png")  # as frame_paths names them


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
    """Refuse, before any work, an output that exists (unless ``overwrite``).

    Raises:
        UsageError: as :func:`write_animation` would, after the work.
    """
    if overwrite:
        return
    if output_kind(path) == "folder":
        # any earlier frame counts, not only those of the same names: the folder would hold a mixed sequence
        existing = existing_frames(path)
        if existing:
            raise UsageError(f"{existing[0]} exists ({len(existing)} frames in {path}); pass --overwrite to replace them")
    elif path.exists():
        raise UsageError(f"{path} exists; pass --overwrite to replace it")


def write_animation(frames: torch.Tensor, path: Path, fps: float = 12.0, overwrite: bool = False) -> list[Path]:
    """Write ``frames`` ``(N, 3, H, W)`` in [0, 1] to ``path`` (see :func:`output_kind`).
    Animations loop forever. Returns the files written.

    Raises:
        UsageError: an unknown suffix, or an existing output without ``overwrite``.
        OSError: the file cannot be written (or OpenCV cannot encode MP4).
    """
    kind = output_kind(path)
    pixels = frames_to_uint8(frames)
    try:
        if kind == "folder":
            return _write_frames(pixels, path, overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _encode_mp4(pixels, fps) if kind == "mp4" else _encode_pillow(pixels, kind, fps)
        write_bytes_atomic(path, data, overwrite=overwrite)
    except DestinationExists as exc:
        raise UsageError(f"{exc} exists; pass --overwrite to replace it") from None
    return [path]


def _encode_pillow(pixels: np.ndarray, kind: str, fps: float) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in pixels]
    options = {"duration": round(1000 / fps), "loop": 0, "save_all": True, "append_images": images[1:]}
    if kind == "webp":
        options.update(quality=90, method=4)
    else:
        options.update(optimize=False, disposal=1)
    buffer = io.BytesIO()
    images[0].save(buffer, format=kind.upper(), **options)
    return buffer.getvalue()


def _encode_mp4(pixels: np.ndarray, fps: float) -> bytes:
    import cv2

    n, h, w = pixels.shape[:3]
    with tempfile.TemporaryDirectory(prefix="imgedit-video-") as folder:
        target = str(Path(folder) / "video.mp4")
        writer = cv2.VideoWriter(target, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise OSError("OpenCV cannot write MP4 on this system; write a .gif or .webp instead")
        try:
            for frame in pixels:
                writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # OpenCV wants BGR
        finally:
            writer.release()
        return Path(target).read_bytes()


def _write_frames(pixels: np.ndarray, folder: Path, overwrite: bool) -> list[Path]:
    """Numbered PNGs in ``folder``; with ``overwrite``, an earlier run's frames
    beyond this run's are removed (after the new ones are written), so the
    folder holds one sequence."""
    from PIL import Image

    check_free(folder, overwrite)
    paths = frame_paths(folder, len(pixels))
    folder.mkdir(parents=True, exist_ok=True)
    for frame, path in zip(pixels, paths):
        with atomic_file(path, overwrite=overwrite, durable=False) as handle:  # a frame is cheap to remake
            Image.fromarray(frame).save(handle, format="PNG", compress_level=4)
    for stale in set(existing_frames(folder)) - set(paths):
        stale.unlink()
    return paths
