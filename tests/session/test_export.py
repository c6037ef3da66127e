"""``screenpilot export``: a recorded run becomes a script that repeats it on the demo app with no model call,
follows what moved, and hands over to the agent when the layout breaks.

The helpers here (a recorded script run, a fresh app log per run, an oracle that can also do the goal as an
agent, what the app received) serve the replay tests too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import screenpilot
from screenpilot.agent.record import load_run
from screenpilot.cli.main import main
from tests.session.conftest import Demo, needs_x
from tests.session.oracle import Oracle, _texts

GOAL = "Type Alice into the text field and press the Send button"
#: The fields of an app event that say what the app received (not when).
EVENT_FIELDS = ("event", "x", "y", "button", "widget", "keysym", "modifiers", "text", "via")


class GoalOracle(Oracle):
    """The demo oracle that also does the goal as an agent: while the app has sent nothing it clicks the
    button (wherever it is and whatever it says), then it says the task is done."""

    def answer(self, messages: list[dict[str, Any]]) -> str:
        user = _texts(next(m for m in messages if m["role"] == "user")["content"])
        if "Answer with exactly one action" in user or "Answer this question" in user:
            return super().answer(messages)
        self.prompts.append(user)
        if any(e["event"] == "submit" for e in self.events()):
            return self._call("computer_use", action="terminate", status="success")
        size = re.search(r"The screen's resolution is (\d+)x(\d+)", _texts(messages[0]["content"]))
        assert size is not None
        return self._ground("computer_use", (int(size[1]), int(size[2])), "the button")


def fresh(demo: Demo, name: str, layout: str = "default") -> Demo:
    """The same oracle watching a new app log (the next run's), with ``layout``."""
    log = demo.log.with_name(f"{name}.jsonl")
    demo.oracle.log = log
    return Demo(log, demo.oracle, layout)


def received(demo: Demo) -> list[tuple[Any, ...]]:
    """What the app received, in order, without times and without its start-up event."""
    return [tuple(e.get(k) for k in EVENT_FIELDS) for e in demo.events() if e["event"] != "ready"]


def record_typing_and_send(demo: Demo, out: Path) -> list[tuple[Any, ...]]:
    """A script's run: type Alice into the field and press Send (the model grounds both); returns what the
    app received."""
    with screenpilot.connect(
        "sandbox", app=demo.app, model=demo.oracle.url, out=out, cache=False, quiet=True, name=GOAL
    ) as s:
        s.type_text("Alice", into="the text field")
        s.click("the Send button")
        demo.wait_for("submit", text="Alice")
    return received(demo)


@pytest.fixture
def goal_demo(tmp_path: Path) -> Iterator[Demo]:
    """The demo app with a :class:`GoalOracle`."""
    log = tmp_path / "record.jsonl"
    with GoalOracle(log) as oracle:
        yield Demo(log, oracle)


def export(run: Path, script: Path, *options: str) -> str:
    assert main(["export", str(run), "-o", str(script), *options]) == 0
    return script.read_text(encoding="utf-8")


def run_script(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=script.parent
    )


def replay_folder(script: Path) -> Path:
    (folder,) = (script.parent / "runs").iterdir()
    return folder


@needs_x
def test_the_exported_script_repeats_the_run_without_the_model(goal_demo: Demo, tmp_path: Path) -> None:
    recorded = record_typing_and_send(goal_demo, tmp_path / "run")
    calls = goal_demo.oracle.calls
    assert calls == 2  # the field and the button were grounded
    again = fresh(goal_demo, "again")
    script = tmp_path / "flows" / "flow.py"
    script.parent.mkdir()
    text = export(tmp_path / "run", script, "--app", again.app)
    assert "    # step 1: 'the text field' at (300, 138) from the model\n" in text
    assert "    flow.do(1, Click(x=300, y=138), anchor='1')\n    flow.do(1, TypeText(text='Alice'))\n" in text
    assert "    flow.do(2, Click(x=580, y=138), anchor='2')\n" in text
    assert f"GOAL = {GOAL!r}" in text and (script.parent / "flow.anchors.json").is_file()

    proc = run_script(script)
    assert proc.returncode == 0, proc.stderr
    again.wait_for("submit", text="Alice")
    assert goal_demo.oracle.calls == calls  # not one model call
    assert received(again) == recorded  # the app received the same events
    result = load_run(replay_folder(script)).result
    assert result is not None and result.counts is not None
    assert (result.status, result.counts["model_calls"], result.counts["steps"]) == ("success", 0, 3)


@needs_x
def test_a_renamed_button_hands_the_script_over_to_the_agent(goal_demo: Demo, tmp_path: Path) -> None:
    record_typing_and_send(goal_demo, tmp_path / "run")
    calls = goal_demo.oracle.calls
    renamed = fresh(goal_demo, "renamed", layout="renamed")
    script = tmp_path / "flow.py"
    export(tmp_path / "run", script, "--app", renamed.app)

    proc = run_script(script)
    assert proc.returncode == 0, proc.stderr
    assert renamed.wait_for("submit", via="button")["text"] == "Alice"  # the task was still done
    assert goal_demo.oracle.calls == calls + 2  # the agent: a click on Submit, then done
    told = goal_demo.oracle.prompts[calls]
    assert f"The user query:  {GOAL}" in told and "Step 1: type_text('Alice', into='the text field');" in told
    steps = load_run(replay_folder(script)).steps
    assert [s.failed for s in steps] == [False, False, True, False, False]
    assert "its anchor is not on the screen" in steps[2].errors[-1]


def test_export_refuses_to_overwrite_a_script_and_names_a_missing_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "flow.py"
    script.write_text("# edited by hand\n", encoding="utf-8")
    with screenpilot.connect(
        "fake", model="replay:/dev/null", out=tmp_path / "run", cache=False, quiet=True
    ) as s:
        s.tap(10, 20)
    assert main(["export", str(tmp_path / "run"), "-o", str(script), "--env", "fake"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert script.read_text(encoding="utf-8") == "# edited by hand\n"
    assert main(["export", str(tmp_path / "nothing"), "-o", str(tmp_path / "x.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("screenpilot: error: ") and "is not a run folder" in err and err.count("\n") == 1


def test_an_agent_run_exports_with_its_conclusions_as_comments(tmp_path: Path) -> None:
    def call(**arguments: Any) -> str:
        return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"

    answers = [
        "<thinking>The list needs a refresh.</thinking>\n"
        + call(action="swipe", coordinate=[500, 800], coordinate2=[500, 1600])
        + "\n<conclusion>Pull the list down to refresh it.</conclusion>",
        call(action="type", text="milk") + "\n<conclusion>Type the item.</conclusion>",
        call(action="terminate", status="success"),
    ]
    replies = tmp_path / "answers.jsonl"
    replies.write_text("".join(json.dumps({"output": a}) + "\n" for a in answers), encoding="utf-8")
    run = ["run", "Add milk", "--env", "fake", "--model", f"replay:{replies}", "--reasoning", "--quiet"]
    assert main([*run, "--out", str(tmp_path / "run")]) == 0
    text = export(tmp_path / "run", tmp_path / "flow.py")
    assert "    # step 1: Pull the list down to refresh it.\n" in text
    assert "    # step 2: Type the item.\n    flow.do(2, TypeText(text='milk'))\n" in text
    assert "terminate" not in text and "reasoning=True" in text  # the agent it hands over to reasons too
    recording = json.loads((tmp_path / "flow.anchors.json").read_text(encoding="utf-8"))
    assert recording["goal"] == "Add milk"
    assert json.loads(recording["steps"]["2"]["calls"][0])["arguments"] == {"action": "type", "text": "milk"}
