"""Help pages laid out as click lays them out, except that a line never
breaks at a hyphen inside a word: ``--style-image`` split into ``--style-``
and ``image`` cannot be copied, and a screen reader reads two words."""

from __future__ import annotations

import re
from typing import Any, Iterable

import click

__all__ = ["HelpContext", "HelpFormatter", "use_help_context"]

_HELD = "\u2011"  # a non-breaking hyphen: textwrap breaks only at "-", and it is one column wide too
_INNER_HYPHEN = re.compile(r"(?<=\S)-(?=\S)")


def _hold(text: str) -> str:
    return _INNER_HYPHEN.sub(_HELD, text)


class HelpFormatter(click.HelpFormatter):
    """click's formatter with the hyphens inside words held while lines are
    wrapped, and written back as they were."""

    def write(self, string: str) -> None:
        super().write(string.replace(_HELD, "-"))

    def write_text(self, text: str) -> None:
        super().write_text(_hold(text))

    def write_dl(self, rows: Iterable[tuple[str, str]], *args: Any, **kwargs: Any) -> None:
        super().write_dl([(term, _hold(text)) for term, text in rows], *args, **kwargs)

    def write_usage(self, prog: str, args: str = "", prefix: Any = None) -> None:
        super().write_usage(prog, _hold(args), prefix)


class HelpContext(click.Context):
    formatter_class = HelpFormatter


def use_help_context(command: click.Command) -> None:
    """Lay out ``command``'s help, and its sub-commands', with :class:`HelpFormatter`
    (a plugin's command is made with click's own context class)."""
    if command.context_class is click.Context:
        command.context_class = HelpContext
    for sub in getattr(command, "commands", {}).values():
        use_help_context(sub)
