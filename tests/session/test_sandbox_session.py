"""Scripts on the sandbox's demo app, grounded by an oracle model that sees the real screen.

Assertions are on what the app received (its event log), on how many model calls were made and on the run
folder the session wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import screenpilot
from screenpilot.agent.record import load_run
from tests.session.conftest import Demo, needs_x, read_jsonl
from tests.session.oracle import OFF_SCREEN

pytestmark = needs_x


def open_session(demo: Demo, out: Path, **options: object) -> screenpilot.Session:
    return screenpilot.connect(
        "sandbox", app=demo.app, model=demo.oracle.url, out=out, cache=False, quiet=True, **options
    )


def test_click_on_words_lands_on_the_named_widget(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        point = s.click("the Send button")
        demo.wait_for("submit", via="button")
    press = demo.wait_for("press", button=1)
    assert (press["x"], press["y"], press["widget"]) == (*demo.centre("button"), "button")
    assert tuple(point) == demo.centre("button")
    assert demo.oracle.calls == 1
    run = load_run(tmp_path / "run")
    assert [step.actions[0].device["action"] for step in run.steps] == ["click"]
    assert run.result is not None and (run.result.status, run.result.reason) == ("success", "terminated")
    assert run.result.counts is not None and run.result.counts["model_calls"] == 1


def test_keyboard_and_pointer_verbs_reach_the_app(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        s.type_text("Alice", into="the text field")
        s.key("ctrl+a")
        s.key("Return")
        assert demo.wait_for("submit", via="return")["text"] == "Alice"
        pad = demo.centre("pad")
        s.double_click(pad)
        s.scroll("down", at=pad)
        s.hover("the pad")
        s.tap(*demo.centre("entry"))
        s.long_press(pad, seconds=0.2)
        demo.wait_for("double")
        demo.wait_for("wheel", direction="down")
        with pytest.raises(screenpilot.UnsupportedActionError):
            s.back()  # a desktop has no Back button: the step is recorded, then the error raised
    assert demo.wait_for("key", keysym="a")["modifiers"] == ["ctrl"]
    presses = [(e["x"], e["y"]) for e in demo.events("press")]
    assert demo.centre("entry") in presses and pad in presses
    steps = load_run(tmp_path / "run").steps
    assert [s.actions[-1].device["action"] for s in steps] == [
        "type", "key", "key", "click", "scroll", "mouse_move", "click", "long_press", "system_button",
    ]  # fmt: skip
    assert steps[0].actions[0].device["action"] == "click"  # into= clicks the field first
    assert steps[-1].failed and "phone button" in (steps[-1].actions[-1].error or "")
    assert demo.oracle.calls == 2  # "the text field" and "the pad"; points need no model


def test_scrolling_left_and_right_turns_the_sideways_wheel(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        pad = demo.centre("pad")
        s.scroll("left", at=pad, amount=200)
        s.scroll("right", at=pad, amount=100)
        demo.wait_for("hwheel", direction="right")
    assert [(w["direction"], w["x"], w["y"]) for w in demo.events("hwheel")] == [
        ("left", *pad),
        ("left", *pad),
        ("right", *pad),
    ]
    assert demo.events("wheel") == []
    steps = load_run(tmp_path / "run").steps
    assert [(a.device["axis"], a.device["pixels"]) for step in steps for a in step.actions] == [
        ("horizontal", 200),
        ("horizontal", -100),
    ]


def test_swiping_between_two_targets_drags_the_mouse_on_a_desktop(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        x, y = demo.centre("pad")
        s.swipe((x - 100, y), (x + 100, y + 50))
        release = demo.wait_for("release", button=1)
    press = demo.wait_for("press", button=1)
    assert (press["x"], press["y"], release["x"], release["y"]) == (x - 100, y, x + 100, y + 50)
    (step,) = load_run(tmp_path / "run").steps
    assert step.actions[0].device == {
        "action": "drag", "x": x - 100, "y": y, "x2": x + 100, "y2": y + 50, "seconds": 0.3
    }  # fmt: skip


def test_a_target_the_model_cannot_find_raises_with_the_screenshot_saved(demo: Demo, tmp_path: Path) -> None:
    demo.layout = "renamed"  # the button says Submit now
    with open_session(demo, tmp_path / "run", max_retries=1) as s:
        with pytest.raises(screenpilot.TargetNotFound) as missing:
            s.click("the Send button")
        assert missing.value.screenshot is not None and Path(missing.value.screenshot).is_file()
        assert missing.value.screenshot in str(missing.value)
        with pytest.raises(screenpilot.TargetNotFound, match="outside the screen"):
            s.locate(OFF_SCREEN)
        assert s.locate("the Submit button") == demo.centre("button")
    assert demo.oracle.calls == 1 + 2 + 1  # off screen: the first answer and one retry
    assert not demo.events("press")
    steps = load_run(tmp_path / "run").steps
    assert [s.failed for s in steps] == [True, True, False]
    assert steps[0].actions == [] and "not on the screen" in steps[0].errors[-1]


def test_ask_and_expect_read_the_screen(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        assert s.ask("What does the button say?") == "Send"
        with pytest.raises(screenpilot.ExpectationFailed) as failed:
            s.expect("the pad shows 'Sent: Bob'", timeout=0.3, interval=0.1)
        assert failed.value.answer == "no" and Path(failed.value.screenshot or "").is_file()
        s.type_text("Bob", into="the text field")
        s.click("the Send button")
        demo.wait_for("submit", text="Bob")
        assert s.expect("the pad shows 'Sent: Bob'", timeout=5) == "yes"
    steps = load_run(tmp_path / "run").steps
    answers = [a.device for st in steps for a in st.actions if a.verdict == "final"]
    assert answers[0] == {"action": "answer", "text": "Send"}
    assert answers[-1] == {"action": "answer", "text": "yes"}
    assert "answer" in demo.oracle.prompts[0]


def test_run_and_steps_are_the_agent_loop_in_the_same_run_folder(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        s.type_text("Carol", into="the text field")
        result = s.run("Press the Send button", max_steps=4)
        assert (result.status, result.reason, result.steps) == ("success", "terminated", 2)
        assert demo.wait_for("submit", via="button")["text"] == "Carol"  # the app kept its state
        episode = s.steps("Press the Send button", max_steps=4)
        seen = [step.record.index for step in episode]
        assert episode.result is not None and episode.result.status == "success"
    assert seen == [4, 5]
    run = load_run(tmp_path / "run")
    assert [step.index for step in run.steps] == [1, 2, 3, 4, 5]
    assert all((tmp_path / "run" / (step.screenshot or "")).is_file() for step in run.steps)
    assert run.result is not None and run.result.counts is not None
    assert run.result.counts["model_calls"] == demo.oracle.calls == 5
    assert len(demo.events("ready")) == 1  # the agent did not restart the app


def test_a_crash_inside_the_with_keeps_every_step_and_writes_the_result(demo: Demo, tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), open_session(demo, tmp_path / "run") as s:
        s.click("the Send button")
        s.key("Return")
        print(1 / 0)
    run = load_run(tmp_path / "run")
    assert len(run.steps) == 2
    assert run.result is not None
    assert (run.result.status, run.result.reason, run.result.steps) == ("failure", "crashed", 2)
    assert run.result.error == "ZeroDivisionError: division by zero"


def test_the_policy_sees_scripted_actions(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run", policy="dry_run") as s:
        s.click("the Send button")
        s.type_text("nothing")
    demo.wait_for("ready")
    assert not demo.events("press") and not demo.events("text")
    verdicts = [a.verdict for st in load_run(tmp_path / "run").steps for a in st.actions]
    assert verdicts == ["skip", "skip"]


def test_screenpilot_report_reads_a_session_folder(demo: Demo, tmp_path: Path) -> None:
    with open_session(demo, tmp_path / "run") as s:
        s.click("the Send button")
        assert s.ask("What does the button say?") == "Send"
    proc = subprocess.run(
        [sys.executable, "-m", "screenpilot", "report", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "the Send button" in page and "from the model" in page  # each step's summary
    meta = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "session" and meta["locator_cache"] is None
    assert read_jsonl(tmp_path / "run" / "trajectory.jsonl")[0]["screenshot"] == "screens/step-0001.png"
