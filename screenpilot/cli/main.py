"""The ``screenpilot`` command.

Exit status: 0 when the agent finished with success, 1 when an episode (or a parse) ended otherwise, 2 on a
usage or setup error (one clear line, no traceback), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from screenpilot import __version__
from screenpilot.actions.coords import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, CoordinateSpace
from screenpilot.actions.types import action_to_dict
from screenpilot.cli import suite_commands, wiring
from screenpilot.cli.argtypes import non_negative_int, positive_int, screen_size
from screenpilot.errors import ModelOutputError, ScreenpilotError, SetupError
from screenpilot.model.qwen25vl import Qwen25VLDialect


def model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=wiring.DEFAULT_MODEL,
        help="local directory or hub id (transformers), http://HOST:PORT/v1 (OpenAI-compatible server) or "
        "replay:FILE|RUN_DIR (default: %(default)s)",
    )
    g.add_argument("--served-model", help="model name on the server (default: the first it lists)")
    g.add_argument(
        "--api-key", default=os.environ.get("OPENAI_API_KEY"), help="server API key ($OPENAI_API_KEY)"
    )
    g.add_argument(
        "--device",
        default=None,
        help="torch device for a local model (default: cuda if available; auto spreads the layers over all GPUs)",
    )
    g.add_argument(
        "--dtype", default=None, help="torch dtype for a local model (default: bf16 on GPU, fp32 on CPU)"
    )
    g.add_argument("--max-new-tokens", type=positive_int, default=256, help="generation limit (default: 256)")
    g.add_argument(
        "--cache-implementation",
        choices=("dynamic", "static"),
        default="dynamic",
        help="local model KV cache; static compiles once (about a minute) and then decodes ~3x faster on a GPU",
    )
    g.add_argument("--min-pixels", type=positive_int, default=QWEN_MIN_PIXELS, help="image pixel floor")
    g.add_argument(
        "--max-pixels",
        type=positive_int,
        default=QWEN_MAX_PIXELS,
        help="image pixel cap; lower it (e.g. 1003520 = 1280*28*28) to trade grounding for speed",
    )
    g.add_argument(
        "--answer-action", action="store_true", help="offer the `answer` action (AndroidWorld variant)"
    )
    g.add_argument(
        "--reasoning", action="store_true", help="ask for <thinking>/<conclusion> around each call"
    )
    g.add_argument(
        "--keep-images",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="also show the last N screenshots",
    )
    g.add_argument(
        "--max-retries", type=non_negative_int, default=2, help="re-asks per step after an unusable answer"
    )
    return p


def env_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("environment")
    g.add_argument("--env", choices=wiring.ENV_NAMES, required=True, help="where to act")
    g.add_argument(
        "--serial", action="append", help="Android device serial (default: $ANDROID_SERIAL or the only one)"
    )
    g.add_argument("--monitor", type=int, default=1, help="desktop monitor number, 1 = primary (default: 1)")
    g.add_argument(
        "--screen-size",
        type=screen_size,
        help="sandbox/fake screen size WxH (default: 1280x800 sandbox, 1080x2400 fake)",
    )
    g.add_argument("--app", help="sandbox: command to launch on the virtual display, e.g. 'xterm'")
    g.add_argument(
        "--no-settle", action="store_true", help="do not wait for the screen to settle after actions"
    )
    g.add_argument(
        "--settle-timeout", type=float, default=3.0, help="longest settle wait in seconds (default: 3)"
    )
    return p


def loop_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("episode")
    g.add_argument("--max-steps", type=positive_int, default=30, help="step budget (default: 30)")
    g.add_argument("--max-seconds", type=float, default=None, help="time budget per episode")
    g.add_argument(
        "--max-failed-steps", type=positive_int, default=3, help="consecutive failed steps allowed"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="screenpilot",
        description="GUI agents on Android and desktops, driven by a locally hosted Qwen2.5-VL.",
        epilog="Exit status: 0 success, 1 the episode (or parse) failed, 2 usage or setup error, 130 Ctrl-C.",
    )
    parser.add_argument("--version", action="version", version=f"screenpilot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    tool_parent = argparse.ArgumentParser(add_help=False)
    tool_parent.add_argument("--tool", choices=("mobile_use", "computer_use"), required=True)
    tool_parent.add_argument(
        "--screen", type=screen_size, required=True, help="device screen size WxH, e.g. 1080x2400"
    )
    tool_parent.add_argument("--min-pixels", type=positive_int, default=QWEN_MIN_PIXELS)
    tool_parent.add_argument("--max-pixels", type=positive_int, default=QWEN_MAX_PIXELS)
    tool_parent.add_argument(
        "--answer-action", action="store_true", help="AndroidWorld variant with `answer`"
    )

    p = sub.add_parser("prompt", parents=[tool_parent], help="print the system message the model is given")
    p.set_defaults(func=cmd_prompt)

    p = sub.add_parser(
        "parse", parents=[tool_parent], help="parse raw model output into device-pixel actions"
    )
    p.add_argument("file", nargs="?", default="-", help="file with the model's raw output, or - for stdin")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser(
        "run", parents=[model_options(), env_options(), loop_options()], help="run one task on a device"
    )
    p.add_argument("task", help="what the agent should do, in plain words")
    p.add_argument("--out", type=Path, help="run folder (default: runs/<date>-<time>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="decide but never execute")
    mode.add_argument("--confirm", action="store_true", help="ask on the terminal before each action")
    p.add_argument("--quiet", action="store_true", help="print only the result")
    p.set_defaults(func=cmd_run)

    suite_commands.register(
        sub, model_options=model_options, env_options=env_options, loop_options=loop_options
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SetupError as exc:
        print(f"screenpilot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("screenpilot: interrupted", file=sys.stderr)
        return 130


def _space(args: argparse.Namespace) -> tuple[Qwen25VLDialect, CoordinateSpace]:
    """The dialect and coordinate space for ``--tool``/``--screen`` and the pixel limits."""
    dialect = Qwen25VLDialect(
        args.tool, min_pixels=args.min_pixels, max_pixels=args.max_pixels, answer_action=args.answer_action
    )
    try:
        return dialect, dialect.coordinate_space(args.screen)
    except ValueError as exc:
        raise SetupError(str(exc)) from exc


def cmd_prompt(args: argparse.Namespace) -> int:
    dialect, space = _space(args)
    sys.stdout.write(dialect.system_prompt(space))
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    dialect, space = _space(args)
    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SetupError(f"cannot read {args.file}: {exc.strerror}") from exc
    try:
        actions = dialect.parse(text, space)
    except ModelOutputError as exc:
        print(f"screenpilot: cannot parse: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for parsed in actions:
        print(json.dumps(action_to_dict(parsed.device), ensure_ascii=False))
    return 0


def default_run_folder(root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = root / f"{stamp}-{n}"
    return folder


def make_settle(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The loop's settle hook: the environment's own ``settle`` (a faster capture path) where it has one,
    else polling its observations until they stop changing."""
    if args.no_settle:
        return None
    from screenpilot.envs.base import Environment
    from screenpilot.envs.settle import wait_until_stable

    def settle(env: Environment) -> None:
        own = getattr(env, "settle", None)
        if callable(own):
            own(timeout_s=args.settle_timeout)
        else:
            wait_until_stable(lambda: env.observe().screenshot, timeout_s=args.settle_timeout)

    return settle


def cmd_run(args: argparse.Namespace) -> int:
    from screenpilot.agent.agent import Agent
    from screenpilot.agent.loop import Limits, run_episode
    from screenpilot.agent.policy import ApproveAll, Confirm, DryRun, Policy
    from screenpilot.agent.record import RunRecorder, record_episode

    try:
        limits = Limits(
            max_steps=args.max_steps, max_seconds=args.max_seconds, max_failed_steps=args.max_failed_steps
        )
    except ValueError as exc:
        raise SetupError(str(exc)) from exc
    policy: Policy = DryRun() if args.dry_run else Confirm() if args.confirm else ApproveAll()
    out = args.out or default_run_folder()

    model = wiring.build_model(args)
    try:
        env = wiring.build_env(args)
    except BaseException:
        model.close()
        raise
    try:
        dialect = Qwen25VLDialect.for_platform(env.platform, **wiring.dialect_options(args))
        agent = Agent(model, dialect, max_retries=args.max_retries)
        meta: dict[str, Any] = {
            "screenpilot": __version__,
            "goal": args.task,
            "started": time.time(),
            "env": env.describe(),
            "model": model.describe(),
            "dialect": dialect.describe(),
            "limits": limits.__dict__,
            "policy": type(policy).__name__,
        }
        recorder = RunRecorder(out, meta)
        model.begin_episode(None)
        episode = run_episode(
            env,
            agent,
            args.task,
            limits=limits,
            policy=policy,
            settle=make_settle(args),
            keep_screenshots=args.keep_images > 0,
        )
        on_step = None if args.quiet else _print_step
        try:
            result = record_episode(episode, recorder, on_step)
        except SetupError:
            raise  # exit status 2, like any other setup error
        except ScreenpilotError as exc:
            print(f"screenpilot: error: {exc} (recorded in {out})", file=sys.stderr)
            return 1
    finally:
        env.close()
        model.close()
    line = f"{result.status}: {result.reason} after {result.steps} steps in {result.duration_s:.1f}s"
    if result.answer is not None:
        line += f"; answer: {result.answer}"
    if result.error:
        line += f" ({result.error})"
    print(line)
    print(f"run folder: {out}", file=sys.stderr)
    return 0 if result.status == "success" else 1


def _print_step(record: Any) -> None:
    parts = []
    for a in record.actions:
        fields = " ".join(f"{k}={v}" for k, v in a.device.items() if k != "action")
        flag = (
            ""
            if a.executed or a.verdict == "final"
            else f" [{a.verdict if a.verdict != 'approve' else 'failed'}]"
        )
        parts.append(f"{a.device['action']} {fields}".strip() + flag)
    if not parts:
        parts.append("no action: " + (record.errors[-1] if record.errors else "unknown"))
    t = record.timings
    print(
        f"step {record.index}: {'; '.join(parts)}  (model {t.model_s:.2f}s, execute {t.execute_s:.2f}s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    raise SystemExit(main())
