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


def summarize(results: Iterable[Mapping[str, Any]], task_order: Sequence[str] = ()) -> dict[str, Any]:
    """Summary of result lines (``task``, ``trial``, ``success``, ``steps``, ``duration_s``, ``error``,
    ``infra_error``, ``teardown_error``, ``phases``).

    ``errors`` counts episodes with an error, ``infra_errors`` those of them that ended on an infrastructure
    error (:func:`is_infra_error`; they count as failures, and ``bench --rerun-errors`` runs them again), and
    ``teardown_errors`` episodes whose teardown failed (recorded apart: the check alone decides success).

    Task rates are averaged over tasks (each task counts once whatever its trial count). pass@k is given for
    k up to the smallest trial count among tasks so every task contributes to every k.
    """
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for line in results:
        by_task.setdefault(str(line["task"]), []).append(line)
    order = [t for t in task_order if t in by_task] + sorted(t for t in by_task if t not in task_order)

    tasks: list[dict[str, Any]] = []
    for task in order:
        lines = sorted(by_task[task], key=lambda r: int(r["trial"]))
        n = len(lines)
        c = sum(1 for r in lines if r["success"])
        steps = [int(r["steps"]) for r in lines]
        total_steps = sum(steps)
        duration = sum(float(r.get("duration_s") or 0.0) for r in lines)
        tasks.append(
            {
                "task": task,
                "trials": n,
                "successes": c,
                "success_rate": c / n,
                "pass_at_k": {str(k): pass_at_k(n, c, k) for k in range(1, n + 1)},
                "errors": sum(1 for r in lines if r.get("error")),
                "infra_errors": sum(1 for r in lines if is_infra_error(r)),
                "teardown_errors": sum(1 for r in lines if r.get("teardown_error")),
                "agent_success": sum(1 for r in lines if r.get("agent_status") == "success"),
                "mean_steps": total_steps / n,
                "mean_step_s": duration / total_steps if total_steps else None,
            }
        )

    overall: dict[str, Any] = {"tasks": len(tasks), "episodes": sum(t["trials"] for t in tasks)}
    if tasks:
        k_max = min(t["trials"] for t in tasks)
        all_lines = [r for t in order for r in by_task[t]]
        total_steps = sum(int(r["steps"]) for r in all_lines)
        total_time = sum(float(r.get("duration_s") or 0.0) for r in all_lines)
        overall.update(
            {
                "success_rate": statistics.fmean(t["success_rate"] for t in tasks),
                "pass_at_k": {
                    str(k): statistics.fmean(t["pass_at_k"][str(k)] for t in tasks)
                    for k in range(1, k_max + 1)
                },
                "errors": sum(t["errors"] for t in tasks),
                "infra_errors": sum(t["infra_errors"] for t in tasks),
                "teardown_errors": sum(t["teardown_errors"] for t in tasks),
                "agent_success": sum(t["agent_success"] for t in tasks),
                "successes": sum(t["successes"] for t in tasks),
                "mean_steps": total_steps / len(all_lines),
                "mean_step_s": total_time / total_steps if total_steps else None,
                "phases_s": _phase_totals(all_lines),
            }
        )
        # Spread across trials: the success rate of trial 1, trial 2, ... over the tasks that ran it.
        per_trial: dict[int, list[bool]] = {}
        for r in all_lines:
            per_trial.setdefault(int(r["trial"]), []).append(bool(r["success"]))
        rates = {k: sum(v) / len(v) for k, v in sorted(per_trial.items())}
        overall["trial_success_rates"] = {str(k): v for k, v in rates.items()}
        if len(rates) > 1:
            values = list(rates.values())
            overall["trial_spread"] = {
                "min": min(values),
                "max": max(values),
                "stdev": statistics.stdev(values),
            }
    return {"overall": overall, "tasks": tasks}


def _phase_totals(lines: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for r in lines:
        for name, value in (r.get("phases") or {}).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(summary: Mapping[str, Any]) -> str:
    """A plain-text table for the terminal."""
    tasks = summary["tasks"]
    overall = summary["overall"]
    k_max = max((t["trials"] for t in tasks), default=1)
    header = ["task", "trials", "success", "rate"]
    if k_max > 1:
        header.append(f"pass@{k_max}")
    header += ["agent ok", "errors", "infra", "teardown", "steps", "s/step"]
    rows = []
    for t in tasks:
        rows.append(_row(t["task"], t["trials"], t, k_max))
    if tasks:
        rows.append(_row("overall", overall["episodes"], overall, k_max))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows[:-1]]
    if tasks:
        lines.append("  ".join("-" * w for w in widths))
        lines.append(fmt(rows[-1]))
    infra = overall.get("infra_errors") or 0
    if infra:
        lines.append(
            f"{infra} episode{'s' if infra != 1 else ''} ended on infrastructure errors (counted as failures; "
            "bench --rerun-errors runs them again)"
        )
    spread = overall.get("trial_spread")
    if spread:
        lines.append(
            f"success rate across trials: min {_pct(spread['min'])}, max {_pct(spread['max'])}, "
            f"stdev {100 * spread['stdev']:.1f} points"
        )
        ks = ", ".join(f"pass@{k} {_pct(v)}" for k, v in overall["pass_at_k"].items())
        lines.append(ks)
    return "\n".join(lines)


def _row(name: str, count: int, stats: dict[str, Any], k_max: int) -> list[str]:
    """One table row: a task's statistics or the overall ones, which share their fields."""
    row = [name, str(count), f"{stats['successes']}/{count}", _pct(stats["success_rate"])]
    if k_max > 1:
        row.append(_pct(stats["pass_at_k"].get(str(k_max))))
    return [
        *row,
        str(stats["agent_success"]),
        str(stats["errors"]),
        str(stats.get("infra_errors", "-")),
        str(stats.get("teardown_errors", "-")),
        f"{stats['mean_steps']:.1f}",
        "-" if stats["mean_step_s"] is None else f"{stats['mean_step_s']:.2f}",
    ]
