"""Subcommands that repeat recorded runs: ``export`` (a run as a Python script) and ``replay`` (the same, at
once, without writing a script).

Both read the settings the run was recorded with (``run.json``) and let the command line override them; an
``--env`` other than the recorded one drops the recorded environment's own options (``--app``, ``--serial``...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from screenpilot.cli.argtypes import non_empty_text
from screenpilot.errors import ScreenpilotError, SetupError
from screenpilot.settings import ENV_OPTIONS, Settings

ParentFactory = Callable[[], argparse.ArgumentParser]

REPLAY_EXIT_STATUS = (
    "Exit status: 0 every recorded action was replayed, or the agent took over and succeeded; 1 an anchor was "
    "not found and there is no --model (the message names the step and both screenshots), the agent took over "
    "and did not succeed, or the model or the device failed (what was done is recorded); 2 usage or setup "
    "error; 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (result.json marks the run interrupted)."
)
REPLAY_DESCRIPTION = (
    "Repeat a recorded run (from `screenpilot run` or a script) on --env: each executed action at its recorded "
    "point, once the anchor cut there from the recorded screenshot is found on the screen now (it follows a "
    "moved element). No model call is made while the screen matches. With --model, an anchor that is not "
    "found hands the run over to the agent, told the goal and the steps done so far; it works until its "
    "episode ends, and the replay ends with it. Without --model the first mismatch ends the replay."
)
EXPORT_DESCRIPTION = (
    "Write a Python script that repeats a recorded run: one call per executed action, with its recorded device "
    "point, the name of its anchor and the step's reasoning or conclusion as a comment. The anchors go next to "
    "the script (flow.anchors.json for flow.py). The script connects with the recorded settings (overridden by "
    "the options given here) and, when an anchor is not found, hands over to the agent as `replay --model` "
    "does. Exit status: 0 written, 2 usage or setup error."
)


def register(
    sub: Any,
    *,
    model_options: ParentFactory,
    env_options: Callable[..., argparse.ArgumentParser],
    loop_options: ParentFactory,
) -> None:
    """Add ``export`` and ``replay`` to the ``screenpilot`` parser."""
    p = sub.add_parser(
        "export",
        parents=[
            model_options(),
            env_options(env_help="where the script acts (default: where the run was recorded)"),
            loop_options(),
        ],
        help="write a Python script that repeats a recorded run",
        description=EXPORT_DESCRIPTION,
    )
    p.add_argument("run", type=Path, help="the run folder to repeat")
    p.add_argument("-o", "--output", type=Path, required=True, help="the script to write (NAME.py)")
    p.add_argument(
        "--goal",
        type=non_empty_text,
        help="what the agent is told if it takes over (default: the run's goal; a script's run is named "
        "after the script, so give one)",
    )
    p.add_argument("--force", action="store_true", help="overwrite the script and its anchors file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "replay",
        parents=[model_options(), env_options(), loop_options()],
        help="repeat a recorded run, with the agent (--model) as the fallback",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EXIT_STATUS,
    )
    p.add_argument("run", type=Path, help="the run folder to repeat")
    p.add_argument(
        "--goal",
        type=non_empty_text,
        help="what the agent is told if it takes over (default: the run's goal)",
    )
    p.add_argument("--out", type=Path, help="run folder of the replay (default: runs/<date>-<time>)")
    p.add_argument("--quiet", action="store_true", help="print only the outcome")
    p.set_defaults(func=cmd_replay)


def merged_settings(args: argparse.Namespace, meta: dict[str, Any], *, recorded_model: bool) -> Settings:
    """The recorded settings with the options given on the command line on top; the recorded model only
    with ``recorded_model``."""
    from screenpilot.session.replay import recorded_options

    given = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    recorded = recorded_options(meta)
    if not recorded_model:
        recorded.pop("model", None)
    if "env" in given and given["env"] != recorded.get("env"):
        recorded = {k: v for k, v in recorded.items() if k not in ENV_OPTIONS}
    return Settings.from_options({**recorded, **given})


def _connect_options(settings: Settings) -> dict[str, Any]:
    """The settings given or recorded, as :func:`screenpilot.connect` takes them (``env``, ``model`` aside)."""
    return {k: getattr(settings, k) for k in sorted(settings.model_fields_set) if k not in ("env", "model")}


def cmd_export(args: argparse.Namespace) -> int:
    from screenpilot.agent.record import load_run
    from screenpilot.cli.run_command import counted
    from screenpilot.session.export import write_export
    from screenpilot.session.replay import read_run

    recording, actions = read_run(args.run, goal=args.goal)
    settings = merged_settings(args, load_run(args.run).meta, recorded_model=True)
    if settings.env is None:
        raise SetupError(f"{args.run}/run.json names no environment; give one with --env")
    options: dict[str, Any] = {"env": settings.env, "model": settings.model}
    for name, value in _connect_options(settings).items():
        if name != "api_key":  # never written into a script; the script reads $OPENAI_API_KEY
            options[name] = _plain(value)
    sidecar = write_export(recording, actions, args.output, options, force=args.force)
    print(f"wrote {args.output} ({counted(len(actions), 'action')}) and {sidecar}", file=sys.stderr)
    return 0


def _plain(value: Any) -> Any:
    """A setting as a literal for the script: a screen size as ``"WxH"``, tuples as lists."""
    from screenpilot.actions.coords import Size

    if isinstance(value, Size):
        return f"{value.width}x{value.height}"
    return list(value) if isinstance(value, tuple) else value


def cmd_replay(args: argparse.Namespace) -> int:
    from screenpilot.agent.record import load_run
    from screenpilot.cli.run_command import StopSignal, stop_on_signals
    from screenpilot.session.replay import read_run

    recording, actions = read_run(args.run, goal=args.goal)
    settings = merged_settings(args, load_run(args.run).meta, recorded_model=False)
    with stop_on_signals():
        try:
            return _replay(settings, recording, actions, args)
        except StopSignal as exc:
            print(f"screenpilot: {exc}", file=sys.stderr)
            return exc.exit_status
        except KeyboardInterrupt:
            print("screenpilot: interrupted", file=sys.stderr)
            return 130
        except SetupError:
            raise
        except ScreenpilotError as exc:
            print(f"screenpilot: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1


def _replay(settings: Settings, recording: Any, actions: list[Any], args: argparse.Namespace) -> int:
    import screenpilot
    from screenpilot.cli.run_command import opening_line, say
    from screenpilot.session.replay import NoModel, Replay

    fallback = "model" in settings.model_fields_set
    say(opening_line(settings, with_model=fallback), quiet=args.quiet)
    with screenpilot.connect(
        settings.env or "",
        model=settings.model if fallback else NoModel(),
        out=args.out,
        cache=False,
        name=recording.goal,
        quiet=args.quiet,
        **_connect_options(settings),
    ) as s:
        flow = Replay(s, recording, fallback=fallback)
        for done in actions:
            flow.do(done.step, done.action, anchor=done.anchor)
        result = flow.finish()
        folder = s.folder
    if result is None:
        print(f"replayed {len(actions)} actions (run folder: {folder})")
    else:
        print(
            f"the agent took over at step {flow.handed_over_at} and succeeded after {result.steps} steps "
            f"(run folder: {folder})"
        )
    return 0
