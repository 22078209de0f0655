"""The resume journal's shards: one file per writer (the Ray engine's
actors), read together in time order, folded into the main file by the
driver; torn lines are ignored."""

import json
import os
from pathlib import Path

import pytest

from imgedit.errors import JournalError
from imgedit.journal import JOURNAL_NAME, MAX_LINE, SHARDS_NAME, Journal, _read_records


def lines(path):
    """The records of a journal file, torn lines left out."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def write_lines(path, records, torn=""):
    """A journal file; ``torn``: a last line cut short by a killed writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + torn)


def test_a_shard_is_written_alone_and_read_by_everyone(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    shard = Journal(tmp_path, shard="node1-42")
    shard.record(tmp_path / "a.png", "k1", "start", replacing=False)
    shard.record(tmp_path / "a.png", "k1", "done", size=3)
    shard.close()
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert [r["status"] for r in lines(tmp_path / SHARDS_NAME / "node1-42.jsonl")] == ["start", "done"]
    assert Journal(tmp_path).is_done(tmp_path / "a.png", "k1")


def test_records_apply_in_time_order_across_files(tmp_path):
    write_lines(tmp_path / JOURNAL_NAME, [
        {"dst": "a.png", "key": "old", "status": "done", "time": 1.0},
        {"dst": "b.png", "key": "new", "status": "done", "time": 5.0},
    ])
    write_lines(tmp_path / SHARDS_NAME / "x.jsonl", [
        {"dst": "a.png", "key": "new", "status": "failed", "time": 2.0, "error": "boom"},
        {"dst": "b.png", "key": "old", "status": "done", "time": 3.0},
    ])
    entries = Journal(tmp_path).entries
    assert (entries["a.png"].key, entries["a.png"].status, entries["a.png"].error) == ("new", "failed", "boom")
    assert entries["b.png"].key == "new"


def test_compact_folds_shards_into_the_main_file(tmp_path):
    write_lines(tmp_path / JOURNAL_NAME, [{"dst": "a.png", "key": "k", "status": "done", "time": 1.0}], torn='{"ds')
    write_lines(tmp_path / SHARDS_NAME / "x.jsonl", [{"dst": "b.png", "key": "k", "status": "start", "time": 3.0}])
    write_lines(tmp_path / SHARDS_NAME / "y.jsonl", [{"dst": "c.png", "key": "k", "status": "done", "time": 2.0}],
                torn='{"dst": "d.png"')
    before = Journal(tmp_path)
    before.compact()
    assert not (tmp_path / SHARDS_NAME).exists()
    assert [r["dst"] for r in lines(tmp_path / JOURNAL_NAME)] == ["a.png", "c.png", "b.png"]
    assert Journal(tmp_path).entries == before.entries
    assert set(before.entries) == {"a.png", "b.png", "c.png"}
    before.compact()  # nothing left to do
    assert len(lines(tmp_path / JOURNAL_NAME)) == 3


def test_a_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    write_lines(tmp_path / JOURNAL_NAME, [], torn='{"dst": "a.png", "key": "k", "sta')
    journal = Journal(tmp_path)
    journal.record(tmp_path / "b.png", "k", "failed", error="x")
    journal.close()
    assert Journal(tmp_path).get(tmp_path / "b.png").status == "failed"


def test_key_of_bytes_in_memory_equals_key_of_the_file(tmp_path):
    # the runner hashes the bytes it decodes, the dry run hashes the file: they must agree
    from imgedit.journal import bytes_digest, file_digest

    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 5000)  # more than one 1 MiB read block
    assert bytes_digest(path.read_bytes()) == file_digest(path)
    assert bytes_digest(b"other") != file_digest(path)


def test_a_line_that_is_not_utf8_is_skipped_like_a_torn_one(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    write_lines(tmp_path / JOURNAL_NAME, [{"dst": "a.png", "key": "k", "status": "done", "time": 1.0, "size": 3}])
    with open(tmp_path / JOURNAL_NAME, "ab") as fh:
        fh.write(b'{"dst": "\xc3')  # half a UTF-8 character, as `printf '...\xc3' >>` leaves
    journal = Journal(tmp_path)
    assert journal.is_done(tmp_path / "a.png", "k")  # the good lines still count
    journal.record(tmp_path / "b.png", "k", "failed", error="x")  # and later runs can append
    journal.close()
    assert set(Journal(tmp_path).entries) == {"a.png", "b.png"}


def test_compact_rewrites_a_journal_of_mostly_superseded_lines(tmp_path, monkeypatch):
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 8)
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"png")
    for run in range(3):  # three --force reruns over two outputs: 12 lines for 2 outputs
        journal = Journal(tmp_path)
        for name in ("a.png", "b.png"):
            journal.record(tmp_path / name, f"k{run}", "start", replacing=True)
            journal.record(tmp_path / name, f"k{run}", "done", size=3)
        journal.close()
    assert len(lines(tmp_path / JOURNAL_NAME)) == 12
    before = Journal(tmp_path)
    before.compact()
    kept = lines(tmp_path / JOURNAL_NAME)
    assert [(r["dst"], r["key"], r["status"]) for r in kept] == [("a.png", "k2", "done"), ("b.png", "k2", "done")]
    assert Journal(tmp_path).entries == before.entries and before.is_done(tmp_path / "a.png", "k2")
    before.record(tmp_path / "a.png", "k3", "failed", error="boom")  # the journal goes on after a rewrite
    before.close()
    assert Journal(tmp_path).entries["a.png"].status == "failed" and len(lines(tmp_path / JOURNAL_NAME)) == 3


def test_compact_keeps_a_journal_whose_lines_are_mostly_current(tmp_path, monkeypatch):
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 8)
    records = [{"dst": f"{i}.png", "key": "k", "status": s, "time": float(i)} for i in range(5) for s in ("start", "done")]
    write_lines(tmp_path / JOURNAL_NAME, records)
    text = (tmp_path / JOURNAL_NAME).read_text()
    Journal(tmp_path).compact()
    assert (tmp_path / JOURNAL_NAME).read_text() == text  # 2 lines an output: a first run, left as it is


def test_a_run_does_not_compact_under_another_run_writing_to_the_same_folder(tmp_path, monkeypatch):
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 4)
    records = [{"dst": "a.png", "key": f"k{i}", "status": "done", "time": float(i)} for i in range(8)]
    write_lines(tmp_path / JOURNAL_NAME, records)
    write_lines(tmp_path / SHARDS_NAME / "actor.jsonl", [{"dst": "b.png", "key": "k", "status": "start", "time": 9.0}])
    first = Journal(tmp_path)
    first.hold()  # alone: folds the shard in and rewrites
    assert [r["dst"] for r in lines(tmp_path / JOURNAL_NAME)] == ["a.png", "b.png"]
    write_lines(tmp_path / JOURNAL_NAME, records)  # superseded lines again, and a shard another run's actor writes
    write_lines(tmp_path / SHARDS_NAME / "actor.jsonl", [{"dst": "c.png", "key": "k", "status": "start", "time": 9.0}])
    second = Journal(tmp_path)
    second.hold()  # the first run still writes here: no folding, no rewrite under it
    assert len(lines(tmp_path / JOURNAL_NAME)) == 8 and (tmp_path / SHARDS_NAME / "actor.jsonl").exists()
    second.compact_if_alone()
    assert len(lines(tmp_path / JOURNAL_NAME)) == 8
    first.release()
    second.compact_if_alone()  # alone now
    assert [r["dst"] for r in lines(tmp_path / JOURNAL_NAME)] == ["a.png", "c.png"]
    second.release()


def test_lines_of_the_wrong_shape_are_skipped_like_torn_ones(tmp_path):
    write_lines(tmp_path / JOURNAL_NAME, [
        {"dst": ["x"], "key": "k", "status": "done", "time": 1.0},  # hand-edited: a list is no path
        {"dst": {"a": 1}, "key": "k", "status": "done"},
        {"dst": "a.png", "key": 7, "status": "done"},
        {"dst": "a.png", "key": "k", "status": "done", "time": "noon"},
        {"dst": "b.png", "key": "k", "status": "done", "time": 2.0},
    ])
    assert list(Journal(tmp_path).entries) == ["b.png"]


def test_a_journal_deleted_under_a_run_is_started_again_with_everything_it_knew(tmp_path):
    import shutil

    out = tmp_path / "out"
    out.mkdir()
    journal = Journal(out)
    for name in ("a.png", "b.png"):
        (out / name).write_bytes(b"png")
        journal.record(out / name, "k", "start", replacing=False, ops="denoise")
        journal.record(out / name, "k", "done", size=3, ops="denoise")
    shutil.rmtree(out)  # the user removes the output folder mid-run; the writer recreates it for the next image
    out.mkdir()
    (out / "c.png").write_bytes(b"png")
    journal.record(out / "c.png", "k", "done", size=3, ops="denoise")
    journal.close()
    again = Journal(out)
    assert sorted(again.entries) == ["a.png", "b.png", "c.png"]  # nothing the run did is forgotten
    assert again.is_done(out / "c.png", "k") and again.owns(out / "c.png", "denoise")
    assert not again.is_done(out / "a.png", "k")  # its file went with the folder: it will be redone


def test_an_output_is_owned_by_the_input_it_was_made_from(tmp_path):
    from imgedit.journal import Source

    (tmp_path / "a.png").write_bytes(b"png")
    made_from = Source("/photos/d00/a.png", "sha-of-d00-a")
    journal = Journal(tmp_path)
    journal.record(tmp_path / "a.png", "k1", "start", replacing=False, ops="inpaint", **made_from.fields())
    journal.record(tmp_path / "a.png", "k1", "done", size=3, ops="inpaint", **made_from.fields())
    journal.close()
    again = Journal(tmp_path)
    assert again.source_of(tmp_path / "a.png") == made_from
    assert again.owns(tmp_path / "a.png", "inpaint", made_from)
    assert again.owns(tmp_path / "a.png", "inpaint", Source("/photos/d00/a.png", "edited since"))
    assert again.owns(tmp_path / "a.png", "inpaint", Source("/moved/d00/a.png", "sha-of-d00-a"))
    assert not again.owns(tmp_path / "a.png", "inpaint", Source("/photos/d01/a.png", "sha-of-d01-a"))
    assert not again.owns(tmp_path / "a.png", "denoise", made_from)
    # a journal that did not name inputs: as before, the same operations own it
    write_lines(tmp_path / JOURNAL_NAME, [{"dst": "a.png", "key": "k1", "status": "done", "time": 1.0, "ops": "inpaint"}])
    assert Journal(tmp_path).owns(tmp_path / "a.png", "inpaint", Source("/photos/d01/a.png", "sha-of-d01-a"))


def test_an_in_place_result_is_known_from_the_start_line_written_before_the_rename(tmp_path):
    (tmp_path / "a.png").write_bytes(b"edited")
    write_lines(tmp_path / JOURNAL_NAME, [
        {"dst": "a.png", "key": "of-the-original", "status": "start", "time": 1.0, "replacing": True,
         "result_key": "of-the-result"},
    ])
    journal = Journal(tmp_path)
    assert journal.holds_result(tmp_path / "a.png", "of-the-result")
    assert not journal.holds_result(tmp_path / "a.png", "of-the-original")  # killed before the rename: redo it
    assert not journal.is_done(tmp_path / "a.png", "of-the-original")


def test_an_in_place_result_deleted_after_it_was_recorded_is_not_held(tmp_path):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"edited")
    journal = Journal(tmp_path)
    journal.record(photo, "of-the-original", "start", replacing=True, result_key="of-the-result")
    journal.record(photo, "of-the-original", "done", size=6, result_key="of-the-result")
    journal.close()
    assert Journal(tmp_path).holds_result(photo, "of-the-result")
    photo.unlink()  # deleted since: nothing holds the result
    assert not Journal(tmp_path).holds_result(photo, "of-the-result")
    assert not journal.holds_result(photo, "of-the-result")  # the run that recorded it, too
    photo.write_bytes(b"edited, then cut")  # another file at that path: not the recorded result either
    assert not Journal(tmp_path).holds_result(photo, "of-the-result")
    # killed between the rename and "done": only the "start" line, which knows no size
    killed = tmp_path / "b.png"
    killed.write_bytes(b"edited")
    journal = Journal(tmp_path)
    journal.record(killed, "of-the-original", "start", replacing=True, result_key="of-the-result")
    journal.close()
    assert Journal(tmp_path).holds_result(killed, "of-the-result")
    killed.unlink()
    assert not Journal(tmp_path).holds_result(killed, "of-the-result")


def test_alone_in_holds_the_run_lock_only_when_no_run_does(tmp_path):
    from imgedit.journal import alone_in

    with alone_in(tmp_path) as alone:
        assert alone
        with alone_in(tmp_path) as second:
            assert not second  # held meanwhile: a run starting now would wait
    other = Journal(tmp_path)
    other.hold()
    with alone_in(tmp_path) as alone:
        assert not alone
    other.release()
    with alone_in(None) as alone, alone_in(tmp_path / "missing") as missing:
        assert alone and missing


def _record(name, key, status="done", t=1.0):
    return {"dst": name, "key": key, "status": status, "time": t, "ops": "denoise.nlm"}


def test_a_reread_takes_the_lines_another_run_appended_and_leaves_a_line_being_written(tmp_path):
    journal_file = tmp_path / JOURNAL_NAME
    write_lines(journal_file, [_record("a.png", "k1")])
    journal = Journal(tmp_path)
    half = json.dumps(_record("b.png", "k2"))
    with open(journal_file, "a") as fh:  # another run mid-write: half a line, no newline yet
        fh.write(json.dumps(_record("a.png", "k3")) + "\n" + half[:20])
    journal.reread()
    assert journal.get(tmp_path / "a.png").key == "k3" and journal.get(tmp_path / "b.png") is None
    with open(journal_file, "a") as fh:
        fh.write(half[20:] + "\n")
    journal.reread()
    assert journal.get(tmp_path / "b.png").key == "k2"  # the line, whole now, was not skipped as torn
    assert journal.get(tmp_path / "a.png").key == "k3"


def test_a_reread_after_the_file_was_replaced_reads_it_whole(tmp_path):
    # another run compacted the journal (an atomic rewrite: a new file) after this one read it
    journal_file = tmp_path / JOURNAL_NAME
    write_lines(journal_file, [_record("a.png", "k1"), _record("b.png", "k1")])
    journal = Journal(tmp_path)
    replacement = tmp_path / "new.jsonl"
    write_lines(replacement, [_record("a.png", "k9")])
    replacement.replace(journal_file)
    journal.reread()
    assert journal.get(tmp_path / "a.png").key == "k9" and journal.get(tmp_path / "b.png") is None


def test_an_older_reread_finishing_last_does_not_hide_a_newer_ones_records(tmp_path, monkeypatch):
    # encoder threads reread when an output appears; an older read landing last hid another run's
    # outputs, and the image failed as 'exists' (two runs into one -o with a large journal)
    import threading

    write_lines(tmp_path / SHARDS_NAME / "node1.jsonl", [_record("a.png", "k1")])  # shards: every read is whole
    journal = Journal(tmp_path)
    read_whole, first_read_done, go_on = Journal._records, threading.Event(), threading.Event()

    def slow_first_read(self):
        records = read_whole(self)
        if threading.current_thread().name == "slow":
            first_read_done.set()
            go_on.wait(10)  # it has read; it has not put its state in place yet
        return records

    monkeypatch.setattr(Journal, "_records", slow_first_read)
    slow = threading.Thread(target=journal.reread, name="slow")
    slow.start()
    first_read_done.wait(10)
    write_lines(tmp_path / SHARDS_NAME / "node2.jsonl", [_record("b.png", "k2", t=2.0)])  # another run's output
    newer = threading.Thread(target=journal.reread)
    newer.start()
    newer.join(0.5)  # finished (nothing made it wait) or waiting for the slow read
    go_on.set()
    slow.join()
    newer.join()
    assert journal.get(tmp_path / "b.png") is not None


def test_a_line_longer_than_any_record_is_skipped_without_being_held_in_memory(tmp_path):
    # a planted 300 MB line took 1.1 GB to read; real lines are under 2 KB
    import tracemalloc

    planted = json.dumps({**_record("huge.png", "k0"), "pad": "x" * (16 * MAX_LINE)})  # a record in form
    write_lines(tmp_path / JOURNAL_NAME, [_record("a.png", "k1")])
    with open(tmp_path / JOURNAL_NAME, "a") as fh:
        fh.write(planted + "\n" + json.dumps(_record("b.png", "k2")) + "\n")
    del planted
    tracemalloc.start()
    try:
        journal = Journal(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert journal.get(tmp_path / "huge.png") is None
    assert journal.get(tmp_path / "a.png").key == "k1" and journal.get(tmp_path / "b.png").key == "k2"
    assert peak < 4 * MAX_LINE  # a few pieces of MAX_LINE at most, not the line's 16


def test_a_reread_passes_over_a_huge_line_still_growing_and_reads_what_follows(tmp_path):
    write_lines(tmp_path / JOURNAL_NAME, [_record("a.png", "k1")])
    journal = Journal(tmp_path)
    with open(tmp_path / JOURNAL_NAME, "a") as fh:
        fh.write("x" * (2 * MAX_LINE))  # no newline
    journal.reread()
    Journal(tmp_path).record(tmp_path / "b.png", "k2", "done")  # another run: ends that line first
    journal.reread()
    assert journal.get(tmp_path / "b.png").key == "k2" and journal.get(tmp_path / "a.png").key == "k1"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null here")
def test_a_journal_file_that_is_a_device_is_refused():
    with pytest.raises(JournalError, match="is a device"):
        _read_records(Path("/dev/null"))  # /dev/zero, read as lines, is a MemoryError


def test_only_regular_files_in_the_shards_folder_are_read_and_removed(tmp_path):
    outside = tmp_path / "outside.jsonl"
    write_lines(outside, [_record("x.png", "k9")])
    folder = tmp_path / "out"
    write_lines(folder / SHARDS_NAME / "node1.jsonl", [_record("a.png", "k1")])
    (folder / SHARDS_NAME / "node2.jsonl").symlink_to(outside)
    journal = Journal(folder)
    assert journal.get(folder / "x.png") is None and journal.get(folder / "a.png").key == "k1"
    journal.compact()
    assert lines(outside) == [_record("x.png", "k9")]
    assert not (folder / SHARDS_NAME / "node1.jsonl").exists()
    assert "x.png" not in (folder / JOURNAL_NAME).read_text()


def test_the_lock_follows_the_umask_and_another_users_lock_is_opened_to_read(tmp_path, monkeypatch):
    # a group-shared output folder: the lock was made 0644 whatever the umask,
    # so a second user of the group failed with 'cannot write to out'
    from imgedit import journal as journal_module
    from imgedit.journal import LOCK_NAME

    old = os.umask(0o002)
    try:
        first = Journal(tmp_path)
        first.hold()
        first.release()
    finally:
        os.umask(old)
    assert os.stat(tmp_path / LOCK_NAME).st_mode & 0o777 == 0o664
    opened = []
    real_open = journal_module._open_regular

    def not_ours_to_write(path, flags, mode=0o666):  # root may write any file: play the other user
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        opened.append((Path(path).name, flags & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)))
        return real_open(path, flags, mode)

    monkeypatch.setattr(journal_module, "_open_regular", not_ours_to_write)
    other = Journal(tmp_path)
    other.hold()
    other.release()
    assert (LOCK_NAME, os.O_RDONLY) in opened
    (tmp_path / LOCK_NAME).unlink()  # none there, and none can be made: that is the folder's error
    with pytest.raises(PermissionError):
        Journal(tmp_path).hold()


def test_hold_says_whether_another_run_writes_in_the_folder(tmp_path):
    first = Journal(tmp_path)
    assert first.hold() is True
    second = Journal(tmp_path)
    try:
        assert second.hold() is False
    finally:
        second.release()
        first.release()
    assert Journal(tmp_path).hold() is True


def test_a_journal_names_outputs_alike_on_windows_and_macos(tmp_path, monkeypatch):
    # a journal on a disk shared between a Windows PC and a Mac: Windows wrote
    # "sub\\a.png", and every output in a sub-folder was 'exists; pass --overwrite'
    # on the other side; macOS may store "é" decomposed where a shell types it whole
    import unicodedata

    from imgedit import journal as journal_module

    lines = [{"dst": "sub\\a.png", "key": "k1", "status": "done", "time": 1.0, "size": 1},
             {"dst": unicodedata.normalize("NFD", "café.png"), "key": "k2", "status": "done", "time": 2.0}]
    (tmp_path / JOURNAL_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.setattr(journal_module, "_SEP", "\\")  # as read on Windows
    monkeypatch.setattr(journal_module, "_TO_NFC", True)  # and on macOS
    journal = Journal(tmp_path)
    assert journal.get(tmp_path / "sub" / "a.png").key == "k1"
    assert journal.get(tmp_path / unicodedata.normalize("NFC", "café.png")).key == "k2"
    journal.record(tmp_path / "sub" / "b.png", "k3", "done")
    journal.close()
    written = [json.loads(line)["dst"] for line in (tmp_path / JOURNAL_NAME).read_text().splitlines()]
    assert written[-1] == "sub/b.png"
    monkeypatch.setattr(journal_module, "_SEP", "/")  # read back on Linux
    monkeypatch.setattr(journal_module, "_TO_NFC", False)
    assert Journal(tmp_path).get(tmp_path / "sub" / "b.png").key == "k3"


def test_a_lock_that_cannot_be_taken_exclusively_on_nfs_counts_as_another_run(tmp_path, monkeypatch):
    # NFS refuses an exclusive flock on a file open to read (another user's lock):
    # the run took that for 'no locks here', thought itself alone and compacted
    import errno

    from imgedit import journal as journal_module

    fcntl = pytest.importorskip("fcntl")

    def nfs_flock(fd, mode):
        if mode & fcntl.LOCK_EX:
            raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    journal = Journal(tmp_path)
    try:
        assert journal.hold() is False
    finally:
        journal.release()
    with journal_module.alone_in(tmp_path) as alone:
        assert alone is False  # another run's temporaries are left alone


def _state(journal, name):
    entry = journal.entries.get(name)
    source = journal.source_of(Path(journal.folder, name))
    return entry and (entry.status, entry.key), journal.owners.get(name), source and source.path


def _line(step):
    """A journal line of run a, b or c ("b start", "a done", "c withdrawn")
    writing x.png, each from its own input; a "withdrawn" names its run's start."""
    run, status = step.split()
    line = {"dst": "x.png", "key": f"k{run}", "status": status}
    if status in ("start", "done"):
        line.update(ops=run, src=f"{run}/x.png", src_sha256=f"d{run}")
    if status == "withdrawn":
        line["start_time"] = f"{run} start"  # replaced by that start's time
    return line


def _journal_of(folder, order):
    """A journal file of the lines ``order`` names, one second apart."""
    lines_, times = [], {}
    for i, step in enumerate(order):
        line = {**_line(step), "time": float(i)}
        times.setdefault(step, float(i))
        if "start_time" in line:
            line["start_time"] = times.get(line["start_time"], -1.0)
        lines_.append(line)
    write_lines(folder / JOURNAL_NAME, lines_)
    return lines_


@pytest.mark.parametrize("order, left", [
    # b's "start", then its rename refused: a's output was there first; the record is a's again
    (["a done", "b start", "b withdrawn"], ("done", "ka")),
    # both began at once; a renamed first, and b withdrew before (or after) a's "done"
    (["a start", "b start", "b withdrawn", "a done"], ("done", "ka")),
    (["a start", "b start", "a done", "b withdrawn"], ("done", "ka")),
    (["a start", "b start", "b withdrawn"], ("start", "ka")),  # a killed before its "done": its "start" stands
    (["b start", "b withdrawn"], None),  # nothing under it: no record, as before
    (["a done", "b withdrawn"], ("done", "ka")),  # a "withdrawn" with no "start" of its key takes nothing back
    # three runs at once (xargs -P3): b withdrew under c's open start, then c; a was killed before its "done"
    (["a start", "b start", "c start", "b withdrawn", "c withdrawn"], ("start", "ka")),
    (["a start", "b start", "c start", "c withdrawn", "b withdrawn", "a done"], ("done", "ka")),
])
def test_a_withdrawn_start_gives_the_output_back_to_the_record_it_covered(tmp_path, order, left):
    _journal_of(tmp_path, order)
    read = Journal(tmp_path)
    assert _state(read, "x.png")[0] == left
    if left is not None:  # a's record, owner and input (a failure leaves the owner as it was)
        assert _state(read, "x.png")[1:] == ("a", "a/x.png")
    live = Journal(tmp_path / "live")  # the same lines recorded by runs: the same state, without a reread
    times = {}
    for step in order:
        line = _line(step)
        if "start_time" in line:
            line["start_time"] = times.get(line["start_time"])
        extra = {k: v for k, v in line.items() if k not in ("dst", "key", "status")}
        times.setdefault(step, live.record(tmp_path / "live" / "x.png", line["key"], line["status"], **extra))
    assert _state(live, "x.png") == _state(read, "x.png")


def test_a_run_s_own_lines_read_again_leave_the_state_as_one_reading(tmp_path):
    # a reread takes up this run's own lines, recorded already: an open start met twice was two
    run = Journal(tmp_path)
    other = Journal(tmp_path)
    a_start = other.record(tmp_path / "x.png", "ka", "start", ops="a", src="a/x.png", src_sha256="da")
    b_start = run.record(tmp_path / "x.png", "kb", "start", ops="b", src="b/x.png", src_sha256="db")
    run.reread()  # a's start and b's own, again
    run.record(tmp_path / "x.png", "kb", "withdrawn", start_time=b_start)
    assert _state(run, "x.png")[:2] == (("start", "ka"), "a")
    run.reread()
    for journal in (run, Journal(tmp_path)):
        assert _state(journal, "x.png")[:2] == (("start", "ka"), "a"), a_start


def test_a_start_whose_file_is_not_the_size_it_wrote_is_not_done(tmp_path):
    # killed between a refused rename and its "withdrawn" line: the file there is the other run's
    (tmp_path / "x.png").write_bytes(b"theirs, 12")
    journal = Journal(tmp_path)
    journal.record(tmp_path / "x.png", "kb", "start", size=30, replacing=False)
    assert not journal.is_done(tmp_path / "x.png", "kb")
    journal.record(tmp_path / "y.png", "ky", "start", size=10, replacing=False)
    (tmp_path / "y.png").write_bytes(b"0123456789")
    assert journal.is_done(tmp_path / "y.png", "ky")  # killed after its own rename: done


def test_a_rewrite_keeps_what_a_later_withdrawn_line_would_give_back(tmp_path, monkeypatch):
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 4)
    lines_ = _journal_of(tmp_path, ["a done"] * 6 + ["b start"])  # superseded lines: rewritten away
    Journal(tmp_path).compact()
    assert [(r["key"], r["status"]) for r in lines(tmp_path / JOURNAL_NAME)] == [("ka", "done"), ("kb", "start")]
    later = Journal(tmp_path)
    later.record(tmp_path / "x.png", "kb", "withdrawn", start_time=lines_[-1]["time"])
    later.close()
    assert _state(Journal(tmp_path), "x.png") == (("done", "ka"), "a", "a/x.png")
    monkeypatch.setattr(journal_module, "STALE_FACTOR", 1)
    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 1)
    Journal(tmp_path).compact()  # a start and its withdrawal cancel out
    assert [(r["key"], r["status"]) for r in lines(tmp_path / JOURNAL_NAME)] == [("ka", "done")]


def test_a_rewrite_keeps_the_owner_and_input_under_a_failure(tmp_path, monkeypatch):
    # compacting 'done A, failed A' kept the failure alone: the output's owner and input were lost
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 1)
    monkeypatch.setattr(journal_module, "STALE_FACTOR", 1)
    _journal_of(tmp_path, ["a start", "a done", "a start", "a done", "a failed"])
    before = _state(Journal(tmp_path), "x.png")
    Journal(tmp_path).compact()
    assert [r["status"] for r in lines(tmp_path / JOURNAL_NAME)] == ["done", "failed"]
    assert _state(Journal(tmp_path), "x.png") == before == (("failed", "ka"), "a", "a/x.png")


def test_a_rewrite_keeps_the_order_of_records_of_one_time(tmp_path, monkeypatch):
    # a fast run writes many lines in one millisecond: the rewrite listed them in a set's order
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 1)
    names = [f"{i:02d}.png" for i in range(20)]
    write_lines(tmp_path / JOURNAL_NAME, [{"dst": name, "key": f"k{run}", "status": "done", "time": 1.0}
                                          for run in range(5) for name in names])
    Journal(tmp_path).compact()
    assert [r["dst"] for r in lines(tmp_path / JOURNAL_NAME)] == names


def test_a_rewrite_keeps_file_order_when_the_clock_went_back(tmp_path, monkeypatch):
    # b's start was appended after a's done, with a clock set back (NTP) between them: sorted
    # by time, the rewrite put a's done last and gave b's output to a
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module, "MIN_REWRITE_LINES", 1)
    monkeypatch.setattr(journal_module, "STALE_FACTOR", 1)
    lines_ = _journal_of(tmp_path, ["a done", "b start"])
    lines_[1]["time"] = lines_[0]["time"] - 60
    write_lines(tmp_path / JOURNAL_NAME, lines_)
    before = _state(Journal(tmp_path), "x.png")
    Journal(tmp_path).compact()
    assert [(r["key"], r["status"]) for r in lines(tmp_path / JOURNAL_NAME)] == [("ka", "done"), ("kb", "start")]
    assert _state(Journal(tmp_path), "x.png") == before == (("start", "kb"), "b", "b/x.png")


def test_a_start_whose_file_is_not_there_does_not_own_the_file_that_is(tmp_path):
    # b recorded its start after a's done, its rename was refused, and it was killed before its
    # "withdrawn": the file is a's, and b's rerun must not replace it as its own
    _journal_of(tmp_path, ["a done", "b start"])
    lines_ = lines(tmp_path / JOURNAL_NAME)
    lines_[1]["size"] = 30
    write_lines(tmp_path / JOURNAL_NAME, lines_)
    (tmp_path / "x.png").write_bytes(b"a's file, 13")
    journal = Journal(tmp_path)
    assert journal.owner(tmp_path / "x.png") == "a" and journal.source_of(tmp_path / "x.png").path == "a/x.png"
    assert not journal.owns(tmp_path / "x.png", "b") and journal.owns(tmp_path / "x.png", "a")
    assert journal.result_source(tmp_path / "x.png").path == "a/x.png"  # a scan knows it for a's result
    (tmp_path / "x.png").write_bytes(b"b" * 30)  # b's rename did happen before it was killed: b's file
    assert journal.owner(tmp_path / "x.png") == "b" and journal.owns(tmp_path / "x.png", "b")


def test_two_runs_of_one_command_starting_in_one_millisecond_are_told_apart(tmp_path, monkeypatch):
    # same photo, same recipe: one key; the loser's "withdrawn" took the winner's start back with it
    import imgedit.journal as journal_module

    monkeypatch.setattr(journal_module.time, "time", lambda: 1000.0)
    winner, loser = Journal(tmp_path), Journal(tmp_path)
    winner.record(tmp_path / "x.png", "k", "start", size=4, replacing=False)
    started = loser.record(tmp_path / "x.png", "k", "start", size=4, replacing=False)
    loser.reread()
    loser.record(tmp_path / "x.png", "k", "withdrawn", start_time=started)
    winner.close(), loser.close()
    (tmp_path / "x.png").write_bytes(b"done")  # the winner's rename; it was killed before its "done"
    for journal in (Journal(tmp_path), loser):
        assert journal.is_done(tmp_path / "x.png", "k")
