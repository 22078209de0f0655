"""Behaviour on Windows and macOS, simulated here on Linux: their path
rules, file-name case, mapped files, shells and missing backends."""

import errno
import os
import re
import sys
import unicodedata
from pathlib import Path, PureWindowsPath
from types import SimpleNamespace

import pytest
import torch
from conftest import run_imgedit, smooth_rgb
from PIL import Image

from imgedit import distributed, noise
from imgedit.checkpoint import load_checkpoint, save_checkpoint
from imgedit.errors import UsageError
from imgedit.inputs import InputFile, check_name_template, scan_inputs
from imgedit.journal import Journal
from imgedit.pipeline import Pipeline, parse_stages
from imgedit.output_plan import plan_outputs
from imgedit.runner import RunOptions
from imgedit.shell import quote_arg


def relpath_across_drives(monkeypatch, drive: Path) -> None:
    """``os.path.relpath`` as on Windows when ``drive`` is another drive:
    between a path on it and one off it there is no relative path."""
    real_relpath = os.path.relpath

    def relpath(path, start=os.curdir):
        if str(path).startswith(str(drive)) != str(os.path.abspath(start)).startswith(str(drive)):
            raise ValueError(f"path is on mount {str(path)[:2]!r}, start on mount {str(start)[:2]!r}")
        return real_relpath(path, start)

    monkeypatch.setattr(os.path, "relpath", relpath)


# --- 1. pipeline text: a Windows path keeps its backslashes

def test_a_windows_path_in_a_pipeline_keeps_its_backslashes(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        stages = parse_stages(r'style style_image=C:\Users\me\art.jpg | denoise out="C:\my photos\x"')
    assert stages == [("style", {"style_image": r"C:\Users\me\art.jpg"}), ("denoise", {"out": r"C:\my photos\x"})]


def test_a_backslash_still_escapes_in_a_posix_pipeline(monkeypatch):
    monkeypatch.setattr(os, "name", "posix")
    assert parse_stages(r"style style_image=my\ art.jpg") == [("style", {"style_image": "my art.jpg"})]


# --- 2. the journal of an output folder on another drive than the input

def test_the_journal_names_an_output_on_another_drive_by_its_absolute_path(tmp_path, monkeypatch):
    out, other = tmp_path / "out", tmp_path / "d-drive"
    out.mkdir()
    dst = other / "a.png"
    relpath_across_drives(monkeypatch, other)
    journal = Journal(out)
    journal.record(dst, "key1", "done")
    assert journal.get(dst).key == "key1"
    assert Journal(out).get(dst).key == "key1"  # a rerun finds it under the same name


# --- 3. outputs whose names differ only in case, where file names ignore case

@pytest.fixture
def photos_in_two_folders(tmp_path):
    items = []
    for folder, name in (("a", "Photo.png"), ("b", "photo.png")):
        (tmp_path / folder).mkdir()
        Image.fromarray(smooth_rgb(16, 16)).save(tmp_path / folder / name)
        items.append(InputFile(tmp_path / folder / name, tmp_path / folder))
    return items


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_outputs_differing_in_case_collide_where_names_ignore_case(photos_in_two_folders, tmp_path, monkeypatch,
                                                                    platform):
    options = RunOptions(output=tmp_path / "out")
    with monkeypatch.context() as patch:
        patch.setattr(sys, "platform", platform)
        with pytest.raises(UsageError, match="would both be written") as refused:
            plan_outputs(Pipeline.parse("denoise"), photos_in_two_folders, options)
    assert all(str(item.path) in str(refused.value) for item in photos_in_two_folders)


def test_suffixes_differing_in_case_get_advice_that_works_where_names_ignore_case(tmp_path, monkeypatch):
    # a/photo.JPG and b/photo.jpg into one -o: {srcext} gives photo.JPG.JPG and
    # photo.jpg.jpg, one file to Windows and macOS
    from imgedit.output_plan import _apart

    a, b = tmp_path / "a" / "photo.JPG", tmp_path / "b" / "photo.jpg"
    monkeypatch.setattr(sys, "platform", "win32")
    assert "same name in different folders" in _apart(a, b)
    assert "{srcext}" in _apart(a, b.with_suffix(".png"))
    monkeypatch.setattr(sys, "platform", "linux")
    assert "{srcext}" in _apart(a, b)


def test_outputs_differing_in_case_are_apart_on_linux(photos_in_two_folders, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    outputs = plan_outputs(Pipeline.parse("denoise"), photos_in_two_folders, RunOptions(output=tmp_path / "out"))
    assert len(set(outputs)) == 2


# --- 4. a loaded checkpoint does not keep its file mapped

def _mapped_files() -> str:
    try:
        return Path("/proc/self/maps").read_text()
    except OSError:
        pytest.skip("no /proc/self/maps to see mapped files in")


def test_a_loaded_checkpoint_does_not_keep_its_file_mapped(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint({"kind": "denoise", "step": 3, "model": {"w": torch.arange(6.0)}}, path)
    state = load_checkpoint(path, "denoise")
    # Windows refuses to replace a mapped file: the resumed run's next save would fail
    assert os.path.realpath(path) not in _mapped_files()
    state["step"] = 4
    save_checkpoint(state, path)
    assert torch.equal(state["model"]["w"], torch.arange(6.0))
    assert load_checkpoint(path, "denoise")["step"] == 4


# --- 5. --nproc on Windows, and on a Mac's MPS

def test_nproc_is_refused_on_windows_before_torchrun_starts(monkeypatch):
    import torch.distributed.run

    monkeypatch.setattr(torch.distributed.run, "main", lambda argv: pytest.fail("torchrun was started"))
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        with pytest.raises(UsageError, match="not supported on Windows") as refused:
            distributed.relaunch(2, ["train", "denoise"])
    assert refused.value.exit_code == 2
    distributed.check_nproc(1)  # one process needs no torchrun


def test_training_on_mps_in_several_processes_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 2)
    on_mps = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("mps"))]))
    with pytest.raises(UsageError, match="--device cpu"):
        distributed.wrap(on_mps)


# --- 6. noise estimate on MPS (no kthvalue kernel before torch 2.9)

def test_the_noise_estimate_runs_on_the_cpu_for_mps():
    assert noise._work_device(torch.device("mps")) == torch.device("cpu")
    assert noise._work_device(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_the_noise_estimate_keeps_the_images_device_and_dtype():
    image = torch.rand(2, 3, 16, 16, dtype=torch.float16)
    sigma = noise.estimate_sigma(image)
    assert sigma.shape == (2,) and sigma.dtype == torch.float16 and sigma.device == image.device


# --- 7. a --name template that leaves the output folder on Windows

@pytest.mark.parametrize("template", [r"\{stem}.png", "C:{stem}.png", r"C:\out\{stem}.png", r"..\{stem}.png"])
def test_a_name_template_that_leaves_the_folder_on_windows_is_refused(monkeypatch, template):
    monkeypatch.setattr("imgedit.inputs.Path", PureWindowsPath)
    with pytest.raises(UsageError, match="stay inside the output folder"):
        check_name_template(template)


def test_a_name_template_in_a_sub_folder_is_taken_on_windows(monkeypatch):
    monkeypatch.setattr("imgedit.inputs.Path", PureWindowsPath)
    check_name_template(r"sub\{stem}.{op}.{ext}")


def test_a_name_template_with_a_character_windows_names_cannot_hold_is_refused_there(monkeypatch):
    # {stem}:{op} wrote into a hidden stream of a file 'photo', or onto drive D: from a stem 'd'
    check_name_template("{stem}:{op}.{ext}")  # a legal name elsewhere
    monkeypatch.setattr("imgedit.inputs.Path", PureWindowsPath)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(UsageError, match="Windows names cannot hold :"):
        check_name_template("{stem}:{op}.{ext}")
    with pytest.raises(UsageError, match=r"cannot hold \* \?"):
        check_name_template("{stem}?*.{ext}")
    check_name_template("{stem} ({op}).{ext}")


# --- 8. a folder link to another drive in a recursive scan

def test_a_folder_link_to_another_drive_is_scanned(tmp_path, monkeypatch):
    photos, other = tmp_path / "photos", tmp_path / "d-drive"
    photos.mkdir()
    other.mkdir()
    Image.fromarray(smooth_rgb(16, 16)).save(photos / "a.png")
    Image.fromarray(smooth_rgb(16, 16)).save(other / "b.png")
    (photos / "linked").symlink_to(other, target_is_directory=True)
    relpath_across_drives(monkeypatch, other)
    found = scan_inputs([str(photos)], recursive=True).files
    assert [item.path.name for item in found] == ["a.png", "b.png"]


# --- 9. suggested commands quoted for the user's shell

def test_a_suggested_argument_is_quoted_for_cmd_on_windows(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        quoted = quote_arg(r"C:\runs\my run\checkpoint.safetensors")
    assert quoted == r'"C:\runs\my run\checkpoint.safetensors"'


def test_a_suggested_argument_is_quoted_for_a_posix_shell(monkeypatch):
    monkeypatch.setattr(os, "name", "posix")
    assert quote_arg("runs/my run/checkpoint.safetensors") == "'runs/my run/checkpoint.safetensors'"
    assert quote_arg("runs/a/checkpoint.safetensors") == "runs/a/checkpoint.safetensors"


def test_the_resume_hint_of_a_stopped_run_is_quoted_for_cmd_on_windows(monkeypatch):
    from imgedit.training import _stopped_at_once

    trainer = SimpleNamespace(step=7, cfg=SimpleNamespace(steps=10))
    saved = (Path("runs/my run/checkpoint.safetensors"), 7)
    with monkeypatch.context() as patch:
        patch.setattr(os, "name", "nt")
        said = _stopped_at_once(trainer, saved)
    assert '--resume "runs' in said and "'" not in said


def test_a_name_stdout_cannot_encode_is_escaped_not_a_failure(tmp_path):
    # imgedit info 写真.jpg > out.txt on a cp1252 Windows console failed with
    # 'unexpected UnicodeEncodeError'
    import subprocess

    photo = tmp_path / "写真.png"
    Image.fromarray(smooth_rgb(8, 8)).save(photo)
    done = subprocess.run([sys.executable, "-m", "imgedit", "info", str(photo)], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "cp1252"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b"\\u5199\\u771f.png" in done.stdout and b"format: PNG" in done.stdout


def test_a_long_cjk_name_is_legal_on_windows_where_names_are_counted_in_characters(monkeypatch):
    from imgedit.atomic import name_too_long

    name = "写" * 100 + ".jpg"  # 104 characters, 304 bytes in UTF-8
    assert "304 bytes" in name_too_long(name)
    monkeypatch.setattr(sys, "platform", "win32")
    assert name_too_long(name) is None
    assert "300 characters" in name_too_long("写" * 300)


def test_the_command_lets_torch_run_what_apples_gpu_lacks_on_the_cpu(monkeypatch):
    from imgedit import entry

    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "unset below")  # recorded, so that teardown restores it
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK")
    monkeypatch.setattr(sys, "argv", ["imgedit", "--help"])
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SystemExit) as ended:
        entry.main()
    assert ended.value.code == 0 and os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")  # the user's own choice stands
    with pytest.raises(SystemExit):
        entry.main()
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"


@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
def test_a_rerun_in_a_c_locale_finds_what_a_utf8_run_did_and_back(tmp_path):
    # cron's C locale with PYTHONUTF8=0 decodes "fötö.png" as "f\udcc3\udcb6t...": the journal
    # keyed it so, and a rerun failed every image ("exists; pass --overwrite")
    for name in ("fötö.png", "写真.png"):
        Image.fromarray(smooth_rgb(24, 32)).save(tmp_path / name)
    c_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    for first, second in ((None, c_locale), (c_locale, None)):
        out = tmp_path / f"out{first is None}"
        done = run_imgedit("denoise", "fötö.png", "写真.png", "-o", out, "--sigma", "10", cwd=tmp_path, env=first)
        assert done.returncode == 0 and "done 2, skipped 0" in done.stderr, done.stderr
        again = run_imgedit("denoise", "fötö.png", "写真.png", "-o", out, "--sigma", "10", cwd=tmp_path, env=second)
        assert again.returncode == 0 and "done 0, skipped 2, failed 0" in again.stderr, again.stderr
        Image.fromarray(smooth_rgb(24, 32, seed=len(out.name))).save(tmp_path / "fötö.png")  # edited: still its input
        edited = run_imgedit("denoise", "fötö.png", "写真.png", "-o", out, "--sigma", "10", cwd=tmp_path, env=second)
        assert edited.returncode == 0 and "done 1, skipped 1, failed 0" in edited.stderr, edited.stderr



@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
@pytest.mark.parametrize("in_place", [False, True])
def test_a_journal_an_earlier_version_wrote_in_a_c_locale_still_names_its_files(tmp_path, in_place):
    # before 2026-12-07 a C-locale run journaled "fötö.png" as the lone surrogates of its
    # UTF-8 bytes; read as written, no record named the file: --in-place edited it again,
    # -o failed it ("exists; pass --overwrite")
    import json

    for name in ("fötö.png", "plain.png"):
        Image.fromarray(smooth_rgb(24, 32)).save(tmp_path / name)
    where = ("--in-place",) if in_place else ("-o", tmp_path / "out")
    done = run_imgedit("denoise", "fötö.png", "plain.png", *where, "--sigma", "10", "--method", "nlm", cwd=tmp_path)
    assert done.returncode == 0 and "done 2, skipped 0" in done.stderr, done.stderr
    journal = (tmp_path if in_place else tmp_path / "out") / ".imgedit-journal.jsonl"
    as_written = [json.loads(line) for line in journal.read_text().splitlines()]
    escaped = "fötö".encode().decode("ascii", "surrogateescape")  # as the C locale decoded it
    for record in as_written:
        for key in ("dst", "src"):
            if isinstance(record.get(key), str):
                record[key] = record[key].replace("fötö", escaped)
    journal.write_text("".join(json.dumps(record) + "\n" for record in as_written))
    assert "\\udcc3" in journal.read_text()
    edited = (tmp_path / "fötö.png").read_bytes()
    again = run_imgedit("denoise", "fötö.png", "plain.png", *where, "--sigma", "10", "--method", "nlm", cwd=tmp_path)
    assert again.returncode == 0 and "done 0, skipped 2, failed 0" in again.stderr, again.stderr
    assert (tmp_path / "fötö.png").read_bytes() == edited

def test_with_no_home_folder_editing_works_and_training_says_what_to_set(tmp_path, monkeypatch):
    # docker run --user 12345: no HOME and no account entry, so Path.home() raises;
    # every plugin's verbs went missing ("No such command 'denoise'")
    from imgedit import models, registry
    from imgedit_style.catalog import styles as catalog_styles

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    for name in ("IMGEDIT_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert models.user_models() == []
    registry.reset()
    try:  # the plugins register as they would anywhere (style's registration lists the user's styles)
        reg = registry.get_registry()
        assert {"denoise", "inpaint", "style"} <= set(reg.operation_names())
        assert "mosaic" in catalog_styles()  # the shipped styles, beside no user styles
    finally:
        registry.reset()
    with pytest.raises(UsageError, match="no home folder .* set IMGEDIT_HOME"):
        models.user_weights_dir()
    monkeypatch.setenv("XDG_DATA_HOME", "relative/share")  # the XDG spec: ignored
    with pytest.raises(UsageError, match="no home folder"):
        models.user_weights_dir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert models.user_weights_dir() == tmp_path / "imgedit" / "weights"


@pytest.mark.skipif(os.name != "posix", reason="a folder in use cannot be removed on Windows")
def test_a_current_folder_that_was_deleted_is_one_line_not_a_library_crash(tmp_path):
    # torch's MKL could not load ("Intel oneMKL FATAL ERROR"), exit 2 as if a usage error
    import subprocess

    gone = tmp_path / "gone"
    gone.mkdir()
    result = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && exec "$2" -m imgedit denoise x.png', "sh",
                             str(gone), sys.executable], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "Error: the current folder no longer exists (it was deleted or moved): cd into one that does\n"


# --- 11. file name lengths on macOS, and a trained model's file

def test_a_long_cjk_or_decomposed_hangul_name_is_legal_on_macos(monkeypatch):
    # APFS holds 255 characters, as NTFS: 100 CJK characters (292 bytes) are legal there, and so is
    # Hangul as Finder decomposes it (3 characters, 9 bytes a syllable)
    from imgedit.atomic import name_too_long

    cjk = "東京タワーの夜景" * 12 + ".jpg"
    hangul = unicodedata.normalize("NFD", "서울 야경 사진 " * 6 + ".jpg")
    assert "292 bytes" in name_too_long(cjk) and "292 bytes" in name_too_long(hangul)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert name_too_long(cjk) is None and name_too_long(hangul) is None
    assert "300 characters" in name_too_long("写" * 300)


def test_a_model_file_name_is_counted_as_the_system_counts_names(tmp_path, monkeypatch):
    # 東京タワーの夜景 * 12 .safetensors (108 characters, 300 bytes) was refused even on Windows
    from imgedit.training import check_export_path

    monkeypatch.setattr("imgedit.atomic.NAME_MAX", 100)  # a 100 limit: names this disk holds can pass it
    export = tmp_path / ("写" * 60 + ".safetensors")  # 72 characters, 192 bytes
    with pytest.raises(UsageError, match=r"the file name is too long \(192 bytes"):
        check_export_path(export)
    for platform in ("win32", "darwin"):
        monkeypatch.setattr(sys, "platform", platform)
        check_export_path(export)
    with pytest.raises(UsageError, match=r"too long \(101 characters"):
        check_export_path(tmp_path / ("写" * 96))  # its card, 写...写.json, is the longer name


# --- 12. a model name Windows cannot have, refused before the training

WINDOWS_REFUSES = [("v1:final", "cannot hold :"), ("con", "keeps the name con for a device"),
                   ("Aux", "keeps the name Aux"), ("lpt1.v2", "keeps the name lpt1"), ("best?", r"cannot hold \?"),
                   ('my "style"', 'cannot hold "'), ("a<b>|c*", r"cannot hold \* < > \|"),
                   ("run 2.", "cannot end in a dot or a space"), ("run 2 ", "cannot end in a dot"),
                   ("tab\there", "control characters")]


@pytest.mark.parametrize("name, reason", WINDOWS_REFUSES)
def test_a_model_name_windows_cannot_have_is_refused_there(tmp_path, monkeypatch, name, reason):
    from imgedit.catalog import check_model_name
    from imgedit.training import check_export_path

    export = tmp_path / (name if name.endswith((".", " ")) else f"{name}.safetensors")  # "run 2..safetensors" is legal
    check_model_name(name)  # a legal name elsewhere
    check_export_path(export)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(UsageError, match=f"^--name {re.escape(name)}: Windows .*{reason}"):
        check_model_name(name)
    with pytest.raises(UsageError, match=f"^--export {re.escape(export.name)}: Windows .*{reason}"):
        check_export_path(export)


@pytest.mark.parametrize("name", ["v1-final", "console", "con-style", "com10", "my style", "run 2.1", "lpt"])
def test_a_model_name_windows_can_have_is_taken_there(tmp_path, monkeypatch, name):
    from imgedit.catalog import check_model_name
    from imgedit.training import check_export_path

    monkeypatch.setattr(sys, "platform", "win32")
    check_model_name(name)
    check_export_path(tmp_path / f"{name}.safetensors")


def test_training_under_a_name_windows_cannot_have_is_refused_before_it_starts(tmp_path, monkeypatch, invoke):
    from conftest import TINY_TRAIN_ARGS, smooth_images

    data = smooth_images(tmp_path / "data", count=3)
    monkeypatch.setattr(sys, "platform", "win32")
    result = invoke("train", "gan", "--data", data, *TINY_TRAIN_ARGS["gan"], "--steps", 1, "--out", tmp_path / "run",
                    "--name", "v1:final")
    assert result.exit_code == 2 and result.output.strip() == "Error: --name v1:final: Windows names cannot hold :"
    assert not (tmp_path / "run").exists()


# --- 13. names that differ only in their Unicode form, on macOS

@pytest.fixture
def cafe_typed_and_cafe_from_finder(tmp_path):
    items = []
    for name in (unicodedata.normalize("NFC", "Café.png"), unicodedata.normalize("NFD", "Café.jpg")):
        Image.fromarray(smooth_rgb(16, 16)).save(tmp_path / name)
        items.append(InputFile(tmp_path / name, tmp_path))
    return items


def test_outputs_differing_in_unicode_form_collide_on_macos(cafe_typed_and_cafe_from_finder, tmp_path, monkeypatch):
    # APFS takes Café (NFC, as typed) and Café (NFD, as Finder copied it) for one name: one output overwrote the other
    options = RunOptions(output=tmp_path / "out", format="png")
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(UsageError, match=r"would both be written .*add \{srcext\}"):
        plan_outputs(Pipeline.parse("denoise"), cafe_typed_and_cafe_from_finder, options)
    monkeypatch.setattr(sys, "platform", "win32")  # NTFS keeps the two forms apart
    assert len(set(plan_outputs(Pipeline.parse("denoise"), cafe_typed_and_cafe_from_finder, options))) == 2


# --- 14. an output within Windows' 260-character path limit whose temporary is not

def test_a_temporary_past_windows_path_limit_says_so_not_no_such_file(tmp_path, monkeypatch):
    import tempfile

    from imgedit.atomic import atomic_file

    def refused(dir, prefix, suffix):  # as Windows with long paths off: ERROR_PATH_NOT_FOUND
        temporary = os.path.join(dir, f"{prefix}k2j4z1x8{suffix}")
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", temporary)

    room = 250 - len(str(tmp_path)) - len(os.sep) - len(".png")
    if room < 1:
        pytest.skip("the test folder's path alone is near 260 characters")
    dest = tmp_path / ("p" * room + ".png")  # 250 characters: legal; its temporary, 264, is not
    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(FileNotFoundError) as failed, atomic_file(dest):
        pass
    assert failed.value.filename == str(dest) and failed.value.errno == errno.ENOENT
    assert failed.value.strerror == ("path longer than Windows' 260-character limit: enable long paths or use a "
                                     "shorter -o")
    for short_or_gone in (tmp_path / "photo.png", tmp_path / "gone" / dest.name):  # a folder truly not there
        with pytest.raises(FileNotFoundError, match="No such file or directory"), atomic_file(short_or_gone):
            pass
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(FileNotFoundError, match="No such file or directory"), atomic_file(dest):
        pass

