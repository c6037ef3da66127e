"""The bench/validate commands' edges, and the summary's numbers (pass@k, spread)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.tasks.runner import read_results
from screenpilot.tasks.summary import format_table, pass_at_k, summarize


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 2, 4) == 1.0  # fewer failures than draws
    assert pass_at_k(3, 0, 3) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_summary_rates_spread_and_table() -> None:
    lines = [
        {"task": "a", "trial": 1, "success": True, "steps": 4, "duration_s": 2.0, "agent_status": "success"},
        {"task": "a", "trial": 2, "success": False, "steps": 6, "duration_s": 3.0, "agent_status": "success"},
        {"task": "b", "trial": 1, "success": True, "steps": 2, "duration_s": 1.0, "agent_status": "success"},
        {"task": "b", "trial": 2, "success": True, "steps": 2, "duration_s": 1.0, "agent_status": "failure"},
        {"task": "c", "trial": 1, "success": False, "steps": 0, "duration_s": 0.1, "error": "setup: x"},
        {"task": "c", "trial": 2, "success": False, "steps": 0, "duration_s": 0.1, "error": "setup: x"},
    ]
    summary = summarize(lines, ["b", "a", "c"])
    assert [t["task"] for t in summary["tasks"]] == ["b", "a", "c"]
    a = summary["tasks"][1]
    assert (a["success_rate"], a["pass_at_k"], a["mean_steps"]) == (0.5, {"1": 0.5, "2": 1.0}, 5.0)
    assert a["mean_step_s"] == 0.0  # no step timings in these lines
    overall = summary["overall"]
    assert overall["success_rate"] == pytest.approx(0.5)
    assert overall["pass_at_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(2 / 3)}
    assert overall["trial_success_rates"] == {"1": pytest.approx(2 / 3), "2": pytest.approx(1 / 3)}
    assert overall["trial_spread"]["min"] == pytest.approx(1 / 3)
    assert overall["errors"] == 2
    table = format_table(summary)
    assert "pass@2" in table and "overall" in table
    assert "success rate across trials: min 33.3%, max 66.7%" in table


def test_bench_refuses_mismatched_env_and_bad_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - {id: t, goal: g, env: sandbox, success: {answer: {exact: x}}}\n")
    args = ["bench", str(suite), "--model", "replay:/nonexistent", "--out", str(tmp_path / "o")]
    assert main([*args, "--env", "android"]) == 2
    assert "tasks t are for another environment than --env android" in capsys.readouterr().err
    suite.write_text("tasks:\n  - {id: t, goal: g, env: android, success: {answer: {exact: x}}}\n")
    assert main([*args, "--env", "android", "--jobs", "2", "--serial", "a"]) == 2
    assert "--jobs 2 on Android needs 2 devices" in capsys.readouterr().err
    suite.write_text("tasks:\n  - {id: t, goal: g, env: desktop, success: {answer: {exact: x}}}\n")
    assert main([*args, "--env", "desktop", "--jobs", "2"]) == 2
    assert "the desktop has one screen" in capsys.readouterr().err


def test_validate_reports_lines_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - id: t\n    goal: g\n    env: android\n    success: {answer: {regx: x}}\n")
    assert main(["validate", str(suite)]) == 2
    assert f"{suite}:5: tasks[0] (id 't').success.answer.regx: unknown key 'regx'" in capsys.readouterr().err
    suite.write_text("tasks:\n  - {id: t, goal: g, env: android, success: {answer: {exact: x}}}\n")
    assert main(["validate", str(suite)]) == 0
    assert "1 tasks" in capsys.readouterr().out


def test_bench_on_the_fake_env_writes_everything_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "tasks:\n"
        "  - {id: ask, goal: 'What is 6*7?', env: android, success: {answer: {normalized: '42'}}}\n"
        "  - {id: quit, goal: 'Give up', env: android, success: {answer: {normalized: '42'}}}\n"
    )
    replay = tmp_path / "r.jsonl"
    answer = (
        '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "answer", "text": "42"}}\n</tool_call>'
    )
    stop = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "failure"}}\n</tool_call>'
    replay.write_text(
        json.dumps({"task": "ask", "output": answer})
        + "\n"
        + json.dumps({"task": "quit", "output": stop})
        + "\n"
    )
    out = tmp_path / "out"
    args = [
        "bench",
        str(suite),
        "--env",
        "fake",
        "--screen-size",
        "360x640",
        "--model",
        f"replay:{replay}",
        "--no-progress",
    ]
    # Without --answer-action the model is not offered the answer action: a warning, and no answer counts.
    unoffered = tmp_path / "unoffered"
    assert main([*args, "--out", str(unoffered)]) == 0
    assert "ask, quit check the agent's answer, but the model is not offered" in capsys.readouterr().err
    assert all(not r["success"] for r in read_results(unoffered))

    args += ["--answer-action", "--out", str(out)]
    assert main([*args, "--trials", "3"]) == 0
    assert "not offered" not in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["episodes"] == 6
    assert {t["task"]: t["success_rate"] for t in summary["tasks"]} == {"ask": 1.0, "quit": 0.0}
    assert (out / "report.html").read_text().count("trial 3") == 2
    # Same command again: nothing left to run. Changing the model settings is refused.
    assert main([*args, "--trials", "3"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 6
    assert main([*args, "--trials", "3", "--max-pixels", "1003520"]) == 2


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path: Path) -> None:
    """A real SIGINT to a running ``screenpilot bench``: exit 130, finished lines kept, resume completes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    suite = tmp_path / "s.yaml"
    tasks = "".join(
        f"  - {{id: t{i}, goal: g, env: android, setup: [{{sleep: 0.3}}], success: {{answer: {{exact: ok}}}}}}\n"
        for i in range(6)
    )
    suite.write_text("tasks:\n" + tasks)
    answer = (
        '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "answer", "text": "ok"}}\n</tool_call>'
    )
    replay = tmp_path / "r.jsonl"
    replay.write_text(json.dumps({"output": answer}) + "\n")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "screenpilot",
        "bench",
        str(suite),
        "--env",
        "fake",
        "--model",
        f"replay:{replay}",
    ]
    cmd += ["--out", str(out), "--no-report", "--screen-size", "360x640", "--answer-action"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 30
    while not (results.exists() and results.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr[-2000:]
    assert "stopping after the current step" in stderr
    done = [json.loads(line) for line in results.read_text().splitlines()]
    assert 1 <= len(done) < 6 and all(r["success"] for r in done)
    assert "overall" in stdout  # the summary of what finished

    finished = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert sorted(json.loads(line)["task"] for line in results.read_text().splitlines()) == [
        f"t{i}" for i in range(6)
    ]
    assert f"{6 - len(done)} episodes run, {len(done)} already done" in finished.stderr


def test_bench_sandbox_takes_the_parsed_screen_size() -> None:
    from screenpilot.actions.coords import Size
    from screenpilot.cli.main import build_parser
    from screenpilot.cli.options import settings_from_args
    from screenpilot.cli.suite_commands import build_task_env
    from screenpilot.tasks.suite import Task

    args = build_parser().parse_args(
        [
            "bench",
            "s.yaml",
            "--env",
            "sandbox",
            "--screen-size",
            "640x480",
            "--model",
            "replay:x",
            "--out",
            "o",
        ]
    )
    task = Task(id="t", goal="g", env="sandbox", success={"answer": {"exact": "x"}})
    env = build_task_env(settings_from_args(args), task, 0)
    try:
        assert env.size == Size(640, 480)  # type: ignore[attr-defined]
    finally:
        env.close()
    del args.screen_size
    env = build_task_env(settings_from_args(args), task, 0)
    try:
        assert env.size == Size(1280, 800)  # type: ignore[attr-defined]
    finally:
        env.close()


def _bench_args(tmp_path: Path, suite_text: str, replay_lines: list[dict[str, str]]) -> list[str]:
    suite = tmp_path / "s.yaml"
    suite.write_text(suite_text)
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps(line) + "\n" for line in replay_lines))
    args = ["bench", str(suite), "--env", "fake", "--screen-size", "360x640", "--answer-action"]
    return [*args, "--model", f"replay:{replay}", "--out", str(tmp_path / "out"), "--no-progress"]


def _call(**arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


def test_line_separators_in_an_answer_keep_the_bench_folder_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = "first\u2028second\u2029third\x85end"
    args = _bench_args(
        tmp_path,
        "tasks:\n  - {id: ask, goal: g, env: android, success: {answer: {regex: '^first'}}}\n",
        [{"output": _call(action="answer", text=answer)}],
    )
    out = tmp_path / "out"
    assert main(args) == 0
    raw = (out / "results.jsonl").read_text(encoding="utf-8")
    assert "\u2028" in raw  # written as is, not escaped
    (line,) = read_results(out)
    assert (line["answer"], line["success"]) == (answer, True)
    assert json.loads((out / "summary.json").read_text())["overall"]["successes"] == 1
    assert main(["report", str(out)]) == 0
    assert "second" in (out / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(args) == 0  # resume: nothing left to run
    assert "0 episodes run, 1 already done" in capsys.readouterr().err


def test_report_never_rewrites_results_with_a_torn_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _bench_args(
        tmp_path,
        "tasks:\n"
        "  - {id: a, goal: g, env: android, success: {answer: {exact: x}}}\n"
        "  - {id: b, goal: g, env: android, success: {answer: {exact: x}}}\n",
        [{"output": _call(action="answer", text="x")}],
    )
    out = tmp_path / "out"
    assert main([*args, "--task", "a"]) == 0
    results = out / "results.jsonl"
    torn = results.read_bytes() + b'{"task": "b", "trial": 1, "succ'
    results.write_bytes(torn)
    assert [r["task"] for r in read_results(out)] == ["a"]
    assert main(["report", str(out)]) == 0
    assert results.read_bytes() == torn  # a reader leaves the file alone
    assert "a / trial 1" in (out / "report.html").read_text(encoding="utf-8")
    capsys.readouterr()
    # The runner, about to append, cuts the torn line and runs the episode.
    assert main([*args, "--force"]) == 0
    assert "1 episodes run, 1 already done" in capsys.readouterr().err
    text = results.read_text()
    assert text.endswith("\n") and "succ\n" not in text and "succ{" not in text
    assert sorted(r["task"] for r in read_results(out)) == ["a", "b"]


def test_rerun_errors_reruns_only_infrastructure_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = (
        "tasks:\n"
        "  - {id: ok, goal: g, env: android, success: {answer: {exact: x}}}\n"
        "  - {id: flaky, goal: g, env: android, success: {answer: {exact: x}}}\n"
        "  - {id: nocheck, goal: g, env: android, success: {shell: 'true'}}\n"
    )
    answer = _call(action="answer", text="x")
    # No answer for `flaky`: its episode ends on a model error, an infrastructure failure.
    args = _bench_args(
        tmp_path, suite, [{"task": "ok", "output": answer}, {"task": "nocheck", "output": answer}]
    )
    out = tmp_path / "out"
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = {r["task"]: r for r in read_results(out)}
    assert lines["flaky"]["error"].startswith("model_error: ")
    assert (lines["flaky"]["infra_error"], lines["flaky"]["success"]) == (True, False)
    # A check that cannot run (the fake environment has no shell) is the task's error, not the run's.
    assert lines["nocheck"]["error"].startswith("check: ")
    assert lines["nocheck"]["infra_error"] is False
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["overall"]["errors"], summary["overall"]["infra_errors"]) == (2, 1)
    assert "1 episode ended on infrastructure errors" in captured.out
    assert "<th>infrastructure errors</th>" in (out / "report.html").read_text()

    # The model is fixed. A plain resume keeps the failure; --rerun-errors runs that episode again.
    (tmp_path / "r.jsonl").write_text(json.dumps({"output": answer}) + "\n")
    assert main(args) == 0
    assert "0 episodes run, 3 already done" in capsys.readouterr().err
    assert main([*args, "--rerun-errors"]) == 0
    captured = capsys.readouterr()
    assert "1 episodes run, 2 already done" in captured.err
    lines = {r["task"]: r for r in read_results(out)}
    assert (lines["flaky"]["success"], lines["flaky"]["error"]) == (True, None)
    assert lines["nocheck"]["error"].startswith("check: ")  # not rerun
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["overall"]["successes"], summary["overall"]["infra_errors"]) == (2, 0)
    assert "infrastructure errors" not in captured.out


def test_summary_counts_infrastructure_and_teardown_errors() -> None:
    lines = [
        {"task": "a", "trial": 1, "success": False, "steps": 0, "error": "setup: x", "infra_error": True},
        {"task": "a", "trial": 2, "success": False, "steps": 1, "error": "check: y", "infra_error": False},
        {
            "task": "a",
            "trial": 3,
            "success": True,
            "steps": 1,
            "error": None,
            "teardown_error": "teardown: z",
        },
        # A line written before infra_error existed: any error but a check's is the run's.
        {"task": "b", "trial": 1, "success": False, "steps": 3, "error": "device_error: gone"},
        {"task": "b", "trial": 2, "success": False, "steps": 3, "error": "check: boom"},
    ]
    summary = summarize(lines, ["a", "b"])
    a, b = summary["tasks"]
    assert (a["errors"], a["infra_errors"], a["teardown_errors"]) == (2, 1, 1)
    assert (b["errors"], b["infra_errors"], b["teardown_errors"]) == (2, 1, 0)
    overall = summary["overall"]
    assert (overall["errors"], overall["infra_errors"], overall["teardown_errors"]) == (4, 2, 1)
    table = format_table(summary)
    header, _, row_a, row_b, _, row_all = table.splitlines()[:6]
    assert header.split()[-8:-5] == ["errors", "infra", "teardown-fail"]
    assert row_a.split()[-8:-5] == ["2", "1", "1"]
    assert row_b.split()[-8:-5] == ["2", "1", "0"]
    assert row_all.split()[-8:-5] == ["4", "2", "1"]
    assert "2 episodes ended on infrastructure errors" in table


def test_seconds_per_step_come_from_the_step_timings_and_overheads_are_apart() -> None:
    steps = {"observe_s": 0.05, "model_s": 0.35, "parse_s": 0.01, "execute_s": 0.03, "settle_s": 0.01}
    lines = [
        # Two steps of 0.45 s each, inside a 4.4 s episode (setup 3 s, check 0.2 s, teardown 0.3 s).
        {
            "task": "a",
            "trial": 1,
            "success": True,
            "steps": 2,
            "duration_s": 4.4,
            "phases": {
                **{k: 2 * v for k, v in steps.items()},
                "setup_s": 3.0,
                "check_s": 0.2,
                "teardown_s": 0.3,
            },
        },
        # A setup failure: no steps, 5 s of setup; it must not raise anyone's seconds per step.
        {
            "task": "b",
            "trial": 1,
            "success": False,
            "steps": 0,
            "duration_s": 5.0,
            "error": "setup: x",
            "phases": {"setup_s": 5.0},
        },
    ]
    summary = summarize(lines, ["a", "b"], {"a": ["settings", "easy"], "b": ["settings"]})
    a, b = summary["tasks"]
    assert a["mean_step_s"] == pytest.approx(0.45)
    assert a["overheads_s"] == pytest.approx({"setup_s": 3.0, "check_s": 0.2, "teardown_s": 0.3})
    assert b["mean_step_s"] is None
    overall = summary["overall"]
    assert overall["mean_step_s"] == pytest.approx(0.45)
    assert overall["overheads_s"]["setup_s"] == pytest.approx(4.0)
    assert overall["overheads_s"]["check_s"] == pytest.approx(0.2)  # only the episode that had a check

    easy, settings_tag = summary["tags"]
    assert (easy["tag"], easy["tasks"], easy["episodes"], easy["success_rate"]) == ("easy", 1, 1, 1.0)
    assert (settings_tag["tag"], settings_tag["tasks"], settings_tag["success_rate"]) == ("settings", 2, 0.5)

    table = format_table(summary)
    header, _, row_a, row_b, _, row_all, blank, tag_header, _, row_easy, row_settings = table.splitlines()[
        :11
    ]
    assert header.split()[-4:] == ["s/step", "setup-s", "check-s", "teardown-s"]
    assert row_a.split()[-4:] == ["0.45", "3.00", "0.20", "0.30"]
    assert row_b.split()[-4:] == ["-", "5.00", "-", "-"]
    assert row_all.split()[-4:] == ["0.45", "4.00", "0.20", "0.30"]
    assert (blank, tag_header.split()[0]) == ("", "tag")
    assert row_easy.split()[:4] == ["easy", "1", "1/1", "100.0%"]
    assert row_settings.split()[:4] == ["settings", "2", "1/2", "50.0%"]
    assert "s/step: seconds per agent step" in table


def test_bench_writes_the_tag_table_and_the_planned_episodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _bench_args(
        tmp_path,
        "tasks:\n"
        "  - {id: a, goal: g, env: android, tags: [math], success: {answer: {exact: x}}}\n"
        "  - {id: b, goal: g, env: android, tags: [math, hard], success: {answer: {exact: y}}}\n",
        [{"output": _call(action="answer", text="x")}],
    )
    assert main([*args, "--trials", "2"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(t["tag"], t["episodes"], t["successes"]) for t in summary["tags"]] == [
        ("hard", 2, 0),
        ("math", 4, 2),
    ]
    assert (summary["planned"], summary["finished"], summary["complete"]) == (4, 4, True)
    assert summary["interrupted"] == [] and summary["stopped"] is None
    assert "INCOMPLETE" not in out
    assert any(line.split()[:2] == ["overall", "4/4"] for line in out.splitlines())
    assert any(line.split()[:2] == ["math", "4"] for line in out.splitlines())


def test_success_rate_intervals_cover_every_finished_episode() -> None:
    from screenpilot.tasks.summary import mean_rate_interval, wilson_interval

    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))  # published Wilson values
    assert wilson_interval(5, 10) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    assert wilson_interval(3, 3)[1] == 1.0 and wilson_interval(3, 3)[0] == pytest.approx(0.4385, abs=1e-4)
    lo, hi = mean_rate_interval([(3, 3), (0, 3)])  # 100 % and 0 %: still uncertain, centred on their mean
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    # A crashed episode (an infrastructure error) is a finished failure: in the interval as in the rate, 2 of 3.
    lines = [{"task": "a", "trial": k, "success": k != 3, "steps": 1} for k in (1, 2, 3)]
    lines[2].update(error="crashed: the Ray worker was lost", infra_error=True)
    summary = summarize(lines, ["a"])
    (task,) = summary["tasks"]
    assert task["success_ci95"] == list(wilson_interval(2, 3))
    assert summary["overall"]["success_ci95"] == list(mean_rate_interval([(2, 3)]))
    assert "95 % interval of the overall success rate: " in format_table(summary)
