"""A summary.json edited by hand (or cut short) never crashes the report: its table is rebuilt from the results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.tasks.report import render_report
from tests.tasks.test_report import bench_dir  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["overall"].update(success_rate="high"),
        lambda s: s["tasks"][0].update(mean_steps=None),
        lambda s: s["tasks"][0].pop("successes"),
        lambda s: s["overall"].update(tasks={"a": 1}, success_rate=[1]),
    ],
)
def test_a_summary_with_wrong_fields_is_replaced_by_one_from_the_results(bench_dir: Path, edit) -> None:  # noqa: F811
    original = render_report(bench_dir)
    summary = json.loads((bench_dir / "summary.json").read_text())
    edit(summary)
    (bench_dir / "summary.json").write_text(json.dumps(summary))
    html = render_report(bench_dir)
    assert "summary.json: not in the expected form; the tables are computed from results.jsonl" in html
    row = r"<tr[^>]*><td>(?:<a [^>]*>)?(\w+)(?:</a>)?</td><td>[\d/]+</td><td>(\d+/\d+)</td>"
    rows = re.findall(row, html)
    assert rows == re.findall(row, original)
    assert ("swipe", "1/1") in rows and ("hostile", "0/1") in rows


def test_the_report_command_says_nothing_worse_than_the_note(bench_dir: Path, capsys) -> None:  # noqa: F811
    summary = json.loads((bench_dir / "summary.json").read_text())
    summary["overall"]["success_rate"] = "high"
    (bench_dir / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(bench_dir)]) == 0
    assert "Traceback" not in capsys.readouterr().err
