"""imgedit: a plugin-based image editing toolkit.

Plugins implement the hooks in :mod:`imgedit.hookspecs`; import ``hookimpl``
from here to mark them.
"""

from imgedit.errors import ImgeditError, UsageError  # no torch: catching them costs nothing to import

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__", "Pipeline", "run", "ImgeditError", "UsageError"]


def __getattr__(name: str):
    # loaded on first use, so `import imgedit` stays cheap: the console script
    # (imgedit.entry) guards Ctrl-C from its first line, and pluggy alone took 50 ms
    if name == "hookimpl":
        from imgedit.hookspecs import hookimpl

        return hookimpl
    if name in ("Pipeline", "run"):
        from imgedit import api

        return getattr(api, name)
    raise AttributeError(f"module 'imgedit' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too, for dir() and tab completion; nothing is imported for them
    return sorted(set(globals()) | set(__all__))
