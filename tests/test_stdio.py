"""`-` as an image verb's input (stdin) and output (`-o -`, stdout): imgedit in a shell pipeline."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import fake_distribution, interruptible, reaped, smooth_rgb


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
    (("-", "--sigma", "5"), b"not an image", "stdin: not an image"),
    (("-", "{photo}"), b"x", "- (the image on stdin) must be the only input"),
    (("{photo}", "-o", "-", "--json"), b"", "where --json would print its summary"),
    (("{photo}", "-o", "-", "--in-place"), b"", "--in-place writes over the input file, -o - to stdout"),
    (("-", "--in-place"), b"x", "stdin has none: give -o FILE"),
    (("{folder}/*", "-o", "-"), b"", "the inputs hold 2: give one file"),  # refused before any work
])
def test_a_pipe_that_cannot_work_is_one_line(tmp_path, args, data, message):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.png").write_bytes(png_bytes())
    if "{folder}/*" in args:
        (tmp_path / "in" / "q.png").write_bytes(png_bytes(1))
    args = [a.format(photo=tmp_path / "in" / "p.png", folder=tmp_path / "in") for a in args]
    code, out, err = imgedit("denoise", *args, "--method", "nlm", data=data)
    lines = err.strip().splitlines()
    assert code in (1, 2) and out == b"" and len(lines) == 1 and message in lines[0], err
    assert "imgedit-stdio-" not in err  # the temporary files are named as the streams they stand for
    assert not list((tmp_path / "in").glob("*.denoise.*")) and not (tmp_path / "in" / ".imgedit-journal.jsonl").exists()


def test_a_transparent_image_on_stdin_gives_inpaint_its_hole():
    # the temporary file had no suffix, so inpaint found "no mask" in a PNG with transparency
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = smooth_rgb(24, 32), 255
    rgba[8:14, 10:18, 3] = 0
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    code, out, err = imgedit("inpaint", "-", "--method", "telea", data=buffer.getvalue())
    assert code == 0 and Image.open(io.BytesIO(out)).size == (32, 24), err


@pytest.mark.skipif(os.name != "posix", reason="closing a standard stream is a POSIX shell's")
def test_a_closed_stream_is_not_taken_for_a_pipe(tmp_path):
    # stdout closed (>&-) read as /dev/null: the image went nowhere, exit 0
    (tmp_path / "p.png").write_bytes(png_bytes())
    for redirect, message in ((">&-", "stdout, which is closed"), ("<&-", "stdin, which is closed")):
        args = f"{tmp_path / 'p.png'} -o -" if redirect == ">&-" else "-"
        done = subprocess.run(["sh", "-c", f'"$0" -m imgedit denoise {args} --method nlm 2>&1 {redirect}', sys.executable],
                              capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stdout, done.stdout


def test_what_a_piped_run_prints_names_stdin_and_stdout_not_its_temporary_files(tmp_path):
    code, out, err = imgedit("denoise", "-", "--method", "nlm", "--sigma", "5", "-o", tmp_path / "od", "--json",
                             data=png_bytes())
    assert code == 0 and [o["input"] for o in json.loads(out)["outputs"]] == ["stdin"], err
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "p.png").write_bytes(png_bytes())
    code, out, err = imgedit("denoise", tmp_path / "one", "--method", "nlm", "-o", "-", "--dry-run")
    plan = out.decode()
    assert code == 0 and "first output stdout" in plan and "journal: none" in plan, plan
    assert "imgedit-stdio-" not in plan + err
    code, out, err = imgedit("denoise", "-", "--method", "nlm", "--dry-run", "--json", data=png_bytes())
    assert code == 0 and json.loads(out)["first_output"] == "stdout", err  # a dry run writes no image: --json may
    code, out, err = imgedit("denoise", tmp_path / "one", "--method", "nlm", "--sigma", "5", "-o", "-")
    assert code == 0 and Image.open(io.BytesIO(out)).format == "PNG" and err == "", err  # no summary of a batch


STUCK_PLUGIN = """
import os, time
from pathlib import Path
from imgedit import hookimpl
from imgedit.operations import Operation

def create(context):
    def apply(image, mask):
        Path(os.environ["STUCK_MARKER"]).touch()  # the run is at work: the test may interrupt it
        time.sleep(60)
        return image
    return apply

@hookimpl
def register_operations(register):
    register(Operation("stuck", "sleep", create))
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_pipe_says_to_pipe_again_not_to_resume(tmp_path, signum, code):
    # a piped run keeps no journal and stdin cannot be replayed: "run the same
    # command again to resume" would send the user to an empty stdin
    site = tmp_path / "site"
    site.mkdir()
    fake_distribution(site, "imgedit_stucktest", STUCK_PLUGIN)
    marker = tmp_path / "working"
    env = {**os.environ, "PYTHONPATH": str(site), "STUCK_MARKER": str(marker), "IMGEDIT_DEVICE": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "imgedit", "run", "-p", "stuck", "-"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=interruptible)
    with reaped(proc):
        proc.stdin.write(png_bytes())
        proc.stdin.close()
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert marker.exists(), proc.stderr.read().decode()
        proc.send_signal(signum)
        out, err = proc.stdout.read(), proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert proc.returncode == code and out == b"", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("nothing was written to stdout; pipe the image in again"), err
    assert "resume" not in err and "imgedit-stdio-" not in err


@pytest.mark.parametrize("inputs, output, advice", [
    (("a.jpg",), "out", None),  # a batch: its journal resumes it
    (("-",), None, "nothing was written to stdout; pipe the image in again"),
    (("-",), "a.jpg", "pipe the image in again"),
    (("a.jpg",), "-", "nothing was written to stdout; run the same command again"),
])
def test_what_an_interrupted_run_advises(inputs, output, advice):
    from imgedit.stdio import after_interrupt

    assert after_interrupt({"inputs": inputs, "output": output}) == advice


def test_info_describes_the_image_on_stdin_named_stdin(tmp_path):
    (tmp_path / "b.png").write_bytes(png_bytes(1))
    code, out, err = imgedit("info", "-", tmp_path / "b.png", "-", "--json", data=png_bytes())
    rows = json.loads(out)
    assert code == 0 and err == "", err
    assert [row["path"] for row in rows] == ["stdin", str(tmp_path / "b.png")]  # read once, named twice
    assert rows[0]["format"] == "PNG" and (rows[0]["width"], rows[0]["height"]) == (32, 24)
    code, out, err = imgedit("info", "-", data=b"not an image")
    assert code == 1 and err.strip().splitlines() == ["Error: stdin: not an image (unrecognised file contents)"], err
    code, out, err = imgedit("info", "-", data=b"")
    assert code == 2 and "stdin is empty" in err and "imgedit-stdio-" not in err
