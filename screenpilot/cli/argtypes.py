"""Argument types shared by the subcommands: they turn bad values into argparse usage errors (exit 2)."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from screenpilot.actions.coords import Size


class Parser(argparse.ArgumentParser):
    """A parser whose usage errors are one line naming the subcommand and where its options are listed,
    instead of the whole usage block (dozens of lines for ``run`` or ``bench``) above the one that matters."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def name_choices(subcommands: Any) -> None:
    """Show a subcommand group by its choices (``{grounding,steps}``) in a usage error too, where argparse
    would name its ``dest`` ("the following arguments are required: eval_kind"); ``--help`` looks the same."""
    subcommands.metavar = "{" + ",".join(subcommands.choices) + "}"


def screen_size(text: str) -> Size:
    try:
        return Size.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        wanted = "at least 1" if minimum == 1 else f"{minimum} or more"
        raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
    return value


def non_empty_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text
