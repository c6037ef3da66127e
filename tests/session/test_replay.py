"""``screenpilot replay``: a recorded run repeated at once on the demo app; a moved button is followed with no
model call, and without --model the first mismatch ends the replay with one line naming the step and both
screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest

import screenpilot
from screenpilot.agent.record import load_run
from screenpilot.cli.main import main
from screenpilot.session.replay import (
    ReplayMismatch,
    action_source,
    load_recording,
    moved,
    read_run,
)
from tests.session.conftest import Demo, needs_x
from tests.session.test_export import GOAL, fresh, goal_demo, received, record_typing_and_send

__all__ = ["goal_demo"]  # the fixture, shared with the export tests


def replay(run: Path, demo: Demo, out: Path, *options: str) -> int:
    return main(["replay", str(run), "--env", "sandbox", "--app", demo.app, "--out", str(out), *options])


@needs_x
def test_replay_follows_a_moved_button_without_the_model(
    goal_demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with screenpilot.connect(
        "sandbox",
        app=goal_demo.app,
        model=goal_demo.oracle.url,
        out=tmp_path / "run",
        cache=False,
        quiet=True,
    ) as s:
        s.click("the Send button")
        goal_demo.wait_for("submit", via="button")
    calls = goal_demo.oracle.calls
    here = fresh(goal_demo, "moved", layout="moved")
    assert replay(tmp_path / "run", here, tmp_path / "replay", "--quiet") == 0
    assert "replayed 1 actions" in capsys.readouterr().out
    press = here.wait_for("press", button=1)
    assert (press["x"], press["y"], press["widget"]) == (*here.centre("button"), "button")
    assert here.centre("button") != (580, 138)  # it really moved
    assert goal_demo.oracle.calls == calls
    (step,) = load_run(tmp_path / "replay").steps
    done = step.actions[0].device
    assert (done["x"], done["y"]) == here.centre("button") == (580, 100 + 344 + 18)
    assert (step.summary or "").startswith("anchor found")


@needs_x
def test_replay_without_a_model_stops_at_the_first_mismatch(
    goal_demo: Demo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record_typing_and_send(goal_demo, tmp_path / "run")
    calls = goal_demo.oracle.calls
    renamed = fresh(goal_demo, "renamed", layout="renamed")
    assert replay(tmp_path / "run", renamed, tmp_path / "replay", "--quiet") == 1
    err = capsys.readouterr().err
    recorded, now = tmp_path / "run/screens/step-0002.png", tmp_path / "replay/screens/step-0003.png"
    assert err == (
        "screenpilot: error: step 2 (Click(x=580, y=138)): its anchor is not on the screen "
        f"(recorded: {recorded}; now: {now})\n"
    )
    assert now.is_file()
    assert renamed.wait_for("text", text="Alice")  # the steps before the mismatch were done
    assert not [e for e in renamed.events("press") if e["widget"] == "button"]
    assert goal_demo.oracle.calls == calls
    run = load_run(tmp_path / "replay")
    assert [s.failed for s in run.steps] == [False, False, True]
    assert run.result is not None and run.result.status == "failure"


@needs_x
def test_replay_with_a_model_hands_over_to_the_agent(goal_demo: Demo, tmp_path: Path) -> None:
    recorded = record_typing_and_send(goal_demo, tmp_path / "run")
    renamed = fresh(goal_demo, "renamed", layout="renamed")
    url = goal_demo.oracle.url
    assert replay(tmp_path / "run", renamed, tmp_path / "replay", "--quiet", "--model", url) == 0
    renamed.wait_for("submit", text="Alice")
    assert received(renamed)[:-3] == recorded[:-3]  # the same up to the button, which the agent found
    result = load_run(tmp_path / "replay").result
    assert result is not None and result.goal == GOAL and result.counts is not None
    assert result.counts["model_calls"] == 2


def test_a_recording_reads_back_and_its_actions_move_and_print_as_source(tmp_path: Path) -> None:
    with screenpilot.connect(
        "fake", model="replay:/dev/null", out=tmp_path / "run", cache=False, quiet=True
    ) as s:
        s.tap(500, 1200)
        s.key("ctrl+s")
        s.swipe((100, 200), (100, 900))
    recording, actions = read_run(tmp_path / "run", goal="save it")
    assert [action_source(a.action) for a in actions] == [
        "Click(x=500, y=1200)",
        "Key(keys=('ctrl', 's'))",
        "Swipe(x=100, y=200, x2=100, y2=900)",
    ]
    assert action_source(moved(actions[2].action, 5, -7)) == "Swipe(x=105, y=193, x2=105, y2=893)"
    assert recording.goal == "save it" and recording.steps[2].calls == ["key('ctrl+s')"]
    path = tmp_path / "flow.anchors.json"
    path.write_text(recording.model_dump_json(), encoding="utf-8")
    assert load_recording(path) == recording


def test_a_file_that_is_no_recording_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "flow.anchors.json"
    path.write_text('{"format": "something else"}', encoding="utf-8")
    with pytest.raises(screenpilot.SetupError, match=r"is not a screenpilot anchors file \(format: ") as bad:
        load_recording(path)
    assert "\n" not in str(bad.value)
    assert issubclass(ReplayMismatch, screenpilot.TargetNotFound)
