"""Summaries of a benchmark run: success per task and overall, pass@k, spread across trials, step costs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the chance that at least one of k trials drawn from n succeeds."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


#: The normal quantile of a two-sided 95 % interval.
Z95 = 1.959964


def wilson_interval(c: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``c`` successes in ``n`` trials: sound at 0 and n successes and for few
    trials, where the normal approximation gives an interval of width 0."""
    if not 0 <= c <= n or n < 1:
        raise ValueError(f"need 0 <= c <= n and n >= 1, got n={n} c={c}")
    p, z2 = c / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_rate_interval(counts: Sequence[tuple[int, int]], z: float = Z95) -> tuple[float, float]:
    """An interval for the mean of several tasks' success rates (``(successes, trials)`` each; every task
    counts once): what the trials' chance alone leaves open on these tasks, not which tasks were chosen. Normal
    approximation, each task's variance taken at its Agresti-Coull rate ``(c + 2) / (n + 4)``, so a task at 0 or
    100 % still adds its uncertainty."""
    if not counts:
        raise ValueError("no tasks")
    mean = statistics.fmean(c / n for c, n in counts)
    variance = sum(((c + 2) / (n + 4)) * (1 - (c + 2) / (n + 4)) / (n + 4) for c, n in counts)
    half = z * math.sqrt(variance) / len(counts)
    return max(0.0, mean - half), min(1.0, mean + half)


def is_infra_error(line: Mapping[str, Any]) -> bool:
    """Whether the episode ended on an infrastructure error (device or model failure, a crash, a failed setup)
    rather than on the agent's own doing. Lines written before ``infra_error`` existed: any error but a
    check's."""
    flag = line.get("infra_error")
    if flag is not None:
        return bool(flag)
    error = line.get("error")
    return bool(error) and not str(error).startswith("check:")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


#: Phases timed inside the agent's steps (summed over an episode's steps).
STEP_PHASES = ("observe_s", "model_s", "parse_s", "execute_s", "settle_s")
#: Phases timed once per episode, around the agent's steps.
OVERHEAD_PHASES = ("setup_s", "check_s", "teardown_s")


def _phase(line: Mapping[str, Any], name: str) -> float | None:
    value = (line.get("phases") or {}).get(name)
    return None if value is None else float(value)


def _step_seconds(lines: Sequence[Mapping[str, Any]]) -> float | None:
    """Seconds per agent step, from the step timings alone (episodes without steps add nothing)."""
    steps = sum(int(r["steps"]) for r in lines)
    if not steps:
        return None
    return sum(_phase(r, p) or 0.0 for r in lines if int(r["steps"]) for p in STEP_PHASES) / steps


def _overheads(lines: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Mean seconds per episode of each overhead phase, over the episodes that had that phase."""
    out: dict[str, float | None] = {}
    for name in OVERHEAD_PHASES:
        values = [v for v in (_phase(r, name) for r in lines) if v is not None]
        out[name] = _mean(values)
    return out


def _counts(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fields a task, a tag and the overall line share."""
    return {
        "successes": sum(1 for r in lines if r["success"]),
        "errors": sum(1 for r in lines if r.get("error")),
        "infra_errors": sum(1 for r in lines if is_infra_error(r)),
        "teardown_errors": sum(1 for r in lines if r.get("teardown_error")),
        "agent_success": sum(1 for r in lines if r.get("agent_status") == "success"),
        "mean_steps": sum(int(r["steps"]) for r in lines) / len(lines),
        "mean_step_s": _step_seconds(lines),
        "overheads_s": _overheads(lines),
    }


def _task_stats(task: str, lines: list[Mapping[str, Any]]) -> dict[str, Any]:
    n = len(lines)
    counts = _counts(lines)
    c = counts["successes"]
    return {
        "task": task,
        "trials": n,
        **counts,
        "success_rate": c / n,
        "success_ci95": list(wilson_interval(c, n)),
        "pass_at_k": {str(k): pass_at_k(n, c, k) for k in range(1, n + 1)},
    }


def _group_stats(tasks: Sequence[Mapping[str, Any]], lines: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Numbers for a group of tasks (all of them, or those of a tag): rates average the tasks."""
    k_max = min(t["trials"] for t in tasks)
    return {
        "tasks": len(tasks),
        "episodes": len(lines),
        **_counts(lines),
        "success_rate": statistics.fmean(t["success_rate"] for t in tasks),
        "success_ci95": list(mean_rate_interval([(t["successes"], t["trials"]) for t in tasks])),
        "pass_at_k": {
            str(k): statistics.fmean(t["pass_at_k"][str(k)] for t in tasks) for k in range(1, k_max + 1)
        },
    }


def summarize(
    results: Iterable[Mapping[str, Any]],
    task_order: Sequence[str] = (),
    tags: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Summary of result lines (``task``, ``trial``, ``success``, ``steps``, ``duration_s``, ``error``,
    ``infra_error``, ``teardown_error``, ``phases``); ``tags`` maps task ids to their tags.

    ``errors`` counts episodes with an error, ``infra_errors`` those of them that ended on an infrastructure
    error (:func:`is_infra_error`; they count as failures, and ``bench --rerun-errors`` runs them again), and
    ``teardown_errors`` episodes whose teardown failed (recorded apart: the check alone decides success).
    ``mean_step_s`` is seconds per agent step from the step timings alone (observe, model, parse, execute,
    settle); ``overheads_s`` the mean seconds per episode of setup, check and teardown.

    Task rates are averaged over tasks (each task counts once whatever its trial count). pass@k is given for
    k up to the smallest trial count among tasks so every task contributes to every k. ``tags`` lists the
    same numbers per tag, over the tasks that carry it.
    """
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for line in results:
        by_task.setdefault(str(line["task"]), []).append(line)
    order = [t for t in task_order if t in by_task] + sorted(t for t in by_task if t not in task_order)
    tasks = [_task_stats(t, sorted(by_task[t], key=lambda r: int(r["trial"]))) for t in order]

    overall: dict[str, Any] = {"tasks": len(tasks), "episodes": sum(t["trials"] for t in tasks)}
    if not tasks:
        return {"overall": overall, "tasks": tasks, "tags": []}
    all_lines = [r for t in order for r in by_task[t]]
    overall.update(_group_stats(tasks, all_lines))
    overall["phases_s"] = _phase_totals(all_lines)
    overall.update(_trial_spread(all_lines))
    return {"overall": overall, "tasks": tasks, "tags": _tag_stats(tasks, by_task, tags or {})}


def _tag_stats(
    tasks: Sequence[Mapping[str, Any]],
    by_task: Mapping[str, list[Mapping[str, Any]]],
    tags: Mapping[str, Sequence[str]],
) -> list[dict[str, Any]]:
    members: dict[str, list[Mapping[str, Any]]] = {}
    for t in tasks:
        for tag in tags.get(t["task"], ()):
            members.setdefault(tag, []).append(t)
    return [
        {"tag": tag, **_group_stats(group, [r for t in group for r in by_task[t["task"]]])}
        for tag, group in sorted(members.items())
    ]


def _trial_spread(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The success rate of trial 1, trial 2, ... over the tasks that ran it, and its spread."""
    per_trial: dict[int, list[bool]] = {}
    for r in lines:
        per_trial.setdefault(int(r["trial"]), []).append(bool(r["success"]))
    rates = {k: sum(v) / len(v) for k, v in sorted(per_trial.items())}
    out: dict[str, Any] = {"trial_success_rates": {str(k): v for k, v in rates.items()}}
    if len(rates) > 1:
        values = list(rates.values())
        out["trial_spread"] = {"min": min(values), "max": max(values), "stdev": statistics.stdev(values)}
    return out


def completion(
    planned: int, finished: int, interrupted: Sequence[Mapping[str, Any]], stopped: str | None
) -> dict[str, Any]:
    """How much of the planned run finished: ``planned`` and ``finished`` episodes, the ``interrupted`` ones
    (task, trial: stopped while running, rerun on resume), ``not_started``, ``complete``, and why the run
    ``stopped`` early (None when it did not)."""
    return {
        "planned": planned,
        "finished": finished,
        "interrupted": list(interrupted),
        "not_started": max(0, planned - finished - len(interrupted)),
        "complete": finished >= planned,
        "stopped": stopped,
    }


def _phase_totals(lines: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for r in lines:
        for name, value in (r.get("phases") or {}).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def stored_interval(value: Any) -> tuple[float, float] | None:
    """A ``success_ci95`` read back from a ``summary.json``: two rates, low to high, or None when it is not
    one (a file edited by hand)."""
    if not (isinstance(value, list | tuple) and len(value) == 2):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    low, high = float(value[0]), float(value[1])
    return (low, high) if 0 <= low <= high <= 1 else None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


HEADER = ["episodes", "success", "rate"]
TAIL = [
    "agent-ok",
    "errors",
    "infra",
    "teardown-fail",
    "steps/ep",
    "s/step",
    "setup-s",
    "check-s",
    "teardown-s",
]
LEGEND = (
    "episodes: finished/planned; agent-ok: the agent said success; steps/ep: agent steps per episode; "
    "s/step: seconds per agent step (observe, model, parse, execute, settle); setup-s, check-s, teardown-s: "
    "seconds per episode around the steps"
)


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table for the terminal: per task, overall, per tag, then whether the run is complete."""
    tasks = summary["tasks"]
    overall = summary["overall"]
    k_max = max((t["trials"] for t in tasks), default=1)
    trials = summary.get("trials")
    rows = [_row(t["task"], f"{t['trials']}/{trials or t['trials']}", t, k_max) for t in tasks]
    footer = [_row("overall", _planned(overall, summary), overall, k_max)] if tasks else []
    lines = _grid("task", rows, footer, k_max)
    tagged = summary.get("tags") or []
    if tagged:
        lines.append("")
        tag_rows = [_row(g["tag"], str(g["episodes"]), g, k_max) for g in tagged]
        lines += _grid("tag", tag_rows, [], k_max)
    lines += _notes(summary)
    return "\n".join(lines)


def _planned(overall: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    planned = summary.get("planned")
    return f"{overall['episodes']}/{planned}" if planned is not None else str(overall["episodes"])


def _grid(first: str, rows: list[list[str]], footer: list[list[str]], k_max: int) -> list[str]:
    header = [first, *HEADER, *([f"pass@{k_max}"] if k_max > 1 else []), *TAIL]
    every = rows + footer
    widths = [max(len(h), *(len(r[i]) for r in every)) if every else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(header), rule, *(fmt(r) for r in rows)]
    if rows and footer:
        lines += [rule, *(fmt(r) for r in footer)]
    return lines


def _notes(summary: Mapping[str, Any]) -> list[str]:
    overall = summary["overall"]
    lines = [LEGEND] if summary["tasks"] else []
    infra = overall.get("infra_errors") or 0
    if infra:
        lines.append(
            f"{infra} episode{'s' if infra != 1 else ''} ended on infrastructure errors (counted as failures; "
            "bench --rerun-errors runs them again)"
        )
    ci = stored_interval(overall.get("success_ci95"))
    if ci is not None:
        lines.append(
            f"95 % interval of the overall success rate: {_pct(ci[0])} to {_pct(ci[1])} (the trials' chance "
            "on these tasks)"
        )
    spread = overall.get("trial_spread")
    if spread:
        lines.append(
            f"success rate across trials: min {_pct(spread['min'])}, max {_pct(spread['max'])}, "
            f"stdev {100 * spread['stdev']:.1f} points"
        )
        lines.append(", ".join(f"pass@{k} {_pct(v)}" for k, v in overall["pass_at_k"].items()))
    if summary.get("complete") is False:
        lines.append(incomplete_note(summary))
    return lines


def incomplete_note(summary: Mapping[str, Any]) -> str:
    """One line saying how much of an incomplete run finished, and why it stopped."""
    interrupted = len(summary.get("interrupted") or [])
    note = (
        f"INCOMPLETE: {summary['finished']} of {summary['planned']} planned episodes finished, "
        f"{interrupted} interrupted, {summary.get('not_started', 0)} not started"
    )
    if summary.get("stopped"):
        note += f" (stopped: {summary['stopped']})"
    return note + "; the rates cover finished episodes only; run the same command again to resume"


def _row(name: str, count: str, stats: Mapping[str, Any], k_max: int) -> list[str]:
    """One table row: a task's, a tag's or the overall statistics, which share their fields."""
    row = [name, count, f"{stats['successes']}/{stats.get('trials', stats.get('episodes'))}"]
    row.append(_pct(stats["success_rate"]))
    if k_max > 1:
        row.append(_pct(stats["pass_at_k"].get(str(k_max))))
    overheads = stats.get("overheads_s") or {}
    return [
        *row,
        str(stats["agent_success"]),
        str(stats["errors"]),
        str(stats.get("infra_errors", "-")),
        str(stats.get("teardown_errors", "-")),
        f"{stats['mean_steps']:.1f}",
        _secs(stats["mean_step_s"]),
        *(_secs(overheads.get(name)) for name in OVERHEAD_PHASES),
    ]
