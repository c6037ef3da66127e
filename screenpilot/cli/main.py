"""The ``screenpilot`` command.

Exit status: 0 when the agent finished with success, 1 when an episode (or a parse) ended otherwise, 2 on a
usage or setup error (one clear line, no traceback), 130 on Ctrl-C, 143 on SIGTERM, 129 on SIGHUP, 141 when
the reader of the output went away (``| head``). ``bench`` and ``eval`` define their own (see their ``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot import __version__
from screenpilot.actions.coords import CoordinateSpace
from screenpilot.actions.types import action_to_dict
from screenpilot.cli import mcp_command, script_commands, suite_commands, wiring
from screenpilot.cli.argtypes import Parser, name_choices, non_empty_text, positive_int, screen_size
from screenpilot.cli.options import env_options, loop_options, model_options, settings_from_args
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.base import render_chatml
from screenpilot.model.dialect import Dialect
from screenpilot.settings import DIALECT_NAMES


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="screenpilot",
        description="GUI agents on Android and desktops, driven by a locally hosted Qwen2.5-VL, Qwen3-VL or "
        "UI-TARS-1.5 in its own native format.",
        epilog="Exit status: 0 success, 1 the episode (or parse) failed, 2 usage or setup error, "
        "130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 the output's reader went away (bench and eval: see their "
        "--help).",
    )
    parser.add_argument("--version", action="version", version=f"screenpilot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prompt(sub)
    _add_parse(sub)
    _add_run(sub)
    suite_commands.register(
        sub, model_options=model_options, env_options=env_options, loop_options=loop_options
    )
    mcp_command.register(sub)
    script_commands.register(
        sub, model_options=model_options, env_options=env_options, loop_options=loop_options
    )
    name_choices(sub)
    return parser


def _tool_options() -> argparse.ArgumentParser:
    """What ``prompt`` and ``parse`` share: the tool, the screen, and the options that shape the prompt."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--tool", choices=("mobile_use", "computer_use"), required=True)
    p.add_argument("--screen", type=screen_size, required=True, help="device screen size WxH, e.g. 1080x2400")
    p.add_argument("--min-pixels", type=positive_int, default=argparse.SUPPRESS)
    p.add_argument("--max-pixels", type=positive_int, default=argparse.SUPPRESS)
    p.add_argument("--dialect", choices=DIALECT_NAMES, default=argparse.SUPPRESS)
    p.add_argument(
        "--answer-action",
        action="store_true",
        default=argparse.SUPPRESS,
        help="AndroidWorld variant with `answer`",
    )
    return p


def _add_prompt(sub: Any) -> None:
    p = sub.add_parser(
        "prompt", parents=[_tool_options()], help="print the system message the model is given"
    )
    p.add_argument(
        "--goal",
        type=non_empty_text,
        help="print the whole first prompt for this goal instead (ChatML, the image as its placeholder): for "
        "families such as UI-TARS whose instructions are in the user turn",
    )
    p.set_defaults(func=cmd_prompt)


def _add_parse(sub: Any) -> None:
    p = sub.add_parser(
        "parse", parents=[_tool_options()], help="parse raw model output into device-pixel actions"
    )
    p.add_argument("file", nargs="?", default="-", help="file with the model's raw output, or - for stdin")
    p.set_defaults(func=cmd_parse)


def _add_run(sub: Any) -> None:
    p = sub.add_parser(
        "run", parents=[model_options(), env_options(), loop_options()], help="run one task on a device"
    )
    p.add_argument("task", type=non_empty_text, help="what the agent should do, in plain words")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<date>-<time>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="decide but never execute")
    mode.add_argument("--confirm", action="store_true", help="ask on the terminal before each action")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=cmd_run)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(build_parser(), argv)
    _show_warnings()
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # a reader gone by now is found here, not in the flush at exit
        return status
    except SetupError as exc:
        print(f"screenpilot: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("screenpilot: error: out of memory; lower --max-pixels or --screen-size", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("screenpilot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): end quietly, as on SIGPIPE
        _discard_output()
        return 128 + signal.SIGPIPE


def _discard_output() -> None:
    """Point stdout and stderr at /dev/null, so nothing more (not even the flush at exit) fails on them."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, but words left over are reported by the command they follow, with its ``--help``; a
    task of several words without quotes is shown quoted."""
    args, extra = parser.parse_known_args(argv)
    if not extra:
        return args
    prog = " ".join(["screenpilot", args.command, *([args.eval_kind] if args.command == "eval" else [])])
    message = f"unrecognized arguments: {' '.join(extra)}"
    if args.command == "run" and not extra[0].startswith("-"):
        message += (
            f'; a task of several words goes in quotes: screenpilot run "{" ".join([args.task, *extra])}"'
        )
    parser.exit(2, f"{prog}: error: {message} (see {prog} --help)\n")


class _StderrLines(logging.Handler):
    """Writes each record as a line to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _show_warnings() -> None:
    """screenpilot's own warnings (a model call being retried, say) as ``screenpilot: …`` lines on stderr."""
    logger = logging.getLogger("screenpilot")
    if not logger.handlers:
        handler = _StderrLines()
        handler.setFormatter(logging.Formatter("screenpilot: warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        logger.addHandler(handler)
        logger.propagate = False


def _space(args: argparse.Namespace) -> tuple[Dialect, CoordinateSpace]:
    """The dialect and coordinate space for ``--tool``/``--screen`` and the pixel limits."""
    settings = settings_from_args(args)
    dialect = wiring.make_dialect(settings, "mobile" if args.tool == "mobile_use" else "desktop")
    try:
        return dialect, dialect.coordinate_space(args.screen)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc


def cmd_prompt(args: argparse.Namespace) -> int:
    dialect, space = _space(args)
    if args.goal is None:
        sys.stdout.write(dialect.system_prompt(space))
    else:
        blank = Image.new("RGB", (args.screen.width, args.screen.height), "white")
        sys.stdout.write(render_chatml(dialect.messages(args.goal, blank, space, ())))
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    dialect, space = _space(args)
    try:
        actions = dialect.parse(_answer_text(args.file), space)
    except ModelOutputError as exc:
        print(f"screenpilot: cannot parse: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for parsed in actions:
        print(json.dumps(action_to_dict(parsed.device), ensure_ascii=False))
    return 0


def _answer_text(file: str) -> str:
    """The text of ``file`` (``-``: stdin) as UTF-8; a file that cannot be read or is not UTF-8 is a SetupError."""
    name = "stdin" if file == "-" else file
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read {name}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")  # a byte order mark (Notepad) is not part of the answer
    except UnicodeDecodeError as exc:
        raise SetupError(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})"
        ) from None


def cmd_run(args: argparse.Namespace) -> int:
    from screenpilot.agent.folders import given_run_folder, new_run_folder
    from screenpilot.agent.policy import ApproveAll, Confirm, DryRun, Policy
    from screenpilot.cli import run_command

    settings = settings_from_args(args)
    if len(settings.serial) > 1:  # refused here, not once the model has loaded
        raise SetupError("screenpilot run takes one --serial; several are for screenpilot bench")
    policy: Policy = DryRun() if args.dry_run else Confirm() if args.confirm else ApproveAll()
    folder = given_run_folder(args.out) if args.out else new_run_folder()
    return run_command.run_task(settings, args.task, policy, folder, quiet=args.quiet)


if __name__ == "__main__":
    raise SystemExit(main())
