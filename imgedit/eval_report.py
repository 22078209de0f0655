"""What the ``eval`` verbs share: the contact sheet they write
(``--sheet``), their report as text or JSON, and the checks that keep
``--record`` and ``--overwrite`` from replacing anything by mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import click

from imgedit.errors import UsageError
from imgedit.options import CheckedPath


def sheet_option(help: str) -> Callable:
    """``--sheet FILE``: a contact sheet an ``eval`` verb writes (check it with :func:`check_sheet`)."""
    return click.option("--sheet", type=CheckedPath(), help=help)


def check_sheet(sheet: Optional[Path], overwrite: bool = False) -> None:
    """Refuse, before an evaluation, a ``--sheet`` that could not be written
    after it (an unknown suffix, a folder, a folder that cannot be
    written): failing then would lose the figures; and one that exists,
    unless ``overwrite``: the sheet would replace it silently."""
    if sheet is None:
        return
    from imgedit.atomic import check_writable_folder
    from imgedit.imageio.formats import format_for_path

    if sheet.is_dir():
        raise UsageError(f"--sheet {sheet} is a folder: give the contact sheet's file (e.g. {sheet / 'sheet.png'})")
    format_for_path(sheet)
    check_writable_folder(sheet.parent, f"--sheet {sheet}")
    if not overwrite and (sheet.exists() or sheet.is_symlink()):
        raise UsageError(f"--sheet {sheet} exists: pass --overwrite to replace it, or give another --sheet")


def echo_report(report: dict, notes: list[str], as_json: bool, text: Callable[[], str]) -> None:
    """An ``eval`` verb's output: the report and its notes as JSON, or
    ``text()`` (the report as a table) followed by the notes, one per line."""
    import json

    if as_json:
        click.echo(json.dumps({**report, "notes": notes}, indent=2))
        return
    click.echo(text())
    for note in notes:
        click.echo(note)


def check_record(spec: Any, key: str, new: dict, counts: tuple[str, ...], overwrite: bool) -> None:
    """Keep an ``eval`` verb's ``--record`` from replacing a model card's
    figures with weaker ones: figures on held-out images with figures that
    are not, or figures over more images (or steps) with figures over fewer;
    and from writing into an installed package.

    Args:
        spec: the model's :class:`~imgedit.models.ModelSpec`.
        key: where in the card's ``metrics`` the figures go, e.g. ``"eval_gan"``.
        new: this run's ``held_out`` and ``counts`` (a number, or a list counted by its length).
        counts: the keys that say how much the figures rest on, e.g. ``("n",)``.
        overwrite: ``--overwrite`` was given: replace them anyway.

    Raises:
        UsageError: the card is an installed file, or the new figures would be weaker.
    """
    from imgedit.models import in_site_packages

    if in_site_packages(spec.card_path):  # pip owns it: its RECORD no longer matches, an upgrade drops the figures
        raise UsageError(f"--record: {spec.card_path} belongs to the installed imgedit package; copy its weights "
                         "folder somewhere of your own and set IMGEDIT_WEIGHTS to it, or run from a source checkout")
    recorded = (spec.card().get("metrics") or {}).get(key)
    where = f"{spec.card_path} (metrics.{key})"
    if overwrite or not isinstance(recorded, dict):
        return
    if recorded.get("held_out") and not new.get("held_out"):
        raise UsageError(f"--record: {where} holds figures on held-out images and these are not; "
                         "use --held-out, or --overwrite to replace them anyway")

    def count(value: Any) -> Optional[int]:
        return len(value) if isinstance(value, list) else value if isinstance(value, int) else None

    for key in counts:
        old, now = count(recorded.get(key)), count(new.get(key))
        if old is not None and now is not None and now < old:
            raise UsageError(f"--record: {where} holds figures with {key}={old} and these have {key}={now}; "
                             "--overwrite replaces them anyway")


_REPLACED = {"record": "a model card's recorded figures", "sheet": "an existing --sheet"}


def check_overwrite(overwrite: bool, **given: Any) -> None:
    """``--overwrite`` of an ``eval`` verb says how the outputs it names are
    written: without any of them it is a slip.

    Args:
        overwrite: ``--overwrite`` was given.
        given: the value of each option of the verb that it applies to
            (``record=False``, ``sheet=None``): of ``record`` and ``sheet``.

    Raises:
        UsageError: ``overwrite`` without any of them.
    """
    if overwrite and all(value is None or value is False for value in given.values()):
        raise UsageError(f"--overwrite replaces {' or '.join(_REPLACED[name] for name in given)}: it needs "
                         + " or ".join(f"--{name}" for name in given))
