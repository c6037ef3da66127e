"""``screenpilot mcp``: a session's verbs as MCP tools over stdio, for other agents to drive a device with.

The session is opened (environment started, model checked) before the protocol starts, so a bad option, model
or device is one ``screenpilot: error: …`` line and exit status 2. Then stdin and stdout carry only the MCP
protocol; progress lines go to stderr. When the client disconnects (closes stdin), or on SIGTERM, SIGHUP or
Ctrl-C, the session is closed: ``result.json`` written, the environment (a sandbox's display and app) and the
model closed, nothing left running.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from screenpilot.cli.options import env_options, loop_options, model_options, settings_from_args
from screenpilot.errors import MissingExtraError, ScreenpilotError
from screenpilot.settings import Settings

MCP_EXIT_STATUS = (
    "Exit status: 0 the client disconnected (the session closed normally); 1 the server failed; 2 usage or "
    "setup error (one line; nothing served); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (the session closed, its run "
    "marked interrupted)."
)
#: The locator cache the server uses unless told otherwise, relative to the current folder.
DEFAULT_CACHE = Path(".screenpilot") / "locators.json"


def register(sub: Any) -> None:
    """Add ``screenpilot mcp`` to the ``screenpilot`` parser."""
    p = sub.add_parser(
        "mcp",
        parents=[model_options(), env_options(), loop_options()],
        help="serve a session's verbs (screenshot, locate, click, type_text, key, swipe, open_app, ask, run) "
        "as MCP tools over stdio",
        epilog=MCP_EXIT_STATUS,
    )
    p.add_argument("--out", type=Path, help="run folder (default: runs/<date>-<time>)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache", type=Path, help=f"locator cache file (default: {DEFAULT_CACHE} in the current folder)"
    )
    cache.add_argument("--no-cache", action="store_true", help="ground every target with the model")
    p.add_argument("--dry-run", action="store_true", help="record every action, execute none")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_mcp)


def cmd_mcp(args: argparse.Namespace) -> int:
    """Serve until the client disconnects; the exit status is :data:`MCP_EXIT_STATUS`."""
    from screenpilot.cli.run_command import StopSignal, stop_on_signals

    settings = settings_from_args(args)
    try:
        from screenpilot.session import mcp_server
    except ImportError as exc:
        raise MissingExtraError("mcp", "mcp", "screenpilot mcp") from exc
    with stop_on_signals():
        try:
            return _serve(args, settings, mcp_server)
        except StopSignal as exc:
            print(f"screenpilot: {exc}", file=sys.stderr)
            return exc.exit_status
        except KeyboardInterrupt:
            print("screenpilot: interrupted", file=sys.stderr)
            return 130


def _serve(args: argparse.Namespace, settings: Settings, mcp_server: Any) -> int:
    from screenpilot.cli.run_command import opening_line, say

    say(opening_line(settings), quiet=args.quiet)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the protocol's, from the start
        session = _connect(args, settings)
    say(f"serving MCP tools on stdio (run folder: {session.folder})", quiet=args.quiet)
    error: BaseException | None = None
    try:
        mcp_server.serve(session)
    except BaseException as exc:
        error = exc
        if isinstance(exc, ScreenpilotError):
            print(f"screenpilot: error: {exc} (run folder: {session.folder})", file=sys.stderr)
            return 1
        raise
    finally:
        with _shielded():
            session.close(error)
    return 0


def _connect(args: argparse.Namespace, settings: Settings) -> Any:
    from screenpilot.session.connecting import connect

    given = {k: v for k, v in vars(args).items() if k in Settings.model_fields and k not in ("env", "model")}
    policy: Literal["dry_run", "approve"] = "dry_run" if args.dry_run else "approve"
    cache: Path | Literal[False] = False if args.no_cache else (args.cache or Path.cwd() / DEFAULT_CACHE)
    return connect(
        args.env,
        model=settings.model,
        out=args.out,
        cache=cache,
        policy=policy,
        name="screenpilot mcp",
        quiet=args.quiet,
        **given,
    )


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP while the session closes, so a client's SIGTERM after it closed our
    stdin cannot cut the sandbox's shutdown short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)
