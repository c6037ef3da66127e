"""The whole command line, pinned: every subcommand's options with their flags, defaults, types, choices, groups
and help text, against ``parser_options.json``. A change to any of them shows here as a diff to review.

After an intended change, rewrite the file with ``python -m tests.cli.test_parser_options``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from screenpilot.cli.main import build_parser

GOLDEN = Path(__file__).with_name("parser_options.json")


def _option(action: argparse.Action, group: str) -> dict[str, Any]:
    kind = action.type
    described: dict[str, Any] = {
        "flags": list(action.option_strings) or None,
        "dest": action.dest,
        "kind": type(action).__name__,
        "default": repr(action.default),
        "required": action.required or None,
        "choices": list(action.choices) if action.choices is not None else None,
        "nargs": action.nargs,
        "type": getattr(kind, "__name__", repr(kind)) if kind is not None else None,
        "metavar": action.metavar,
        "const": repr(action.const) if action.const is not None else None,
        "help": action.help,
        "group": group,
    }
    return {k: v for k, v in described.items() if v is not None}


def describe(parser: argparse.ArgumentParser, name: str = "screenpilot") -> dict[str, Any]:
    """Every (sub)command of ``parser`` by its full name: description, epilog, options, exclusive groups."""
    commands: dict[str, Any] = {}
    options = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    commands.update(describe(sub, f"{name} {sub_name}"))
                continue
            options.append(_option(action, group.title or ""))
    commands[name] = {
        "description": parser.description,
        "epilog": parser.epilog,
        "options": options,
        "exclusive": [[a.dest for a in g._group_actions] for g in parser._mutually_exclusive_groups],
    }
    return commands


def test_every_option_of_every_subcommand_is_as_pinned():
    pinned = json.loads(GOLDEN.read_text(encoding="utf-8"))
    now = describe(build_parser())
    assert sorted(now) == sorted(pinned)
    for command in sorted(pinned):
        assert now[command] == pinned[command], command


def test_the_help_of_every_subcommand_is_printed_without_error(capsys):
    parser = build_parser()
    for command in sorted(describe(parser)):
        words = command.split()[1:]
        try:
            parser.parse_args([*words, "--help"])
        except SystemExit as exc:
            assert exc.code == 0, command
        assert "usage: screenpilot" in capsys.readouterr().out, command


if __name__ == "__main__":
    GOLDEN.write_text(
        json.dumps(describe(build_parser()), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def test_no_help_shows_a_bare_truth_value_and_zero_defaults_are_shown():
    commands = describe(build_parser())
    helps = {o["help"] for c in commands.values() for o in c["options"] if o.get("help")}
    assert not [h for h in helps if "(default: True)" in h or "(default: False)" in h]
    keep_images = next(o for o in commands["screenpilot run"]["options"] if o["dest"] == "keep_images")
    assert keep_images["help"].endswith("(default: 0)")
