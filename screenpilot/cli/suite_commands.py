"""Subcommands for task suites, reports and offline evaluation (``bench``, ``report``, ``eval``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from screenpilot.cli.argtypes import name_choices, positive_int
from screenpilot.envs.base import Environment
from screenpilot.errors import SetupError
from screenpilot.settings import Settings

if TYPE_CHECKING:
    from screenpilot.tasks.runner import BenchOutcome, BenchSettings
    from screenpilot.tasks.suite import Suite

ParentFactory = Callable[[], argparse.ArgumentParser]

BENCH_EXIT_STATUS = (
    "Exit status: 0 every planned episode finished (whatever the success rate); 1 the run stopped early because "
    "the model or the environment failed for the whole run (finished results kept, reason printed); 2 usage or "
    "setup error (nothing ran, or nothing more ran); 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (finished results "
    "kept, the run marked incomplete). The same command again resumes."
)


def register(
    sub: Any,
    *,
    model_options: ParentFactory,
    env_options: ParentFactory,
    loop_options: ParentFactory,
) -> None:
    """Add the suite subcommands to the ``screenpilot`` parser."""
    _add_bench(sub, parents=[model_options(), env_options(), loop_options()])
    _add_validate(sub)
    _add_report(sub)
    p = sub.add_parser(
        "eval", help="offline evaluation on recorded screens (no device)", epilog=EVAL_EXIT_STATUS
    )
    evals = p.add_subparsers(dest="eval_kind", required=True)
    _add_eval_grounding(evals, parents=[model_options()])
    _add_eval_steps(evals, parents=[model_options()])
    name_choices(evals)


def _add_bench(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        parents=parents,
        help="run a task suite (K trials per task, N devices at a time) into a resumable run folder",
        epilog=BENCH_EXIT_STATUS,
    )
    p.add_argument(
        "suite",
        type=Path,
        help="suite file (YAML); or miniwob (the MiniWoB++ tasks of the MiniWoB++ paper), miniwob:all (every "
        "task of the miniwob package) or miniwob:TASK,TASK, run in Chromium on --env sandbox",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="run folder; the same folder again resumes the run"
    )
    p.add_argument(
        "--jobs", type=positive_int, default=None, help="episodes at a time (default: one per --serial)"
    )
    p.add_argument("--trials", type=positive_int, default=1, help="trials per task (default: 1)")
    p.add_argument("--task", action="append", metavar="ID", help="run only this task (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="base seed, recorded in the manifest (default: 0)")
    p.add_argument("--force", action="store_true", help="resume even if the suite or model settings changed")
    p.add_argument(
        "--rerun-errors",
        action="store_true",
        help="resuming, also rerun the episodes that ended on an infrastructure error "
        "(device, model, crash or setup failure)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: one line per finished episode instead (also when stderr is not a terminal)",
    )
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    from screenpilot.cli.ray_bench import add_executor_options

    add_executor_options(p)
    p.set_defaults(func=cmd_bench)


def _add_validate(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a suite file and list its tasks; reports every problem, each with its line",
        description="Check a suite file and list its tasks. Every problem is reported at once, with its line. "
        "This imports the suite's python: checks, which runs their code: a suite file is code, not data.",
    )
    p.add_argument(
        "suite", type=Path, help="suite file (YAML), or miniwob[:SUBSET or TASK,TASK] to list those tasks"
    )
    p.set_defaults(func=cmd_validate)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write report.html for a bench folder or a single run folder",
        description="Write report.html for a bench folder or a single run folder. Exit status: 0 written; "
        "2 (one line) when FOLDER is neither or the output cannot be written.",
    )
    p.add_argument("folder", type=Path)
    p.add_argument(
        "--output", type=Path, help="where to write; its folder must exist (default: FOLDER/report.html)"
    )
    p.add_argument("--thumb", type=positive_int, default=480, help="longest thumbnail side in pixels")
    p.set_defaults(func=cmd_report)


def _add_eval_grounding(evals: Any, parents: list[argparse.ArgumentParser]) -> None:
    g = evals.add_parser(
        "grounding",
        parents=parents,
        help="ScreenSpot-style: does the click land in the target box?",
        epilog=EVAL_EXIT_STATUS,
    )
    g.add_argument(
        "data",
        type=Path,
        help="ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro as released (the folder, or one annotation file), "
        "or JSON Lines: image, instruction, bbox [x1,y1,x2,y2], optional group",
    )
    g.add_argument(
        "--format",
        choices=("jsonl", "screenspot", "screenspot-v2", "screenspot-pro"),
        help="data format (default: detected from the release's file names, else JSON Lines)",
    )
    g.add_argument("--images", type=Path, help="the release's image folder, if not in its usual place")
    g.add_argument(
        "--tool",
        choices=("mobile_use", "computer_use"),
        help="tool format (default: per example platform, else mobile)",
    )
    g.add_argument(
        "--bbox-format",
        choices=("xyxy", "xywh"),
        default="xyxy",
        help="JSON Lines bbox as [x1, y1, x2, y2] (default) or [x, y, width, height]",
    )
    _eval_run_options(g)
    g.set_defaults(func=cmd_eval_grounding)


def _add_eval_steps(evals: Any, parents: list[argparse.ArgumentParser]) -> None:
    s = evals.add_parser(
        "steps",
        parents=parents,
        help="AndroidControl-style: is the next action the recorded one?",
        epilog=EVAL_EXIT_STATUS,
    )
    s.add_argument(
        "data",
        type=Path,
        help="AndroidControl as released (a GZIP TFRecord file, or the folder of them), or JSON Lines: "
        "screenshot, goal, optional instruction, history, action",
    )
    s.add_argument(
        "--format",
        choices=("jsonl", "androidcontrol"),
        help="data format (default: AndroidControl for TFRecord files, else JSON Lines)",
    )
    s.add_argument(
        "--level",
        choices=("high", "low"),
        default="high",
        help="high: the goal only; low: the goal plus the step's instruction",
    )
    s.add_argument(
        "--split",
        choices=("train", "validation", "test"),
        help="AndroidControl: only the episodes of this split (from splits.json beside the data)",
    )
    s.add_argument("--splits", type=Path, help="AndroidControl: the splits.json file, if not beside the data")
    _eval_run_options(s)
    s.set_defaults(func=cmd_eval_steps)


def _eval_run_options(p: argparse.ArgumentParser) -> None:
    """Options every offline evaluation takes: where results go (and resume from), how many, how fast."""
    p.add_argument(
        "--out",
        type=Path,
        help="write the results as JSON here; each finished example is also appended to OUT's .items.jsonl "
        "beside it, and the same command again resumes from it",
    )
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N examples")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        help="requests at once against a server (default: 1; other backends answer one at a time)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# -- bench ----------------------------------------------------------------------------------------------------


class CliEnvSource:
    """Environments for bench workers from the settings: worker i drives ``--serial`` number i, or its own
    sandbox display."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def key(self, task: Any) -> Hashable:
        if self.settings.env == "sandbox":
            return ("sandbox", task.app or self.settings.app)
        return self.settings.env

    def build(self, task: Any, worker: int) -> Environment:
        return build_task_env(self.settings, task, worker)


def build_task_env(settings: Settings, task: Any, worker: int) -> Environment:
    """The environment worker ``worker`` uses for ``task``."""
    from screenpilot.cli import wiring

    serials = settings.serial
    return wiring.build_env(
        settings,
        serial=serials[worker] if settings.env == "android" and serials else None,
        app=task.app if settings.env == "sandbox" else None,
    )


def bench_suite(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    """The suite ``args.suite`` names and where its environments come from: a YAML file, on ``--env``; or the
    built-in MiniWoB++ suite (``miniwob``, ``miniwob:all``, ``miniwob:TASK,TASK``), in Chromium on sandboxes
    whose screen is the task page's (so ``--app`` and ``--screen-size`` are refused)."""
    from screenpilot.tasks.miniwob.suite import is_miniwob_spec
    from screenpilot.tasks.suite import load_suite

    if not is_miniwob_spec(args.suite):
        return load_suite(args.suite), CliEnvSource(settings)
    if settings.env != "sandbox":
        raise SetupError("the MiniWoB++ suite runs on --env sandbox (Chromium on a virtual display)")
    if settings.app is not None or settings.screen_size is not None:
        raise SetupError(
            "the MiniWoB++ suite sets its own app and screen (the task page, 480x630 at zoom 3): "
            "leave out --app and --screen-size"
        )
    if args.executor == "ray":
        raise SetupError("the MiniWoB++ suite runs on this machine's sandboxes: leave out --executor ray")
    from screenpilot.tasks.miniwob import MiniwobEnvSource, load_miniwob_suite

    return load_miniwob_suite(args.suite), MiniwobEnvSource()


def _check_env(settings: Settings, jobs_given: int | None, suite: Any, *, ray: bool = False) -> int:
    """Tasks must be for ``--env`` (the fake environment accepts all); returns the number of workers. On Ray,
    Android workers find their phones on their nodes, so ``--serial`` may be left out."""
    env = settings.env
    if env != "fake":
        wrong = [t.id for t in suite.tasks if t.env != env]
        if wrong:
            raise SetupError(
                f"tasks {', '.join(wrong)} are for another environment than --env {env}; "
                "run them separately (--task ID) or with their own --env"
            )
    serials = settings.serial
    jobs = jobs_given or max(1, len(serials))
    if env == "android" and jobs > 1 and len(serials) < jobs and not (ray and not serials):
        raise SetupError(f"--jobs {jobs} on Android needs {jobs} devices: give --serial once per device")
    if env == "desktop" and jobs > 1:
        raise SetupError("the desktop has one screen: use --jobs 1, or --env sandbox for parallel displays")
    return int(jobs)


def build_model_source(settings: Settings) -> Any:
    """Replay models are stateful, so each episode gets its own; a server is shared as is; a local model is
    shared behind a lock (one GPU)."""
    from screenpilot.cli import wiring
    from screenpilot.model.spec import parse_model_spec
    from screenpilot.tasks.runner import ModelPerEpisode, SharedModel

    kind = parse_model_spec(settings.model).kind
    if kind == "replay":
        wiring.check_dialect(settings)
        return ModelPerEpisode(lambda: wiring.build_model(settings))
    model = wiring.build_model(settings)
    return SharedModel(model, serialize=kind == "local")


def cmd_bench(args: argparse.Namespace) -> int:
    from screenpilot.cli.options import settings_from_args
    from screenpilot.tasks.manifest import FolderLock
    from screenpilot.tasks.runner import prepare_out

    options = settings_from_args(args)
    suite, envs = bench_suite(args, options)
    suite = suite.select(args.task)
    jobs = _check_env(options, args.jobs, suite, ray=args.executor == "ray")
    _warn_answer_not_offered(suite, options)
    with FolderLock(prepare_out(args.out)):  # refuse a bad or busy --out before the model loads
        pass
    outcome = _run_bench(args, options, suite, envs, jobs)
    report = None
    if not args.no_report:
        from screenpilot.tasks.report import write_report

        report = write_report(args.out)
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone; the files are written
        _print_bench_end(args.out, outcome, report)
    return outcome.exit_status


def _warn_answer_not_offered(suite: Suite, options: Settings) -> None:
    """Tasks checked on the agent's answer cannot pass on a phone whose model is not offered the action."""
    from screenpilot.tasks.suite import AnswerCheck, walk_checks

    asking = [t.id for t in suite.tasks if any(isinstance(c, AnswerCheck) for c in walk_checks(t.success))]
    if asking and not options.answer_action and options.env in ("android", "fake"):
        print(
            f"screenpilot: warning: {', '.join(asking)} check the agent's answer, but the model is not offered "
            "the answer action; add --answer-action",
            file=sys.stderr,
        )


def _run_bench(
    args: argparse.Namespace, options: Settings, suite: Suite, envs: Any, jobs: int
) -> BenchOutcome:
    """Load the model (or connect the executor), run the suite, close both whatever happens; the outcome."""
    from screenpilot.cli import wiring
    from screenpilot.cli.ray_bench import bench_sources
    from screenpilot.tasks.runner import run_suite

    executor, models = bench_sources(args, options, jobs)
    try:
        settings = _bench_settings(args, options, jobs, models)
        return run_suite(
            suite,
            args.out,
            envs,
            models,
            settings,
            settle=wiring.make_settle(options),
            executor=executor,
        )
    finally:
        models.close()
        if executor is not None:
            executor.close()


def _bench_settings(args: argparse.Namespace, options: Settings, jobs: int, models: Any) -> BenchSettings:
    """The runner's settings from the command line; the dialect is the shared model's own where it has one."""
    from screenpilot.agent.loop import Limits
    from screenpilot.cli.ray_bench import bench_dialect
    from screenpilot.tasks.runner import BenchSettings, SharedModel

    shared = models.model if isinstance(models, SharedModel) else None
    return BenchSettings(
        trials=args.trials,
        jobs=jobs,
        limits=Limits(
            max_steps=options.max_steps,
            max_seconds=options.max_seconds,
            max_failed_steps=options.max_failed_steps,
        ),
        max_retries=options.max_retries,
        dialect=bench_dialect(options, shared),
        dialect_options=options.dialect_options(),
        seed=args.seed,
        force=args.force,
        progress=not args.no_progress and sys.stderr.isatty(),
        rerun_errors=args.rerun_errors,
    )


def _print_bench_end(out: Path, outcome: Any, report: Path | None) -> None:
    """The summary table on stdout; where the results are, and why the run stopped early, on stderr."""
    print(outcome.table, flush=True)
    if report is not None:
        print(f"report: {report}", file=sys.stderr)
    print(f"run folder: {out} ({outcome.ran} episodes run, {outcome.skipped} already done)", file=sys.stderr)
    if outcome.signal is None and outcome.stopped is not None:
        print(
            f"screenpilot: error: the run stopped early: {outcome.stopped}; fix that, then run the same "
            "command with --rerun-errors to resume and rerun those episodes",
            file=sys.stderr,
        )


def cmd_validate(args: argparse.Namespace) -> int:
    from screenpilot.tasks.miniwob.suite import is_miniwob_spec, load_miniwob_suite
    from screenpilot.tasks.suite import load_suite

    suite = load_miniwob_suite(args.suite) if is_miniwob_spec(args.suite) else load_suite(args.suite)
    print(f"{suite.name}: {len(suite.tasks)} tasks (sha256 {suite.sha256[:12]})")
    for task in suite.tasks:
        print(f"  {task.id:<24} {task.env:<8} {task.goal}")
    return 0


# -- report ---------------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from screenpilot.tasks.report import write_report

    path = write_report(args.folder, output=args.output, thumb=args.thumb)
    print(path)
    return 0


# -- eval -----------------------------------------------------------------------------------------------------


EVAL_EXIT_STATUS = (
    "Exit status: 0 every planned example finished (whatever the accuracy); 1 the run stopped early because the "
    "model failed for the whole run (finished results printed and written, reason printed); 2 usage or setup "
    "error, bad data lines included (nothing ran), or the results could not be written; 130 Ctrl-C, 143 SIGTERM, "
    "129 SIGHUP (finished results printed and written, marked incomplete); 141 the reader of its output went "
    "away (| head; the finished examples kept). With --out, the same command again resumes: examples already in "
    "the .items.jsonl file beside it are not asked again."
)


def _eval_model(args: argparse.Namespace) -> Any:
    from screenpilot.cli import wiring
    from screenpilot.cli.options import settings_from_args

    return wiring.build_model(settings_from_args(args))


def _check_out(path: Path | None) -> None:
    """Refuse an ``--out`` that cannot be written before any model is loaded: a folder, or a place where no file
    can be made (the parent folders are made here, as the results will need them)."""
    if path is None:
        return
    if path.is_dir():
        raise SetupError(f"--out {path} is a folder; give a file name for the results")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise SetupError(f"cannot write the results to {path}: {exc.strerror or exc}") from exc
    if not existed:
        path.unlink(missing_ok=True)


def journal_path(out: Path | None) -> Path | None:
    """The per-example results file beside ``--out`` (``results.json`` → ``results.items.jsonl``); none for an
    ``--out`` that is a device or pipe."""
    if out is None or (out.exists() and not out.is_file()):
        return None
    return out.with_name(f"{out.stem}.items.jsonl")


def _write_json(path: Path | None, data: dict[str, Any]) -> None:
    """Write the results next to their final place, then move them there, so a failed write (disk full) never
    leaves a half file; a failure is one SetupError line."""
    if path is None:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    target, in_place = _destination(path)
    partial = target if in_place else target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text, encoding="utf-8")
        if partial != target:
            partial.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            if partial != target:
                partial.unlink(missing_ok=True)
        raise SetupError(f"cannot write the results to {path}: {exc.strerror or exc}") from exc
    print(f"results: {path}", file=sys.stderr)


def _destination(path: Path) -> tuple[Path, bool]:
    """Where results for ``path`` go, and whether in place. A rename onto a symlink would replace the link
    (as root, /dev/stdout itself), so a link's target is written and the link stays; a device or a pipe
    (/dev/null, /dev/stdout on a pipe) is written as it is."""
    target = path.resolve() if path.is_symlink() else path
    if path.exists() and not target.is_file():
        return path, True
    return target, False


def _finish_eval(report: dict[str, Any], table: str, out: Path | None) -> int:
    """Print the table (first, whatever happens next), write the results, and say how the run ended."""
    try:
        print(table, flush=True)
    except BrokenPipeError:  # nobody reads the table (`| head`): the results are still written
        _write_json(out, report)
        raise
    _write_json(out, report)
    if report["interrupted_by"]:
        print(f"screenpilot: interrupted ({report['interrupted_by']})", file=sys.stderr)
        return 128 + int(signal.Signals[report["interrupted_by"]])
    if report["stopped"]:
        print(f"screenpilot: error: the evaluation stopped early: {report['stopped']}", file=sys.stderr)
        return 1
    return 0


def cmd_eval_grounding(args: argparse.Namespace) -> int:
    from screenpilot.tasks.evaluate import evaluate_grounding, format_grounding

    return _run_eval(
        args,
        evaluate_grounding,
        format_grounding,
        tool=args.tool,
        box_format=args.bbox_format,
        images=args.images,
    )


def cmd_eval_steps(args: argparse.Namespace) -> int:
    from screenpilot.tasks.evaluate import evaluate_steps, format_steps

    return _run_eval(
        args, evaluate_steps, format_steps, level=args.level, split=args.split, splits=args.splits
    )


def _run_eval(
    args: argparse.Namespace,
    evaluate: Callable[..., dict[str, Any]],
    formatter: Callable[[dict[str, Any]], str],
    **options: Any,
) -> int:
    """Run one offline evaluation with the options every kind takes, then print and write its report."""
    from screenpilot.cli import wiring
    from screenpilot.cli.options import settings_from_args
    from screenpilot.cli.run_command import stop_on_signals

    _check_out(args.out)
    settings = settings_from_args(args)
    model = _eval_model(args)
    try:
        with stop_on_signals():
            report = evaluate(
                args.data,
                model,
                dialect=wiring.dialect_name(settings, model),
                dialect_options=settings.dialect_options(),
                limit=args.limit,
                progress=not args.no_progress,
                format=args.format,
                concurrency=args.concurrency,
                journal=journal_path(args.out),
                **options,
            )
    finally:
        model.close()
    return _finish_eval(report, formatter(report), args.out)
