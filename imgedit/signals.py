"""SIGTERM (``kill``, a job scheduler) stops a verb as Ctrl-C does."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from imgedit.errors import Interrupted


@contextmanager
def sigterm_as_interrupt(kept: str) -> Iterator[None]:
    """Stop on SIGTERM (``kill``, a job scheduler) as on Ctrl-C instead of
    dying where the process stands: the exception unwinds through every
    clean-up (a file being written, a staging folder), then one line saying
    what is ``kept``, and exit 143 (128 + SIGTERM). Main thread only, where
    signals arrive."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    _received.clear()
    try:
        yield
    except _Terminated:
        error = Interrupted(f"stopped by SIGTERM; {kept}")  # as training says it
        error.exit_code = 128 + signal.SIGTERM
        raise error from None
    except Interrupted as stopped:
        if not _received:
            raise
        # a batch stops on SIGTERM as on Ctrl-C (the writes in flight end, the
        # summary is said) and says so as an Interrupted of its own: say the signal
        error = Interrupted(f"stopped by SIGTERM; {stopped}")
        error.exit_code = 128 + signal.SIGTERM
        raise error from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is; a KeyboardInterrupt, so that no
    ``except Exception`` on the way swallows it and every Ctrl-C clean-up runs."""


_received: list[int] = []  # SIGTERM arrived in the present sigterm_as_interrupt block


def _raise_terminated(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise _Terminated
