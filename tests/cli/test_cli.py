"""The command line as users call it: exit codes, output forms, and one-line errors without tracebacks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from screenpilot.agent.record import load_run
from tests.agent.replies import call


def sp(
    *args: str, stdin: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "screenpilot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_prompt_prints_the_exact_system_text():
    out = sp("prompt", "--tool", "mobile_use", "--screen", "1080x2400")
    assert out.returncode == 0
    assert hashlib.sha256(out.stdout.encode()).hexdigest() == (
        "08758deb1261464319e7c8e0ad8413c64285da66736b560d809f3754271a15e2"
    )
    out = sp("prompt", "--tool", "computer_use", "--screen", "2560x1440")
    assert hashlib.sha256(out.stdout.encode()).hexdigest() == (
        "1ba53409c1dbd11419024a9ee6fbcb564eb3c67c93d2a75c50a3923a82bea15c"
    )


def test_parse_prints_device_pixel_json_lines(tmp_path):
    text = (
        call("swipe", coordinate=[546, 1800], coordinate2=[546, 600])
        + "\n"
        + call("click", coordinate=[935, 406])
    )
    out = sp("parse", "--tool", "mobile_use", "--screen", "1080x2400", stdin=text)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines == [
        {"action": "swipe", "x": 540, "y": 1794, "x2": 540, "y2": 598, "seconds": 0.3},
        {"action": "click", "x": 925, "y": 405, "button": "left", "count": 1},
    ]
    f = tmp_path / "out.txt"
    f.write_text(call("click", coordinate=[935, 406]), encoding="utf-8")
    assert json.loads(sp("parse", "--tool", "mobile_use", "--screen", "1080x2400", str(f)).stdout)["x"] == 925


def test_parse_failure_is_one_line_and_exit_1():
    out = sp("parse", "--tool", "mobile_use", "--screen", "1080x2400", stdin="I cannot see a button")
    assert out.returncode == 1 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "No function call found" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["parse", "--tool", "mobile_use", "--screen", "10x9000"], "aspect ratio"),
        (["parse", "--tool", "mobile_use", "--screen", "1080x2400", "/nonexistent/file"], "cannot read"),
        (["run", "t", "--env", "fake", "--model", "replay:/nonexistent.jsonl"], "does not exist"),
        (["run", "t", "--env", "fake", "--model", "replay:x", "--max-steps", "0"], "at least 1"),
        (["parse", "--tool", "mobile_use", "--screen", "big"], "expected a size"),
        (["run", "t", "--env", "sandbox", "--screen-size", "abc", "--model", "replay:x"], "expected a size"),
        (["run", "t", "--env", "fake", "--model", "replay:x", "--keep-images", "-1"], "must be 0 or more"),
        (["run", "t", "--env", "fake", "--model", "replay:x", "--max-retries", "-1"], "must be 0 or more"),
    ],
)
def test_usage_and_setup_errors_exit_2_without_traceback(args, message):
    out = sp(*args, stdin="")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def _replay(tmp_path: Path, *outputs: str) -> str:
    f = tmp_path / "replay.jsonl"
    f.write_text("\n".join(json.dumps({"output": o}) for o in outputs), encoding="utf-8")
    return f"replay:{f}"


def test_run_success_exit_0_and_run_folder(tmp_path):
    model = _replay(tmp_path, call("click", coordinate=[935, 406]), call("terminate", status="success"))
    out = sp(
        "run", "Tap it", "--env", "fake", "--model", model, "--out", str(tmp_path / "run"), "--no-settle"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("success: terminated after 2 steps")
    assert "step 1: click x=925 y=405" in out.stderr
    run = load_run(tmp_path / "run")
    assert run.meta["goal"] == "Tap it" and run.meta["dialect"]["tool"] == "mobile_use"
    assert run.result is not None and run.result.status == "success"


def test_run_failure_exit_1(tmp_path):
    model = _replay(tmp_path, call("terminate", status="failure"))
    out = sp("run", "x", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"))
    assert out.returncode == 1 and out.stdout.startswith("failure: terminated")


def test_run_confirm_reads_the_terminal(tmp_path):
    model = _replay(tmp_path, call("click", coordinate=[10, 10]), call("terminate", status="success"))
    out = sp(
        "run", "x", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"), "--confirm", stdin="q\n"
    )
    assert out.returncode == 1 and "aborted" in out.stdout and "execute? [y]es" in out.stderr


def test_run_dry_run_records_skipped_actions(tmp_path):
    model = _replay(tmp_path, call("click", coordinate=[10, 10]), call("terminate", status="success"))
    out = sp("run", "x", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"), "--dry-run")
    assert out.returncode == 0
    assert load_run(tmp_path / "r").steps[0].actions[0].verdict == "skip"


def test_desktop_without_a_display_is_a_setup_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    model = _replay(tmp_path, call("terminate", status="success"))
    out = sp("run", "x", "--env", "desktop", "--model", model, "--out", str(tmp_path / "r"), env=env)
    assert out.returncode == 2, out.stderr
    assert (
        "DISPLAY is not set" in out.stderr and "--env sandbox" in out.stderr and "Traceback" not in out.stderr
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["run", "t", "--env", "fake", "--max-steps", "0"],
            "screenpilot run: error: argument --max-steps: must be at least 1, got 0 (see screenpilot run --help)",
        ),
        (
            ["run", "t", "--env", "nowhere"],
            "screenpilot run: error: argument --env: invalid choice: 'nowhere' (choose from 'android', 'desktop', "
            "'sandbox', 'fake') (see screenpilot run --help)",
        ),
        (
            ["run", "t", "--env", "fake", "--dry-run", "--confirm"],
            "screenpilot run: error: argument --confirm: not allowed with argument --dry-run "
            "(see screenpilot run --help)",
        ),
        (
            ["bench", "suite.yaml", "--env", "fake"],
            "screenpilot bench: error: the following arguments are required: --out (see screenpilot bench --help)",
        ),
        (
            ["eval", "grounding"],
            "screenpilot eval grounding: error: the following arguments are required: data "
            "(see screenpilot eval grounding --help)",
        ),
        (
            [],
            "screenpilot: error: the following arguments are required: {prompt,parse,run,bench,validate,report,"
            "eval,mcp,export,replay} (see screenpilot --help)",
        ),
        (
            ["eval"],
            "screenpilot eval: error: the following arguments are required: {grounding,steps} "
            "(see screenpilot eval --help)",
        ),
        (
            ["run", "Open", "Settings", "--env", "fake"],
            "screenpilot run: error: unrecognized arguments: Settings; a task of several words goes in quotes: "
            'screenpilot run "Open Settings" (see screenpilot run --help)',
        ),
        (
            ["eval", "grounding", "data", "--bogus"],
            "screenpilot eval grounding: error: unrecognized arguments: --bogus "
            "(see screenpilot eval grounding --help)",
        ),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help_to_read(args, line):
    out = sp(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == line + "\n"


def test_a_one_step_run_says_step(tmp_path):
    model = _replay(tmp_path, call("terminate", status="success"))
    out = sp("run", "x", "--env", "fake", "--model", model, "--out", str(tmp_path / "r"), "--no-settle")
    assert out.returncode == 0 and out.stdout.startswith("success: terminated after 1 step in "), out.stdout


def test_export_counts_its_actions_in_words(tmp_path):
    model = _replay(tmp_path, call("click", coordinate=[935, 406]), call("terminate", status="success"))
    run = tmp_path / "run"
    assert (
        sp("run", "Tap it", "--env", "fake", "--model", model, "--out", str(run), "--no-settle").returncode
        == 0
    )
    out = sp("export", str(run), "-o", str(tmp_path / "flow.py"))
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith(f"wrote {tmp_path / 'flow.py'} (1 action) and "), out.stderr


def test_parse_refuses_bytes_that_are_not_utf8_in_one_line(tmp_path):
    f = tmp_path / "answer.bin"
    f.write_bytes(b"<tool_call>\xcd\xff</tool_call>")
    for args, stdin, name in ((str(f),), None, str(f)), (("-",), f.read_bytes(), "stdin"):
        cmd = [sys.executable, "-m", "screenpilot", "parse", "--tool", "mobile_use", "--screen", "1080x2400"]
        out = subprocess.run([*cmd, *args], input=stdin, capture_output=True, timeout=60)
        assert out.returncode == 2
        assert (
            out.stderr.decode() == f"screenpilot: error: {name} is not UTF-8 text (byte 0xcd at offset 11)\n"
        )


def test_parse_reads_a_file_with_a_byte_order_mark(tmp_path):
    f = tmp_path / "answer.txt"
    f.write_bytes(b"\xef\xbb\xbf" + call("click", coordinate=[935, 406]).encode())
    out = sp("parse", "--tool", "mobile_use", "--screen", "1080x2400", str(f))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["x"] == 925


def test_mcp_and_replay_say_the_model_loads_before_the_environment_starts(tmp_path):
    out = sp("mcp", "--env", "fake", "--model", "http://user:pw@127.0.0.1:9/v1", stdin="")
    assert out.returncode == 2, out.stderr
    first, error = out.stderr.splitlines()
    assert first == "loading model http://REDACTED@127.0.0.1:9/v1, then starting the fake environment…"
    assert error.startswith("screenpilot: error: nothing answers at")
    model = _replay(tmp_path, call("click", coordinate=[935, 406]), call("terminate", status="success"))
    run = tmp_path / "run"
    assert (
        sp("run", "Tap it", "--env", "fake", "--model", model, "--out", str(run), "--no-settle").returncode
        == 0
    )
    out = sp(
        "replay", str(run), "--env", "fake", "--model", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "r")
    )
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.splitlines()[0]
        == "loading model http://127.0.0.1:9/v1, then starting the fake environment…"
    )
