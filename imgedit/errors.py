"""Typed errors. Library code raises these; only the CLI turns them into a
one-line message and an exit code (2 for usage, 1 for failures). And the
hint an unknown name's error ends with (:func:`did_you_mean`)."""

from __future__ import annotations

from typing import Iterable

__all__ = [
    "BatchError",
    "DeviceError",
    "DiskFullError",
    "ImageNotReadHereError",
    "ImageReadError",
    "ImageWriteError",
    "ImgeditError",
    "Interrupted",
    "JournalError",
    "MaskError",
    "OutputContractError",
    "OutputExistsError",
    "PluginError",
    "RunStopped",
    "ShapeError",
    "UsageError",
    "WeightsError",
    "did_you_mean",
]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean mosaic?"`` for the known name closest to ``name``
    (case ignored, as the CLI suggests commands), or "" where none is close."""
    import difflib

    by_lower = {k.lower(): k for k in known}
    near = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return f"; did you mean {by_lower[near[0]]}?" if near else ""


class ImgeditError(Exception):
    """Base class for every error imgedit reports to a user."""

    exit_code = 1
    # True where every process of a multi-process run (``--nproc``) raises the
    # same error from the same inputs, so rank 0 alone reports it
    same_in_every_process = False


class UsageError(ImgeditError):
    """The command line or a parameter is wrong (exit code 2)."""

    exit_code = 2
    same_in_every_process = True


class ImageReadError(ImgeditError):
    """A file could not be decoded as an image (corrupt, truncated, empty, ...)."""


class ImageNotReadHereError(ImageReadError):
    """A file this machine could not read as an image now, whatever its
    content: no permission, not a regular file, not enough memory, above the
    pixel limit. Unlike a corrupt file's, the failure may pass (``--skip-failed``
    tries it again)."""


class ImageWriteError(ImgeditError):
    """An output image could not be written."""


class MaskError(ImgeditError):
    """No usable mask could be found or the mask is unusable."""

    exit_code = 2


class PluginError(ImgeditError):
    """A plugin is broken or two plugins conflict."""


class WeightsError(ImgeditError):
    """A weights file is missing, does not verify, or does not fit the model."""


class DeviceError(ImgeditError):
    """A requested device or precision is not available."""

    exit_code = 2


class ShapeError(ImgeditError, ValueError):
    """A tensor does not follow the (B, C, H, W) float image contract."""

    def __init__(self, what: str, expected: str, got: object):
        super().__init__(f"{what}: expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class OutputContractError(ShapeError):
    """An operation's ``create`` or applier broke the plugin contract (no
    applier, or output that is not a finite float image of the expected
    shape with values in about [0, 1]): the plugin's fault, not the input's.
    The pipeline leads its message with the stage and plugin."""

    def __init__(self, message: str):
        ImgeditError.__init__(self, message)
        self.expected = self.got = None


class OutputExistsError(ImageWriteError):
    """An output is there already and this run may not replace it: the fix
    is --overwrite (or another -o), not a retry."""


class RunStopped(ImgeditError):
    """The run cannot go on, since every image after would fail alike: it
    stops, saying what it did."""


class JournalError(RunStopped):
    """The resume journal cannot be written: the run stops, since a rerun
    could not tell what it did."""


class DiskFullError(ImageWriteError, RunStopped):
    """An output could not be written for want of space (or of quota): the
    images after it would be computed only to fail alike, so the run stops."""


class BatchError(ImgeditError):
    """Some images of a batch failed (each was reported already)."""


class Interrupted(ImgeditError):
    """The user pressed Ctrl-C; the work done so far is saved."""

    exit_code = 130
