"""Progress on stderr: a batch's images, one long stage's units, one
large image's tiles. A tqdm bar on a terminal, a plain line every few
seconds otherwise (a log file, a pipe), nothing when quiet; and the few
words they are said in (:func:`pace`, :func:`duration`, :func:`printable`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import Any, Callable, Optional

import click

from imgedit.stdio import shown


def redraws_in_place() -> bool:
    """stderr is a terminal a bar can redraw in place: not a log file or a
    pipe, nor ``TERM=dumb`` (a screen reader's, an editor's shell), which
    get plain lines instead."""
    try:
        return sys.stderr is not None and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


HEARTBEAT_SECONDS = 15.0  # of silence before a run says it is still working
_last_said = [time.monotonic()]  # when say() last spoke, on any thread


def say(text: str, bar: Any = None) -> None:
    """A progress line on stderr, above ``bar`` if there is one. A line that
    cannot be written (stderr full or gone) is dropped: it must not end a
    batch that is writing its images fine."""
    _last_said[0] = time.monotonic()
    text = printable(text)
    try:
        if bar is not None:
            bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)
    except OSError:
        pass


def printable(text: str) -> str:
    """``text`` with control characters (and undecodable bytes of a file name)
    escaped, as ``\\x1b`` or ``\\n``: a file's name must not send terminal
    escapes or fake a line of its own. A piped run's temporary files are
    named as the streams they stand for (:func:`imgedit.stdio.shown`)."""
    text = shown(json_text(text))  # undecodable bytes as \xff, as ls shows them
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def json_text(text: str) -> str:
    """``text`` as valid Unicode. A file name that is not UTF-8 reaches Python
    with its bad bytes as lone surrogates (``bad\\udcffname.png``), which
    strict JSON readers refuse or garble; those bytes are written as
    ``\\xff`` escapes instead (``bad\\xffname.png``, as ``ls --quoting-style=escape``
    and Python's ``backslashreplace`` show them): readable, valid, and the
    rest of the name intact. (A name that really holds a backslash and "xff"
    looks the same: names this odd are rare, and each line still says which
    file it is.)"""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name decodes to: escape it as it is
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _rate_and_eta(count: int, total: int, seconds: float) -> tuple[float, float]:
    """Units per second so far, and the seconds the rest would take at that rate."""
    rate = count / max(seconds, 1e-9)
    return rate, (total - count) / max(rate, 1e-9)


def pace(rate: float, unit: str) -> str:
    """``rate`` as people read it: "2.5 img/s", or "12.3 s/img" below one a
    second, where "0.0/s" would say nothing (a slow model on large photos)."""
    if rate >= 1 or rate <= 0:
        return f"{rate:.1f} {unit}/s"
    return f"{1 / rate:.1f} s/{unit}"


def duration(seconds: float) -> str:
    """"45s", "12m05s", "3h20m": an ETA of hours is not read in seconds."""
    seconds = round(seconds)
    if seconds < 100:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of a batch: a tqdm bar on a terminal, plain lines every few
    seconds otherwise, and nothing but errors when quiet; ``verbose``
    (``-v``) adds a line per image, as a single image gets."""

    interval = 10.0  # seconds between plain progress lines

    def __init__(self, total: int, quiet: bool, first: str = "", verbose: bool = False):
        self.total, self.quiet, self.bar, self.first = total, quiet, None, first
        self.verbose = verbose and not quiet
        self.count, self.started, self.last = 0, time.monotonic(), time.monotonic()
        self.heartbeat: Optional[Heartbeat] = None

    def __enter__(self) -> Callable:
        if not self.quiet and self.total > 1 and redraws_in_place():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="img", file=sys.stderr)
        elif not self.quiet:  # plain lines come as images end: a long first one would be silent
            self.heartbeat = Heartbeat(self.still_working)
            self.heartbeat.start()
        return self.report

    def still_working(self, seconds: float) -> str:
        """The heartbeat's line after ``seconds`` of work."""
        if self.total == 1:
            return f"working on {self.first or 'the image'}, {duration(seconds)} so far"
        return f"{self.count}/{self.total} images done, {duration(seconds)} so far"

    def report(self, result: Any) -> None:
        self.count += 1
        # a single input's failure, and a model that would not load, are said in the final error line
        if result.error and self.total > 1 and not getattr(result, "unbuildable", False):  # a plugin's own result
            say(f"failed: {result.error}", self.bar)
        elif self.verbose and self.total > 1:
            say(_result_line(result), self.bar)
        if self.bar is not None:
            self.bar.update(1)
        elif self.quiet:
            return
        elif self.total == 1 and not result.error:
            say(_result_line(result))
        elif time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            rate, eta = _rate_and_eta(self.count, self.total, self.last - self.started)
            say(f"{self.count}/{self.total} images, {pace(rate, 'img')}, ETA {duration(eta)}")

    def __exit__(self, *exc: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.bar is not None:
            self.bar.close()


class Heartbeat:
    """A line from a thread of its own when nothing has been said (by
    :func:`say`, on any thread) for :data:`HEARTBEAT_SECONDS`: a 24 MP photo
    through a learned model on two cores is a minute without a word
    otherwise. ``line(seconds)`` says what, seconds since the start."""

    def __init__(self, line: Callable[[float], str]):
        self.line, self.started = line, time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imgedit-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Say the line if nothing was said for :data:`HEARTBEAT_SECONDS` before ``now``."""
        if now - max(_last_said[0], self.started) >= HEARTBEAT_SECONDS and not self._stop.is_set():
            say(self.line(now - self.started))
            _last_said[0] = max(_last_said[0], now)  # by the clock it was given

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


class StageProgress:
    """Progress of one long stage of a verb (inverting, pacing, decoding,
    writing), as :class:`Progress` shows a batch's: a tqdm bar
    on a terminal, a plain line every ``interval`` seconds otherwise,
    nothing when ``quiet`` (``-q``). Call it with the units just done.

        >>> with StageProgress(3000, "decoding", "frame", quiet=False) as advance:
        ...     advance(256)
    """

    interval = 10.0  # seconds between plain progress lines

    def __init__(self, total: int, what: str, unit: str, quiet: bool):
        self.total, self.what, self.unit, self.quiet = total, what, unit, quiet
        self.count, self.bar = 0, None
        self.started = self.last = time.monotonic()

    def __enter__(self) -> Callable[[int], None]:
        if not self.quiet and redraws_in_place():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=self.what, unit=self.unit, file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        return self.advance

    def advance(self, done: int = 1) -> None:
        self.count += done
        if self.bar is not None:
            self.bar.update(done)
        elif not self.quiet and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            rate, eta = _rate_and_eta(self.count, self.total, self.last - self.started)
            percent = math.floor(100 * self.count / max(self.total, 1))
            say(f"{self.what}: {self.count}/{self.total} {self.unit}s ({percent}%), {pace(rate, self.unit)}, "
                 f"ETA {duration(eta)}")

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


class TileProgress:
    """Progress through the tiles of a single large image (``on_tile`` of
    :func:`imgedit.runner.run_files`), one :class:`StageProgress` per
    tiled stage: a batch's progress counts images, and one 12-megapixel
    photo would otherwise run a minute without a word."""

    def __init__(self, quiet: bool):
        self.quiet, self.stage, self.progress = quiet, "", None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total <= 1:  # run whole: nothing to count
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.progress = StageProgress(total, stage, "tile", self.quiet)
            self.progress.__enter__()
        self.progress.advance(1)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


def _result_line(result: Any) -> str:
    """"wrote out/a.png (sigma 12.3 estimated)", "skipped out/b.png (done in an earlier run)"."""
    return f"{'skipped' if result.status == 'skipped' else 'wrote'} {result.output}{_result_note(result)}"


def _result_note(result: Any) -> str:
    """What a single result's line adds: why it was skipped, where its hole
    came from, what its stages said of it, how many results it holds."""
    if result.status == "skipped":
        return f" ({result.note})" if result.note else ""
    notes = ([f"hole from {result.note}"] if result.note else []) + list(result.details) + (
        [f"{result.panels} results side by side"] if result.panels > 1 else [])
    return f" ({', '.join(notes)})" if notes else ""
