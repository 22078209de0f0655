"""A training run's folder and the model it exports: what a run may write
and replace (its checkpoint, log and sample sheets; its model's weights and
card), refused before any training where it would replace another run's
files or a model it did not make, or could not be written at the end."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional

from imgedit.atomic import NAME_MAX, check_writable_folder, name_length, name_too_long, name_windows_refuses
from imgedit.checkpoint import checkpoint_file, checkpoint_info, recorded_export, recorded_run
from imgedit.errors import UsageError
from imgedit.options import given_on_command_line

__all__ = [
    "check_export_path",
    "check_fresh_run",
    "check_run_folder",
    "export_target",
    "recorded_model_problem",
    "remove_run_outputs",
    "resolved",
    "run_export",
    "run_folder",
    "run_outputs",
    "same_run",
]


RUN_FILES = ("checkpoint.safetensors", "log.jsonl")
SAMPLE_NAME = re.compile(r"step_\d{6,}\.png")  # samples/step_NNNNNN.png, as the trainers name their sheets


def run_outputs(out_dir: Path) -> list[Path]:
    """The files of an earlier run in ``out_dir`` that a new run writes too:
    its checkpoint, its log and its sample sheets (other files are not ours).
    An empty log is no run: one that failed before its first step left it
    (before the log was opened at the first record)."""
    out_dir = Path(out_dir)
    found = [out_dir / name for name in RUN_FILES if (out_dir / name).is_file() and (out_dir / name).stat().st_size]
    samples = out_dir / "samples"
    if samples.is_dir():
        found += sorted(p for p in samples.iterdir() if SAMPLE_NAME.fullmatch(p.name) and p.is_file())
    return found


def run_export(resume: Optional[Path], kind: str) -> Optional[tuple[str, Path]]:
    """The name and weights file of the run ``resume`` continues, as its
    checkpoint records them (read without its tensors); None for a new run or
    a checkpoint made before they were recorded.

    Raises:
        UsageError: the checkpoint is missing, unreadable or of another kind.
    """
    if resume is None:
        return None
    return recorded_export(checkpoint_info(resume, kind))


def export_target(chosen: tuple[str, Path], resume: Optional[Path], kind: str, told: bool) -> tuple[str, Path]:
    """(name, weights file) of the model a run exports: ``chosen`` (from the
    command line and its defaults), except that a resumed run not ``told``
    otherwise (no ``--export``, no ``--name``) exports to its own, recorded
    model, never over another run's model at the default place
    (:func:`check_fresh_run` then checks that the file there is that model)."""
    own = run_export(resume, kind)
    return own if own is not None and not told else chosen


def run_folder(out_dir: Path, resume: Optional[Path]) -> Path:
    """The folder a run writes its checkpoint, log and samples to: ``out_dir``,
    except that a resumed run given no ``--out`` goes on in its own folder
    (its checkpoint's), not in the verb's default one, which may hold another run.

    Raises:
        UsageError: no checkpoint at ``resume``.
    """
    if resume is None or given_on_command_line("out_dir"):
        return Path(out_dir)
    return checkpoint_file(resume).parent


def same_run(out_dir: Path, resume: Optional[Path]) -> bool:
    """Whether the run in ``out_dir`` is the one ``resume`` continues (its checkpoint is that folder's)."""
    if resume is None:
        return False
    return (Path(out_dir) / "checkpoint.safetensors").resolve() == checkpoint_file(resume).resolve()


def check_fresh_run(out_dir: Path, resume: Optional[Path], overwrite: bool, export: Optional[Path] = None,
                    kind: Optional[str] = None) -> None:
    """Refuse a run that would replace another run in its folder
    (:func:`run_folder`: a new run's ``out_dir``, or a resumed run's own
    folder unless ``--out`` names another), or any run that would replace a
    model at ``export`` that it did not make (a resumed run's own model,
    recorded in its checkpoint of ``kind``, is its to replace, where the
    file there is that model: :func:`recorded_model_problem`), unless
    ``overwrite``: it would otherwise append to the other run's log beside
    its samples and replace its checkpoint.

    A checkpoint is anyone's file (one downloaded to fine-tune from), so the
    weights file it records is written only where it is a ``.safetensors``
    file that is not there yet or is the run's own model, even with
    ``overwrite``, unless ``--export`` names it on the command line.

    Also refuses, before any training, a run whose model could not be
    written at the end (``IMGEDIT_HOME`` a file, a read-only folder, a folder
    at the model's path, a name too long), or would replace a device or a
    pipe there (even with ``overwrite``), or whose folder cannot be written
    or holds a link where the run writes (:func:`check_run_folder`).

    Raises:
        UsageError: what would be replaced, and how to continue or start
            over; or the folder the model goes to cannot be written.
    """
    out_dir = run_folder(out_dir, resume)
    check_writable_folder(out_dir, "--out")
    check_run_folder(out_dir)
    record = checkpoint_info(resume, kind) if resume is not None and kind else None  # read once, without tensors
    # the model the run exports to, and the id it gave itself (see provenance)
    own, run = (recorded_export(record), recorded_run(record)) if record is not None else (None, None)
    recorded = own is not None and export is not None and resolved(Path(export)) == resolved(own[1])
    if recorded and not given_on_command_line("export_path"):  # the checkpoint chose the file, not the user
        problem = recorded_model_problem(own[1], own[0], run)
        if problem:
            raise UsageError(f"the checkpoint names {own[1]} as its model's file, but {problem}: pass --export FILE "
                             "to choose where the weights go (with --overwrite to replace a file there)")
    if export is not None:
        check_export_path(Path(export))
    if overwrite:
        return
    if run_outputs(out_dir) and not same_run(out_dir, resume):
        _refuse_other_run(out_dir, resume)
    if export is None or not Path(export).is_file():
        return
    if resume is None:
        raise UsageError(f"a model already exists at {export}: pass --overwrite to replace it, --resume <checkpoint> "
                         "to continue its run, or give another --export path")
    if own is None:
        raise UsageError(f"a model already exists at {export} and the checkpoint does not say that this run made it "
                         "(checkpoints before 2026-12-06 do not record it): pass --overwrite to replace it (the run's "
                         "checkpoint stays), or give another --export path")
    if not recorded:
        raise UsageError(f"a model already exists at {export}, and this run exports to {own[1]}: pass --overwrite to "
                         "replace it, or leave out --export and --name to update the run's own model")
    problem = recorded_model_problem(Path(export), own[0], run)
    if problem:  # --export typed: the user's file, replaced as any other model would be
        raise UsageError(f"a file already exists at {export}, and {problem}: pass --overwrite to replace it, "
                         "or give another --export path")


def recorded_model_problem(path: Path, name: str, run: Optional[str] = None) -> str:
    """Why the weights file ``path`` that a checkpoint records for its
    model ``name`` may not be written by its resumed run; "" where it may: a
    ``.safetensors`` path where neither the weights nor their card (``.json``
    beside them) exist yet, or a file (of any name: ``--export`` takes
    ``model.pt``) whose card says it is that model. Said as a clause: "it is
    not a .safetensors file"."""
    card_path = path.with_suffix(".json")
    if not os.path.lexists(path) and not os.path.lexists(card_path):
        # the run's first export: a new file, where a name of its own choosing
        # (a missing ~/.ssh/authorized_keys) could be read as something else
        return "" if path.suffix == ".safetensors" else "it is not a .safetensors file"
    if os.path.lexists(path) and not _is_regular_file(path):
        return "it is a link or not a regular file"
    if not _is_regular_file(card_path):  # a link is no card the run wrote: it writes cards as files
        return f"there is no model card beside it ({card_path.name})"
    from imgedit.models import ModelSpec, is_safetensors_file

    card = ModelSpec(path.stem, path).card()
    if not card.get("architecture"):
        return f"{card_path.name} beside it is not a model card"
    if card.get("name") != name:
        return f"the model there is another one (its card names {card.get('name')!r}, the run {name!r})"
    made_by = (card.get("training") or {}).get("run")
    if run is not None and isinstance(made_by, str) and made_by != run:  # cards before runs were named: the name decides
        return f"the model there is another run's of the name {name!r} (a later run took it over)"
    if os.path.lexists(path) and not is_safetensors_file(path):
        return "the file there is not a safetensors file"
    return ""


def _is_regular_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (lstat: not a link to one)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def resolved(path: Path) -> Path:
    """``path`` resolved, or made absolute where it cannot be (a link loop in it)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def check_run_folder(out_dir: Path) -> None:
    """Refuse a run folder whose log or ``samples`` folder is a symbolic link,
    or whose log is no regular file: a run folder may come with a downloaded
    checkpoint, and the run would append to, or write its sheets into,
    whatever the link points at. (The checkpoint and the sheets are written
    atomically: a link at their names is replaced, not followed.)

    Raises:
        UsageError: which path, and that it is to be removed.
    """
    for path in (Path(out_dir) / "log.jsonl", Path(out_dir) / "samples"):
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue  # not there (the run makes it), or unreachable: writing it says why
        if stat.S_ISLNK(mode):
            raise UsageError(f"{path} is a symbolic link: a training run writes its log and samples in its own "
                             "folder, never through a link; remove it")
        if path.name == "log.jsonl" and not stat.S_ISREG(mode):
            raise UsageError(f"{path} is not a regular file: a training run appends its log there; remove it")


def _refuse_other_run(out_dir: Path, resume: Optional[Path]) -> None:
    checkpoint = Path(out_dir) / "checkpoint.safetensors"
    if resume is None:
        continue_with = checkpoint if checkpoint.is_file() else "<checkpoint>"
        raise UsageError(f"{out_dir} already holds a training run: pass --resume {continue_with} to continue it, "
                         "or --overwrite to start over")
    raise UsageError(f"--out {out_dir} holds another training run than the one of {resume}: leave out --out to go on "
                     f"in {checkpoint_file(resume).parent}, give another --out, or pass --overwrite to replace that run")


def check_export_path(path: Path) -> None:
    """Refuse, before any training, a weights file that could not be written at the end.

    Raises:
        UsageError: the path is empty, its folder cannot be written, the path
            is a folder or another file than a regular one (a device, a
            pipe: the weights would replace it), or its name is too long or,
            on Windows, one Windows cannot have (``v1:final``, ``con``).
    """
    if not path.name:  # "" (the current folder, as a Path) or "/"
        raise UsageError(f"--export {str(path)!r} names no file: give the weights file's path (e.g. model.safetensors)")
    check_writable_folder(path.parent, "the trained model")
    for name in (path.name, path.with_suffix(".json").name):  # the weights, and the card written beside them
        if name_too_long(name):  # checked first: even a stat of such a path fails
            size, unit = name_length(name)
            raise UsageError(f"--export {path.name[:40]}...: the file name is too long ({size} {unit}; "
                             f"a file name holds at most {NAME_MAX}, its card's name too)")
        problem = name_windows_refuses(name)
        if problem:  # it would fail after the training, or v1:final.json go into a hidden stream of v1
            raise UsageError(f"--export {path.name}: {problem}")
    if path.is_dir():
        raise UsageError(f"--export {path} is a folder: give the weights file's path (e.g. {path / 'model.safetensors'})")
    if path.exists() and not path.is_file():
        raise UsageError(f"--export {path} exists and is not a regular file")


def remove_run_outputs(out_dir: Path) -> None:
    """Delete an earlier run's files in ``out_dir`` (:func:`run_outputs`): ``--overwrite`` starts over."""
    for path in run_outputs(out_dir):
        path.unlink()
