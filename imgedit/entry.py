"""The ``imgedit`` console script. It loads the command inside a guard, so
that a Ctrl-C while Python imports click, torch's helpers and the plugins
ends as one later does ("Interrupted.", exit 130), not as a traceback of
whatever module was loading. Importing it loads only the imgedit package's
own light ``__init__`` and its errors, before the guard starts."""

import os
import sys


def main() -> None:
    """Console-script entry point: :func:`imgedit.cli.main`, loaded under the guard."""
    try:
        os.getcwd()
    except FileNotFoundError:  # torch's MKL would end it as "oneMKL FATAL ERROR: Cannot load libtorch_cpu.so"
        sys.stderr.write("Error: the current folder no longer exists (it was deleted or moved): cd into one that does\n")
        sys.exit(1)
    _debug_before_plugins_load(sys.argv[1:])
    from imgedit.process_tuning import fit_threads_to_cpu_quota

    fit_threads_to_cpu_quota()  # before torch loads
    if sys.platform == "darwin":  # before torch loads: an operation Apple's GPU lacks runs on the CPU, not fails
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    try:
        from imgedit.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    run()


def _debug_before_plugins_load(args: list[str]) -> None:
    """``imgedit --debug ...`` as ``IMGEDIT_DEBUG=1``: importing the command
    loads the plugins, before click reads ``--debug``, and a plugin's
    import error is shown with its traceback only where debug is on by then.
    Only the options before the verb are imgedit's own."""
    for arg in args:
        if arg == "--debug":
            os.environ["IMGEDIT_DEBUG"] = "1"
        if arg == "--" or not arg.startswith("-"):
            return
