"""The ``imgedit`` console script. It loads the command inside a guard, so
that a Ctrl-C while Python imports click, torch's helpers and the plugins
ends as one later does ("Interrupted.", exit 130), not as a traceback of
whatever module was loading. Importing it loads only the imgedit package's
own light ``__init__`` and its errors, before the guard starts."""

import os
import sys


def main() -> None:
    """Console-script entry point: :func:`imgedit.cli.main`, loaded under the guard."""
    if sys.platform == "darwin":  # before torch loads: an operation Apple's GPU lacks runs on the CPU, not fails
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    try:
        from imgedit.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    run()
