"""What an audit of large batch runs found: results of another input
replaced, redrawn masks ignored, an --in-place photo edited twice after a
SIGKILL, another run's temporaries deleted, -o inside the input folder
taken for inputs, and --json saying too little."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from imgedit.journal import JOURNAL_NAME, Journal

from conftest import smooth_rgb


def summary_of(result):
    return json.loads(result.stdout)


def photos(folder, seeds, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(seeds):
        name = names[index] if names else f"img{index}.png"
        Image.fromarray(smooth_rgb(seed=seed)).save(folder / name)
    return folder


INPAINT = ("inpaint", "--method", "telea", "--mask-box", "2,2,8,8")


def test_a_result_of_another_input_with_the_same_name_is_not_replaced(invoke, tmp_path):
    d00, d01, out = photos(tmp_path / "d00", [0, 1, 2]), photos(tmp_path / "d01", [3, 4, 5]), tmp_path / "same"
    assert invoke(*INPAINT, d00, "-o", out).exit_code == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    other = invoke(*INPAINT, d01, "-o", out, "--json")
    assert other.exit_code == 1 and summary_of(other)["done"] == 0
    error = summary_of(other)["failures"][0]["error"]
    assert "holds the result of another input" in error and str(d00.resolve() / "img0.png") in error
    assert "--overwrite" in error
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == first
    # the same input with other options is redone, as before; so is it after its folder was moved
    assert summary_of(invoke(*INPAINT[:-1], "2,2,9,9", d00, "-o", out, "--json"))["done"] == 3
    moved = d00.rename(tmp_path / "renamed")
    assert summary_of(invoke(*INPAINT, moved, "-o", out, "--json"))["done"] == 3
    # and an edited photo at the same path is still that input
    Image.fromarray(smooth_rgb(seed=9)).save(moved / "img1.png")
    assert summary_of(invoke(*INPAINT, moved, "-o", out, "--json"))["done"] == 1
    assert summary_of(invoke(*INPAINT, d01, "-o", out, "--json", "--overwrite"))["done"] == 3


def hole_mask(path, top):
    mask = np.zeros((48, 64), np.uint8)
    mask[top:top + 6, 10:20] = 255
    Image.fromarray(mask).save(path)


@pytest.mark.parametrize("where", ["mask folder", "sidecar"])
def test_a_redrawn_mask_redoes_its_image(invoke, tmp_path, where):
    src = photos(tmp_path / "img", [0, 1, 2])
    masks = tmp_path / "masks"
    masks.mkdir()
    mask_of = {f"img{i}": (masks / f"img{i}.png" if where == "mask folder" else src / f"img{i}.mask.png")
               for i in range(3)}
    for path in mask_of.values():
        hole_mask(path, top=5)
    command = ["inpaint", src, "-r", "-o", tmp_path / "out", "--method", "telea", "--json"]
    command += ["--mask", masks] if where == "mask folder" else []
    assert summary_of(invoke(*command))["done"] == 3
    assert summary_of(invoke(*command))["skipped"] == 3
    before = (tmp_path / "out" / "img1.png").read_bytes()
    hole_mask(mask_of["img1"], top=25)  # redrawn
    assert json.loads(invoke(*command, "--dry-run").stdout)["already_done"] == 2  # the plan counts as the run will
    again = summary_of(invoke(*command))
    assert again["done"] == 1 and again["skipped"] == 2 and again["outputs"][0]["input"].endswith("img1.png")
    assert (tmp_path / "out" / "img1.png").read_bytes() != before
    assert summary_of(invoke(*command))["skipped"] == 3


def test_a_redrawn_single_mask_file_redoes_every_image_it_masks(invoke, tmp_path):
    src, mask, out = photos(tmp_path / "img", [0, 1, 2]), tmp_path / "hole.png", tmp_path / "out"
    hole_mask(mask, top=5)
    command = ["inpaint", src, "--mask", mask, "-o", out, "--method", "telea", "--json"]
    assert summary_of(invoke(*command))["done"] == 3
    assert summary_of(invoke(*command))["skipped"] == 3
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    os.utime(mask, ns=(os.stat(mask).st_atime_ns, os.stat(mask).st_mtime_ns + 5 * 10**9))
    assert summary_of(invoke(*command))["skipped"] == 3  # touched, not redrawn: its content is what counts
    hole_mask(mask, top=25)  # redrawn at the same path: --mask's path alone would not tell
    assert json.loads(invoke(*command, "--dry-run").stdout)["already_done"] == 0
    again = summary_of(invoke(*command))
    assert again["done"] == 3 and again["skipped"] == 0
    assert all((out / name).read_bytes() != data for name, data in before.items())
    assert summary_of(invoke(*command))["skipped"] == 3


@pytest.mark.parametrize("where", ["operation", "runner"])
def test_an_unexpected_error_fails_only_its_image_and_the_batch_goes_on(invoke, tmp_path, test_plugin, monkeypatch, where):
    # Not an ImgeditError or OSError: a plugin's own bug (named with its stage and plugin), or one
    # in the per-image work around the pipeline (imgedit.runner._catch: "unexpected ...").
    import imgedit.tensor
    from imgedit.operations import Operation

    odd = lambda width: width == 40  # noqa: E731  (the odd image out, by its size)

    def create(context):
        def apply(image, mask):
            if where == "operation" and odd(image.shape[-1]):
                raise ZeroDivisionError("a bug of its own")
            return 1.0 - image
        return apply

    to_tensor = imgedit.tensor.to_tensor

    def fragile_to_tensor(array, *args, **kwargs):
        if where == "runner" and odd(array.shape[1]):
            raise ZeroDivisionError("a bug of its own")
        return to_tensor(array, *args, **kwargs)

    monkeypatch.setattr(imgedit.tensor, "to_tensor", fragile_to_tensor)  # imported by the runner as it decodes
    test_plugin("imgedit_fragile", register_operations=lambda register: register(Operation("fragile", "basic", create)))
    src, out = photos(tmp_path / "in", [0, 1, 2]), tmp_path / "out"
    Image.fromarray(smooth_rgb(32, 40, seed=7)).save(src / "img0b.png")  # second in the batch's order
    result = invoke("run", "-p", "fragile", src, "-o", out, "--json")
    assert result.exit_code == 1, result.output
    summary = summary_of(result)
    assert summary["done"] == 3 and summary["failed"] == 1  # the images after it were done
    what = ("stage 1 (fragile.basic, plugin imgedit_fragile) failed: ZeroDivisionError" if where == "operation"
            else "unexpected ZeroDivisionError")
    assert [f["error"] for f in summary["failures"]] == [f"{src / 'img0b.png'}: {what}: a bug of its own"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == ["img0.png", "img1.png", "img2.png"]
    for name in ("img0.png", "img1.png", "img2.png"):
        inverted = np.asarray(Image.open(out / name)).astype(int)
        assert np.abs(inverted - (255 - np.asarray(Image.open(src / name)).astype(int))).max() <= 1
    records = [json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines()]
    assert [r["dst"] for r in records if r["status"] == "failed"] == ["img0b.png"]


def test_an_in_place_run_killed_between_rename_and_done_does_not_edit_twice(invoke, tmp_path):
    once, killed = photos(tmp_path / "once", [0, 1, 2]), photos(tmp_path / "killed", [0, 1, 2])
    command = ("denoise", "--in-place", "--method", "nlm", "--sigma", "10")
    assert invoke(*command, once).exit_code == 0
    assert invoke(*command, killed).exit_code == 0
    journal = killed / JOURNAL_NAME
    lines = journal.read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "done"
    journal.write_text("".join(line + "\n" for line in lines[:-1]))  # SIGKILL after the rename, before "done"
    again = invoke(*command, killed, "--json")
    assert again.exit_code == 0 and summary_of(again)["skipped"] == 3, again.output
    for path in once.glob("*.png"):
        assert (killed / path.name).read_bytes() == path.read_bytes()  # each edited exactly once
    assert json.loads(journal.read_text().splitlines()[-1])["status"] == "done"  # recorded done for the next run


def test_stale_temporaries_are_left_while_another_run_holds_the_folder(invoke, tmp_path):
    from imgedit.output_plan import remove_stale_temps

    src, out = photos(tmp_path / "in", [0, 1]), tmp_path / "out"
    out.mkdir()
    in_flight = out / ".img0.png.k2j4_x.tmp"
    in_flight.write_bytes(b"half a png, still being written")
    other_run = Journal(out)
    other_run.hold()
    try:
        assert invoke("denoise", src, "--method", "nlm", "--sigma", "5", "-o", out).exit_code == 0
        remove_stale_temps([out / "img0.png"])  # as the Ray engine calls it: the lock is found above the outputs
        assert in_flight.exists()
    finally:
        other_run.release()
    assert invoke("denoise", src, "--method", "nlm", "--sigma", "5", "-o", out).exit_code == 0
    assert not in_flight.exists()  # alone now: a dead run's


def test_an_output_folder_inside_the_input_folder_is_never_an_input(invoke, tmp_path):
    nest = photos(tmp_path / "nest", [0, 1, 2])
    assert summary_of(invoke(*INPAINT, nest, "-r", "-o", nest / "out", "--json"))["done"] == 3
    again = invoke(*INPAINT, nest, "-r", "-o", nest / "out", "--format", "jpeg", "--json")
    assert again.exit_code == 0 and summary_of(again)["done"] == 3, again.output
    assert not (nest / "out" / "out").exists()
    assert sorted(p.name for p in (nest / "out").iterdir() if not p.name.startswith(".")) == [
        "img0.jpg", "img0.png", "img1.jpg", "img1.png", "img2.jpg", "img2.png"]


def test_json_reports_an_error_that_stops_the_run(invoke, tmp_path, monkeypatch):
    import errno

    import imgedit.journal as journal_module

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass

        def close(self):
            pass

    src = photos(tmp_path / "in", [0, 1, 2])
    monkeypatch.setattr(journal_module, "_open_append", lambda path: FullDisk())
    result = invoke("denoise", src, "--method", "nlm", "--sigma", "5", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 1
    report = summary_of(result)
    assert "cannot write the resume journal" in report["error"] and "No space left" in report["error"]
    assert report["done"] + report["failed"] + report["not_attempted"] == 3 and report["done"] == 0
    monkeypatch.undo()
    (tmp_path / "a-file").write_bytes(b"")
    unwritable = invoke("denoise", src, "--method", "nlm", "--sigma", "5", "-o", tmp_path / "a-file" / "out", "--json")
    report = summary_of(unwritable)
    assert unwritable.exit_code == 1 and report["error"].startswith("cannot write to ") and report["not_attempted"] == 3


def test_json_says_how_many_were_never_attempted(invoke, tmp_path):
    src = photos(tmp_path / "in", range(1, 8))
    (src / "a0.png").write_bytes(b"not a png")  # first in order
    result = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--fail-fast",
                    "--workers", "1", "--json")
    report = summary_of(result)
    assert result.exit_code == 1 and report["failed"] == 1
    assert report["not_attempted"] == 8 - report["done"] - report["failed"] > 0
    whole = summary_of(invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "o2", "--json"))
    assert whole["not_attempted"] == 0


@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
def test_json_names_a_file_that_is_not_utf8_in_valid_unicode(invoke, tmp_path):
    src = photos(tmp_path / "in", [0])
    shutil.copy(src / "img0.png", os.fsencode(src) + b"/bad\xffname.png")
    result = invoke("denoise", src, "--sigma", "5", "--method", "nlm", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    inputs = [entry["input"] for entry in summary_of(result)["outputs"]]
    for name in inputs:
        name.encode("utf-8")  # no lone surrogate: strict readers take it
    assert any(name.endswith("bad\\xffname.png") for name in inputs)


@pytest.mark.skipif(os.name != "posix", reason="file names are bytes on POSIX only")
def test_info_json_names_a_file_that_is_not_utf8_in_valid_unicode(invoke, tmp_path):
    src = photos(tmp_path / "in", [0])
    shutil.copy(src / "img0.png", os.fsencode(src) + b"/bad\xffname.png")
    (tmp_path / "in" / "img0.png").unlink()
    open(os.fsencode(src) + b"/gone\xfe.png", "wb").close()  # an error row names its file too
    result = invoke("info", f"{src}/*", "--json")
    assert result.exit_code == 1 and "gone\\xfe.png: is empty" in result.stderr  # escaped as in the JSON
    rows = json.loads(result.stdout)
    assert sorted(row["path"].rsplit("/", 1)[1] for row in rows) == ["bad\\xffname.png", "gone\\xfe.png"]
    assert "gone\\xfe.png" in next(row["error"] for row in rows if "error" in row)


def test_an_output_name_too_long_for_the_file_system_fails_that_image_plainly(invoke, tmp_path):
    src = photos(tmp_path / "in", [0, 1], names=["a" * 250 + ".png", "short.png"])  # 254 bytes: a name that fits
    result = invoke("denoise", src, "--method", "nlm", "--sigma", "5", "--json")  # beside it: aaa....denoise.png, 262
    summary = summary_of(result)
    assert result.exit_code == 1 and summary["done"] == 1 and summary["failed"] == 1
    error = summary["failures"][0]["error"]
    assert "file name too long" in error and "unexpected" not in error, error
    assert (src / "short.denoise.png").is_file()


@pytest.mark.parametrize("alone", [False, True])  # a folder (journal) or one file given alone (no journal)
def test_an_in_place_photo_replaced_while_it_is_edited_is_not_lost(invoke, tmp_path, monkeypatch, alone):
    from imgedit import runner

    folder = photos(tmp_path / "in", [0, 1, 2])
    newer = smooth_rgb(seed=9)
    compute = runner._Batch.compute

    def replaced_meanwhile(self, work):  # a sync client writes a newer img1.png while it is computed
        if work.item.path.name == "img1.png":
            Image.fromarray(newer).save(tmp_path / "new.png")
            os.replace(tmp_path / "new.png", work.item.path)
        return compute(self, work)

    monkeypatch.setattr(runner._Batch, "compute", replaced_meanwhile)
    command = ("denoise", "--in-place", "--method", "nlm", "--sigma", "10", "--json")
    result = invoke(*command, folder / "img1.png" if alone else folder)
    summary = summary_of(result)
    assert result.exit_code == 1 and summary["failed"] == 1 and summary["done"] == (0 if alone else 2)
    assert "changed while it was being edited" in summary["failures"][0]["error"]
    assert np.array_equal(np.asarray(Image.open(folder / "img1.png")), newer)  # the newer photo, untouched
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(runner._Batch, "compute", compute)
    again = summary_of(invoke(*command, folder / "img1.png" if alone else folder))
    assert again["done"] == 1 and again["failed"] == 0  # the next run edits the new version
    assert not np.array_equal(np.asarray(Image.open(folder / "img1.png")), newer)


def test_an_in_place_rerun_with_other_settings_does_not_edit_an_edited_photo_again(invoke, tmp_path):
    folder = photos(tmp_path / "in", [0, 1, 2])
    first = ("denoise", "--in-place", "--method", "nlm", "--sigma", "25", "--json")
    assert summary_of(invoke(*first, folder / "img0.png", folder / "img1.png"))["done"] == 2  # then Ctrl-C, say
    edited = {name: (folder / name).read_bytes() for name in ("img0.png", "img1.png")}
    other = invoke("denoise", "--in-place", "--method", "nlm", "--sigma", "20", "--json", folder)
    summary = summary_of(other)
    assert other.exit_code == 0 and summary["done"] == 1 and summary["skipped"] == 2  # img2 alone is edited
    assert "holds an earlier in-place edit (denoise) made with other settings" in other.stderr
    assert all((folder / name).read_bytes() == data for name, data in edited.items())
    again = summary_of(invoke("denoise", "--in-place", "--method", "nlm", "--sigma", "20", "--json", folder))
    assert again["skipped"] == 3 and again["done"] == 0  # still known, run after run
    forced = summary_of(invoke("denoise", "--in-place", "--method", "nlm", "--sigma", "20", "--json", "--force",
                               folder / "img0.png", folder / "img1.png", folder / "img2.png"))
    assert forced["done"] == 3 and (folder / "img0.png").read_bytes() != edited["img0.png"]  # asked for: edited again
