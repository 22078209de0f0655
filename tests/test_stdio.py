"""`-` as an image verb's input (stdin) and output (`-o -`, stdout): imgedit in a shell pipeline."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_rgb


def imgedit(*args, data=b""):
    """Run imgedit with ``data`` on stdin, stdout and stderr kept apart as bytes and text."""
    done = subprocess.run([sys.executable, "-m", "imgedit", *map(str, args)], input=data, capture_output=True,
                          env={**os.environ, "IMGEDIT_DEVICE": "cpu"})
    return done.returncode, done.stdout, done.stderr.decode()


def png_bytes(seed=0):
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb(24, 32, seed=seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_image_on_stdin_is_edited_to_stdout_as_a_filter():
    code, out, err = imgedit("denoise", "-", "--method", "nlm", "--sigma", "5", data=png_bytes())
    assert code == 0 and err == "", err  # nothing said: the image is the output
    result = Image.open(io.BytesIO(out))
    assert result.format == "PNG" and result.size == (32, 24)  # the input's format, read from its bytes
    # the same result as from a file
    reference = np.asarray(Image.open(io.BytesIO(png_bytes())))
    assert np.abs(np.asarray(result).astype(int) - reference).max() < 40


def test_stdin_to_a_file_and_a_file_to_stdout(tmp_path):
    code, out, err = imgedit("denoise", "-", "--method", "nlm", "--sigma", "5", "-o", tmp_path / "a.jpg",
                             data=png_bytes())
    assert code == 0 and out == b"" and Image.open(tmp_path / "a.jpg").format == "JPEG", err
    (tmp_path / "b.png").write_bytes(png_bytes(1))
    code, out, err = imgedit("run", "-p", "denoise method=nlm sigma=5", tmp_path / "b.png", "-o", "-",
                             "--format", "webp")
    assert code == 0 and Image.open(io.BytesIO(out)).format == "WEBP", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "b.png"]  # nothing left beside them


@pytest.mark.parametrize("args, data, message", [
    (("-",), b"", "stdin is empty"),
    (("-", "--sigma", "5"), b"not an image", "/stdin: not an image"),
    (("-", "{photo}"), b"x", "- (the image on stdin) must be the only input"),
    (("{folder}", "-o", "-"), b"", "-o - writes one image to stdout: give one input file"),
    (("{photo}", "-o", "-", "--json"), b"", "where --json would print its summary"),
    (("{photo}", "-o", "-", "--in-place"), b"", "--in-place writes over the input file, -o - to stdout"),
])
def test_a_pipe_that_cannot_work_is_one_line(tmp_path, args, data, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.png").write_bytes(png_bytes())
    args = [a.format(photo=tmp_path / "in" / "p.png", folder=tmp_path / "in") for a in args]
    code, out, err = imgedit("denoise", *args, "--method", "nlm", data=data)
    lines = err.strip().splitlines()
    assert code in (1, 2) and out == b"" and len(lines) == 1 and message in lines[0], err
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["p.png"]
