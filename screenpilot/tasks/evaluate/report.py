"""Numbers and tables shared by the evaluation reports, and the published numbers they are compared with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def mean_model_s(items: list[dict[str, Any]]) -> float | None:
    return sum(i["model_s"] for i in items) / len(items) if items else None


#: Qwen2.5-VL's published results (Qwen2.5-VL Technical Report, arXiv:2502.13923, GUI agent table), in percent,
#: for 3B / 7B / 72B: ScreenSpot and ScreenSpot-Pro accuracy, AndroidControl step success rate.
PUBLISHED: dict[str, tuple[str, tuple[float, float, float]]] = {
    "screenspot": ("ScreenSpot", (55.5, 84.7, 87.1)),
    "screenspot-pro": ("ScreenSpot-Pro", (23.9, 29.0, 43.6)),
    "androidcontrol-high": ("AndroidControl-High", (63.7, 60.1, 67.36)),
    "androidcontrol-low": ("AndroidControl-Low", (90.8, 91.4, 93.7)),
}


def published_line(benchmark: str | None) -> str | None:
    """The published Qwen2.5-VL numbers for a benchmark, as one line (None when there are none)."""
    if benchmark == "screenspot-v2":
        name, (a, b, c) = PUBLISHED["screenspot"]
        return f"Qwen2.5-VL published: none for ScreenSpot-v2 (ScreenSpot: 3B {a}%, 7B {b}%, 72B {c}%)"
    if benchmark not in PUBLISHED:
        return None
    name, (a, b, c) = PUBLISHED[benchmark]
    return f"Qwen2.5-VL published ({name}): 3B {a}%, 7B {b}%, 72B {c}%"


def status_counts(items: list[dict[str, Any]], *statuses: str) -> dict[str, int]:
    """``unparsable``, ``no_point``, ``model_errors``, ``image_errors``: how many items ended so."""
    return {
        (s if s in ("unparsable", "no_point") else f"{s}s"): sum(1 for i in items if i["status"] == s)
        for s in statuses
    }


def render_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def footer(report: Mapping[str, Any], first: str) -> str:
    """The line under a table: answer problems, model time, errors and, for a run that ended early, why."""
    mean = report["mean_model_s"]
    extra = first + (f", mean model time {mean:.2f} s" if mean is not None else "")
    if report["model_errors"]:
        extra += f", model errors: {report['model_errors']}"
    if report.get("image_errors"):
        extra += f", images that could not be loaded: {report['image_errors']}"
    if not report.get("complete", True):
        why = report["stopped"] or f"interrupted ({report['interrupted_by']})"
        extra += f"\nincomplete: {report['finished']} of {report['planned']} examples finished; {why}"
    return extra


def published_suffix(report: Mapping[str, Any]) -> str:
    line = report.get("published")
    return f"\n{line}" if line else ""
