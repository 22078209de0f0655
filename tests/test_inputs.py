"""Inputs (files, folders, globs) and where outputs go."""

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgedit.errors import UsageError
from imgedit.inputs import InputFile, expand_inputs, output_path

from conftest import smooth_rgb


@pytest.fixture
def tree(tmp_path):
    for rel in ["a.jpg", "b.png", "b.mask.png", "notes.txt", "sub/c.png", "sub/deep/d.tif", ".hidden.png"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def names(items):
    return [str(i.relative) for i in items]


def test_folder_flat_and_recursive(tree):
    assert names(expand_inputs([str(tree)])) == ["a.jpg", "b.png"]
    assert names(expand_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png", "sub/deep/d.tif"]


def test_a_scan_without_r_names_the_sub_folders_it_passed_by(tree, invoke):
    from imgedit.inputs import scan_inputs

    (tree / ".thumbs").mkdir()  # hidden: never searched, so never named
    flat, deep = scan_inputs([str(tree)]), scan_inputs([str(tree)], recursive=True)
    assert flat.unsearched == [tree / "sub"] and deep.unsearched == []
    for name in ("a.jpg", "b.png", "b.mask.png"):
        (tree / name).unlink()
    with pytest.raises(UsageError, match=r"no images found in .*; 1 sub-folder \(e.g. .*sub\) was not searched: add -r"):
        scan_inputs([str(tree)])
    photos = tree / "photos"
    (photos / "later").mkdir(parents=True)
    Image.fromarray(smooth_rgb()).save(photos / "a.png")
    said = invoke("denoise", photos, "-o", tree / "out", "--sigma", "5", "--method", "nlm")
    assert said.exit_code == 0, said.output
    assert f"note: 1 sub-folder not searched (e.g. {photos / 'later'}): -r takes in the images under them" in said.stderr
    quiet = invoke("denoise", photos, "-o", tree / "out2", "--sigma", "5", "--method", "nlm", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    (photos / "later").rmdir()
    for _ in range(2):  # the run's own -o inside the folder is not a sub-folder to take in
        inside = invoke("denoise", photos, "-o", photos / "clean", "--sigma", "5", "--method", "nlm", "--force")
        assert inside.exit_code == 0 and "not searched" not in inside.stderr, inside.output


def test_files_and_globs_without_duplicates(tree):
    (tree / "notes.txt").write_text("not a photo")
    items = expand_inputs([str(tree / "a.jpg"), str(tree / "*.png"), str(tree / "a.jpg"), str(tree / "*")])
    # a glob, like a folder, takes images only: not the sidecar mask, not the notes
    assert [i.path.name for i in items] == ["a.jpg", "b.png"]


def test_a_double_star_glob_recurses_as_the_shell_s_globstar_does(tree):
    # 'photos/**/*.png' took only the sub-folders' images without -r: the top level's were missed
    names = [i.path.relative_to(tree).as_posix() for i in expand_inputs([str(tree / "**" / "*.png")])]
    assert names == ["b.png", "sub/c.png"]


def test_missing_and_empty(tree):
    with pytest.raises(UsageError, match="no such file"):
        expand_inputs([str(tree / "zzz.jpg")])
    with pytest.raises(UsageError, match="no files match"):
        expand_inputs([str(tree / "*.webp")])
    (tree / "empty").mkdir()
    with pytest.raises(UsageError, match="no images found"):
        expand_inputs([str(tree / "empty")])


def test_camera_raw_files_are_named_as_left_out_and_refused_when_named(invoke, tmp_path):
    # a NEF or CR2 is a TIFF inside, whose first page is a small preview:
    # Pillow opens it, and the preview would have been edited as the photo
    raw = tmp_path / "raw"
    raw.mkdir()
    preview = Image.fromarray(smooth_rgb(24, 32))
    preview.save(raw / "DSC_0003.NEF", format="TIFF")
    preview.save(raw / "IMG_0001.CR2", format="TIFF")
    only_raw = invoke("inpaint", raw, "--method", "telea", "--mask-box", "1,1,4,4")
    assert only_raw.exit_code == 2
    assert "no images found in" in only_raw.stderr and "only 2 camera RAW files" in only_raw.stderr
    assert "export them as JPEG or TIFF" in only_raw.stderr
    preview.save(raw / "developed.jpg")
    mixed = invoke("inpaint", raw, "-o", tmp_path / "out", "--method", "telea", "--mask-box", "1,1,4,4")
    assert mixed.exit_code == 0, mixed.output
    assert "left out 2 camera RAW files (e.g. " in mixed.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["developed.jpg"]
    named = invoke("inpaint", raw / "DSC_0003.NEF", "-o", tmp_path / "x.jpg", "--method", "telea", "--mask-box", "1,1,4,4")
    assert named.exit_code == 1 and "DSC_0003.NEF: a camera RAW file; imgedit edits developed images" in named.stderr
    assert not (tmp_path / "x.jpg").exists()


def test_a_file_without_a_suffix_keeps_its_format(invoke, tmp_path):
    # a JPEG named 'scan' came out as scan.inpaint.png, six times the size
    Image.fromarray(smooth_rgb(24, 32)).save(tmp_path / "scan", format="JPEG")
    result = invoke("inpaint", tmp_path / "scan", "--method", "telea", "--mask-box", "1,1,4,4")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "scan.inpaint.jpg").format == "JPEG"
    assert not (tmp_path / "scan.inpaint.png").exists()
    if hasattr(os, "mkfifo"):  # not opened to sniff: that would wait for a writer forever
        os.mkfifo(tmp_path / "pipe")
        fifo = invoke("inpaint", tmp_path / "pipe", "--method", "telea", "--mask-box", "1,1,4,4")
        assert fifo.exit_code == 1 and "is a FIFO, not an image file" in fifo.stderr


def test_a_path_given_new_content_gets_the_new_content_s_format(tmp_path):
    # a service reusing one upload path: a PNG with alpha after a JPEG came out as a JPEG, its alpha lost
    import imgedit

    upload, out = tmp_path / "upload", tmp_path / "out"
    Image.fromarray(smooth_rgb(24, 32)).save(upload, format="JPEG")
    imgedit.run("inpaint method=telea", upload, out, mask_box=(1, 1, 4, 4))
    rgba = np.dstack([smooth_rgb(24, 32), np.full((24, 32), 200, np.uint8)])
    Image.fromarray(rgba).save(upload, format="PNG")
    os.utime(upload, ns=(1, 1))  # another version however fast the rewrite: the clock may not have moved
    imgedit.run("inpaint method=telea", upload, out, mask_box=(1, 1, 4, 4))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["upload.jpg", "upload.png"]
    assert Image.open(out / "upload.png").mode == "RGBA"


def test_output_paths():
    item = InputFile(Path("/in/sub/x.png"), Path("/in"))
    assert output_path(item, output=None, single=True, op_label="denoise", ext="png") == Path("/in/sub/x.denoise.png")
    assert output_path(item, output=Path("/out"), single=False, op_label="d", ext="jpg") == Path("/out/sub/x.jpg")
    assert output_path(item, output=Path("/out/y.png"), single=True, op_label="d", ext="png") == Path("/out/y.png")
    assert output_path(item, output=Path("/o"), single=False, op_label="d", ext="png", template="{stem}.{op}.{ext}") == Path(
        "/o/sub/x.d.png"
    )
    with pytest.raises(UsageError, match="template"):
        output_path(item, output=None, single=True, op_label="d", ext="png", template="{nope}")


def test_an_output_named_with_any_image_formats_suffix_is_a_file_not_a_folder(invoke, tmp_path):
    item = InputFile(Path("/in/x.png"), Path("/in"))
    # suffixes of formats imgedit does not read are still file names; a suffix no format uses is a folder's
    assert output_path(item, output=Path("/o/y.pdf"), single=True, op_label="d", ext="png") == Path("/o/y.pdf")
    assert output_path(item, output=Path("/o/run.v2"), single=True, op_label="d", ext="png") == Path("/o/run.v2/x.png")
    photo = tmp_path / "a.png"
    Image.fromarray(smooth_rgb()).save(photo)
    result = invoke("denoise", "--method", "nlm", photo, "-o", tmp_path / "a.pdf")
    assert result.exit_code == 0 and (tmp_path / "a.pdf").is_file(), result.output  # used to make a folder a.pdf/
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "template,message",
    [
        ("{stem.upper}.png", "{stem.upper} is not a field"),
        ("{stem[0]}.png", "{stem[0]} is not a field"),
        ("{stem!r}.png", "{stem!r} is not a field"),
        ("{stem:>40}.png", "{stem:>40} is not a field"),
        ("{}.png", "{} is not a field"),
        ("{stem", "expected '}'"),
        ("../{stem}.png", "must stay inside"),
        ("/tmp/{stem}.png", "must stay inside"),
    ],
)
def test_name_templates_are_plain_fields_inside_the_folder(template, message):
    from imgedit.inputs import check_name_template

    with pytest.raises(UsageError) as info:
        check_name_template(template)
    assert message in str(info.value)
    check_name_template("sub/{stem}.{srcext}.{op}.{ext}")  # a sub-folder and every field are fine



def test_a_stem_that_makes_the_name_leave_the_folder_is_refused(tmp_path, invoke):
    # the template is fine as text; a file named '...png' has the stem '..'
    (tmp_path / "up").mkdir()
    Image.fromarray(smooth_rgb()).save(tmp_path / "up" / "...png", format="PNG")
    out = tmp_path / "srv" / "out"
    result = invoke("denoise", "--method", "nlm", tmp_path / "up" / "...png", "-o", out, "--name", "{stem}/{op}.{ext}")
    assert result.exit_code == 2 and "'../denoise.png'" in result.stderr and "outside the output folder" in result.stderr
    assert not (tmp_path / "srv" / "denoise.png").exists()
    done = invoke("denoise", "--method", "nlm", tmp_path / "up" / "...png", "-o", out, "--name", "{stem}.{op}.{ext}")
    assert done.exit_code == 0 and (out / "...denoise.png").is_file(), done.output  # inside a name, '..' is text

def png_bytes(seed=0):
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb(16, 16, seed=seed)).save(buffer, "PNG")
    return buffer.getvalue()


def permission_obeying_command():
    """The prefix that makes a command obey file permissions: none for a
    user; for root (who reads anything), setpriv dropping the capabilities
    that override them."""
    if os.name != "posix":
        pytest.skip("chmod 000 does not forbid reading here")
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and no setpriv to drop the capabilities that ignore permissions")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def test_an_unreadable_folder_is_named_the_rest_of_the_batch_goes_on_and_the_exit_code_says_so(tmp_path):
    prefix = permission_obeying_command()
    for rel in ["ud/a/x.png", "ud/b/y.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes())
    (tmp_path / "ud/b").chmod(0)
    try:
        def run(*extra):
            command = [*prefix, sys.executable, "-m", "imgedit", "denoise", "--method", "nlm", "-r", "ud", *extra]
            return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)

        loud = run("-o", "udo")
        quiet = run("-o", "udo2", "-q")
    finally:
        (tmp_path / "ud/b").chmod(0o755)  # so that pytest can clear it away
    assert loud.returncode == 1 and (tmp_path / "udo/a/x.png").exists(), loud.stderr
    warning = "cannot read folder ud/b (Permission denied): its images are left out"
    assert [line for line in loud.stderr.splitlines() if "cannot read" in line] == [f"Warning: {warning}"]
    # not all that was asked was done: like cp -r and rsync, the run ends in an error (exit 1), saying what to do
    error = ("Error: 1 input folder could not be read and their images were left out (e.g. ud/b): "
             "fix the permissions and run the same command again (what is done is skipped)")
    assert loud.stderr.splitlines()[-1] == error
    # -q prints only errors: the warning goes, the error stays
    assert quiet.returncode == 1 and quiet.stderr.splitlines() == [error] and (tmp_path / "udo2/a/x.png").exists()


def nest_past_path_max(root, image_at, levels=24):
    """Folders of 200 characters, one in the other, until the path is longer
    than PATH_MAX (4096 bytes on Linux): made through folder handles, as no
    path reaches the deepest. ``image_at``: the levels that get an image."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for level in range(levels):
            if level in image_at:
                image = os.open(f"img{level}.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
                os.write(image, png_bytes(level))
                os.close(image)
            name = f"d{level:02d}".ljust(200, "_")
            os.mkdir(name, dir_fd=fd)
            fd, parent = os.open(name, os.O_RDONLY, dir_fd=fd), fd
            os.close(parent)
    finally:
        os.close(fd)


def test_a_folder_past_path_max_is_named_and_the_rest_of_the_batch_goes_on(invoke, tmp_path):
    deep = tmp_path / "deep"
    deep.mkdir()
    nest_past_path_max(deep, image_at={0, 3, 23})
    loud = invoke("denoise", "--method", "nlm", "-r", deep, "-o", tmp_path / "out")
    assert loud.exit_code == 1, loud.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["img0.png", "img3.png"]
    warnings = [line for line in loud.stderr.splitlines() if "cannot read folder" in line]
    assert len(warnings) == 1 and warnings[0].endswith("(File name too long): its images are left out")
    assert str(deep / "d00") in warnings[0]  # where it is, though not all 4000 characters of it
    quiet = invoke("denoise", "--method", "nlm", "-r", deep, "-o", tmp_path / "out2", "-q")
    assert quiet.exit_code == 1 and len(quiet.stderr.splitlines()) == 1 and "could not be read" in quiet.stderr


def test_the_python_api_and_json_say_which_folders_were_left_out(invoke, tmp_path):
    import json

    import imgedit
    from imgedit.errors import BatchError

    deep = tmp_path / "deep"
    deep.mkdir()
    nest_past_path_max(deep, image_at={0, 23})
    with pytest.raises(BatchError, match="could not be read") as caught:
        imgedit.run("denoise method=nlm sigma=5", str(deep), tmp_path / "out", recursive=True)
    summary = caught.value.summary
    assert len(summary.done) == 1 and len(summary.unreadable) == 1 and str(summary.unreadable[0]).startswith(str(deep))
    result = invoke("denoise", "--method", "nlm", "--sigma", "5", "-r", deep, "-o", tmp_path / "out2", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["done"] == 1
    assert [Path(p) for p in report["unreadable_folders"]] == summary.unreadable


def test_hidden_folders_are_left_out_unless_named(tree):
    # and the folders a drive's root keeps (a memory card's, an ext4 disk's lost+found)
    for rel in [".hdir/x.png", ".thumbnails/a.png", "sub/.AppleDouble/c.png", "System Volume Information/i.png",
                "$RECYCLE.BIN/S-1-5/r.png", "lost+found/l.png"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    assert names(expand_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png", "sub/deep/d.tif"]
    assert names(expand_inputs([str(tree / ".hdir")], recursive=True)) == ["x.png"]  # asked for by name
    assert names(expand_inputs([str(tree / ".hdir")])) == ["x.png"]
    assert names(expand_inputs([str(tree / "lost+found")])) == ["l.png"]
    from imgedit.inputs import scan_inputs

    assert scan_inputs([str(tree)]).unsearched == [tree / "sub"]  # not the drive's own folders


def test_our_own_files_are_never_inputs(tree):
    from imgedit.atomic import atomic_file
    from imgedit.journal import JOURNAL_NAME, LOCK_NAME, SHARDS_NAME

    for rel in [JOURNAL_NAME, LOCK_NAME, f"{SHARDS_NAME}/0.jsonl", ".clip.gif.k2j4_x.frames.tmp/frame_0001.png"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    with atomic_file(tree / "sub" / "e.png"), atomic_file(tree / "f.png"):  # their temporaries exist meanwhile
        assert names(expand_inputs([str(tree)], recursive=True)) == ["a.jpg", "b.png", "sub/c.png", "sub/deep/d.tif"]
        assert names(expand_inputs([str(tree / "*")], recursive=True)) == ["a.jpg", "b.png"]


def test_linked_folders_are_followed_once_and_what_is_left_out_is_said(invoke, tmp_path):
    outside = tmp_path / "d02"
    (outside / "deeper").mkdir(parents=True)
    for rel in ["x.png", "deeper/y.png"]:
        (outside / rel).write_bytes(png_bytes())
    lk = tmp_path / "lk"
    (lk / "sub").mkdir(parents=True)
    (lk / "a.png").write_bytes(png_bytes(1))
    (lk / "sub" / "b.png").write_bytes(png_bytes(2))
    (lk / "ext").symlink_to(outside)  # followed, as find -L does
    (lk / "again").symlink_to(lk / "sub")  # a folder listed already: its images once
    (outside / "back").symlink_to(lk)  # through the other link, to a tree listed already
    (lk / "up").symlink_to(tmp_path)  # a folder above it: would loop
    (lk / "dead").symlink_to(tmp_path / "gone")
    assert names(expand_inputs([str(lk)], recursive=True)) == ["a.png", "ext/deeper/y.png", "ext/x.png", "sub/b.png"]
    result = invoke("denoise", lk, "-r", "--method", "nlm", "--sigma", "5", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png")) == [
        "a.png", "ext/deeper/y.png", "ext/x.png", "sub/b.png"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: left out 1 broken symbolic link (e.g. {lk / 'dead'}) and 1 symbolic link to a "
                        f"folder above it, which would loop (e.g. {lk / 'up'})"]


def test_a_file_and_a_link_to_it_are_one_input_named_as_the_file(tmp_path):
    (tmp_path / "b.png").write_bytes(png_bytes())
    (tmp_path / "a.png").symlink_to("b.png")  # first in order, but a link
    (tmp_path / "c.png").write_bytes(png_bytes(1))
    (tmp_path / "z.png").symlink_to("c.png")
    assert names(expand_inputs([str(tmp_path)])) == ["b.png", "c.png"]
    # named twice, or by a link first: the first named that is not a link
    assert [i.path.name for i in expand_inputs([str(tmp_path / "z.png"), str(tmp_path / "c.png")])] == ["c.png"]
    assert [i.path.name for i in expand_inputs([str(tmp_path / "c.png"), str(tmp_path / "c.png")])] == ["c.png"]


def test_macos_package_folders_are_passed_by_with_a_warning_unless_named(invoke, tmp_path):
    # -r over ~/Pictures entered the Photos library: --in-place rewrote its originals behind Photos' back
    from imgedit.inputs import scan_inputs

    pictures = tmp_path / "Pictures"
    library = pictures / "Photos Library.photoslibrary"
    for rel in ["cover.png", "Trip/a.png", "Photos Library.photoslibrary/originals/0/x.png",
                "Old.PhotoLibrary/Masters/m.png", "Photo Booth Library/Pictures/p.png",
                "Tool.app/Contents/Resources/icon.png"]:
        (pictures / rel).parent.mkdir(parents=True, exist_ok=True)
        (pictures / rel).write_bytes(png_bytes(len(rel)))
    original, mine = (library / "originals/0/x.png").read_bytes(), (pictures / "Trip/a.png").read_bytes()
    result = invoke("denoise", pictures, "-r", "--in-place", "--sigma", "5", "--method", "nlm")
    assert result.exit_code == 0, result.output
    assert (library / "originals/0/x.png").read_bytes() == original and (pictures / "Trip/a.png").read_bytes() != mine
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: left out 4 macOS package folders (e.g. {pictures / 'Old.PhotoLibrary'}): a "
                        "package's files are its app's to change (a Photos library's originals); name the folder to "
                        "scan inside it"]
    assert scan_inputs([str(pictures)]).unsearched == [pictures / "Trip"]  # nor a sub-folder -r would take in
    assert names(expand_inputs([str(library)], recursive=True)) == ["originals/0/x.png"]  # named: the user's choice
    (pictures / "Trip/a.png").unlink()
    (pictures / "cover.png").unlink()
    with pytest.raises(UsageError, match=r"no images found in .*Pictures; left out 4 macOS package folders \(e.g. "):
        scan_inputs([str(pictures)], recursive=True)
    # a link into a package leads where the user chose: its folder was not listed, so the link adds it
    (pictures / "Trip" / "originals").symlink_to(library / "originals")
    assert names(expand_inputs([str(pictures)], recursive=True)) == ["Trip/originals/0/x.png"]


def test_photos_icloud_holds_only_are_said_not_left_out_silently(invoke, tmp_path):
    # macOS 13 and earlier leave a hidden '.IMG_0002.JPG.icloud' where a photo was evicted: 'done 1' of 3 photos
    from imgedit.inputs import scan_inputs

    trip = tmp_path / "Trip"
    trip.mkdir()
    (trip / "IMG_0001.png").write_bytes(png_bytes())
    for stub in (".IMG_0002.JPG.icloud", ".IMG_0003.png.icloud", ".notes.txt.icloud", ".b.mask.png.icloud", ".icloud"):
        (trip / stub).write_bytes(b"bplist00")
    scan = scan_inputs([str(trip)])
    assert names(scan.files) == ["IMG_0001.png"] and scan.in_cloud == [trip / "IMG_0002.JPG", trip / "IMG_0003.png"]
    result = invoke("denoise", trip, "-o", tmp_path / "out", "--sigma", "5", "--method", "nlm")
    assert f"Warning: 2 images are in iCloud only (e.g. {trip / 'IMG_0002.JPG'}): download them first (Finder: " \
           "Download Now)" in result.stderr.splitlines()
    # said, not failed: a photo iCloud evicted after an earlier run edited it is done, and a cron rerun must not fail
    assert result.exit_code == 0 and (tmp_path / "out" / "IMG_0001.png").is_file(), result.output
    assert result.stderr.splitlines()[-1].startswith("done 1, skipped 0, failed 0, 2 in iCloud only")
    only = tmp_path / "Only"
    only.mkdir()
    (only / ".IMG_0004.JPG.icloud").write_bytes(b"bplist00")
    with pytest.raises(UsageError, match=r"no images found in .*Only; 1 image is in iCloud only "
                                         r"\(e.g. .*IMG_0004.JPG\): download it first \(Finder: Download Now\)$"):
        scan_inputs([str(only)])


def test_windows_marks_read_junctions_and_hidden_or_system_attributes(monkeypatch):
    # DirEntry.is_symlink() is False for an NTFS junction; Documents' "My Pictures" is one, hidden and system
    import stat
    from types import SimpleNamespace

    from imgedit.inputs import _windows_marks

    class Entry:
        def __init__(self, attributes=0, tag=0):
            self.info = SimpleNamespace(st_file_attributes=attributes, st_reparse_tag=tag)

        def stat(self, follow_symlinks=True):
            assert not follow_symlinks and os.name == "nt"  # the link's own, and only there
            return self.info

    assert _windows_marks(Entry(tag=0xA0000003)) == (False, False)  # not on Windows: no stat at all
    hidden_system = stat.FILE_ATTRIBUTE_HIDDEN | stat.FILE_ATTRIBUTE_SYSTEM
    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        assert _windows_marks(Entry(hidden_system | stat.FILE_ATTRIBUTE_REPARSE_POINT, 0xA0000003)) == (True, True)
        assert _windows_marks(Entry(stat.FILE_ATTRIBUTE_SYSTEM)) == (False, False)  # a customised folder (desktop.ini): shown
        assert _windows_marks(Entry(stat.FILE_ATTRIBUTE_HIDDEN)) == (False, True)
        assert _windows_marks(Entry(stat.FILE_ATTRIBUTE_REPARSE_POINT, 0xA000000C)) == (False, False)  # a symlink
        assert _windows_marks(Entry(stat.FILE_ATTRIBUTE_ARCHIVE)) == (False, False)


def test_windows_hidden_and_system_entries_are_passed_by_as_dot_names_are(invoke, monkeypatch, tmp_path):
    # listing Documents' "My Pictures" is denied to everyone: every -r run over Documents warned and exited 1
    import imgedit.inputs
    from imgedit.inputs import scan_inputs

    documents = tmp_path / "Documents"
    for rel in ["b.png", "Trip/a.png", "My Pictures/p.png", "Trip/secret.png", "Hidden Folder/h.png"]:
        (documents / rel).parent.mkdir(parents=True, exist_ok=True)
        (documents / rel).write_bytes(png_bytes(len(rel)))
    marked = {"My Pictures", "secret.png", "Hidden Folder"}
    monkeypatch.setattr(imgedit.inputs, "_windows_marks", lambda entry: (False, os.path.basename(entry) in marked))
    assert names(expand_inputs([str(documents)], recursive=True)) == ["Trip/a.png", "b.png"]
    assert scan_inputs([str(documents)]).unsearched == [documents / "Trip"]
    assert names(expand_inputs([str(documents / "My Pictures")])) == ["p.png"]  # named: the user's choice
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "My Pictures":
            raise PermissionError(13, "Access is denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = invoke("denoise", documents, "-r", "-o", tmp_path / "out", "--sigma", "5", "--method", "nlm")
    assert result.exit_code == 0 and "Warning" not in result.stderr, result.output


def test_windows_junctions_are_links_to_folders(invoke, monkeypatch, tmp_path):
    # a junction's DirEntry says a folder, not a symbolic link: one to a folder above looped, and
    # --in-place edited the photos behind one, outside the folder named
    import contextlib

    import imgedit.inputs
    from imgedit.errors import ImgeditError
    from imgedit.inputs import InputFile
    from imgedit.runner import _check_in_place_target

    documents, outside = tmp_path / "Documents", tmp_path / "Pictures"
    (documents / "Trip").mkdir(parents=True)
    outside.mkdir()
    (documents / "b.png").write_bytes(png_bytes())
    (documents / "Trip" / "a.png").write_bytes(png_bytes(1))
    (outside / "x.png").write_bytes(png_bytes(2))
    (documents / "Pictures").symlink_to(outside)  # the junctions, made here as symbolic links
    (documents / "Up").symlink_to(documents)

    class Junction:
        """What Windows' listing says of a junction: a folder, and not a symbolic link."""

        def __init__(self, entry):
            self.name, self.path, self._entry = entry.name, entry.path, entry

        def __fspath__(self):
            return self.path

        def is_symlink(self):
            return False

        def is_dir(self, follow_symlinks=True):
            return self._entry.is_dir()

        def is_file(self, follow_symlinks=True):
            return False

    real_scandir = os.scandir

    @contextlib.contextmanager
    def scandir(path):
        with real_scandir(path) as listing:
            yield [Junction(entry) if entry.is_symlink() else entry for entry in listing]

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(imgedit.inputs, "_windows_marks", lambda entry: (os.path.islink(entry), False))
    result = invoke("denoise", documents, "-r", "-o", tmp_path / "out", "--sigma", "5", "--method", "nlm")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "Pictures/x.png", "Trip/a.png", "b.png"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == ["Warning: left out 1 symbolic link to a folder above it, which would loop "
                        f"(e.g. {documents / 'Up'})"]
    # --in-place: a real folder the helper calls a junction is refused, as a link to a folder is
    monkeypatch.setattr(imgedit.inputs, "_windows_marks", lambda entry: (os.path.basename(entry) == "Trip", False))
    with pytest.raises(ImgeditError, match=f"lies behind the link {documents / 'Trip'}, outside the folder named"):
        _check_in_place_target(InputFile(documents / "Trip" / "a.png", documents, from_folder=True))
    _check_in_place_target(InputFile(documents / "b.png", documents, from_folder=True))  # not behind one: edited
