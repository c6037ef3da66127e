"""Sessions on the in-memory fake phone with replayed model answers: the verbs' actions, grounding from
model pixels to device pixels, the policy, bad options and how a session ends."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import screenpilot
from screenpilot.actions.types import (
    Click,
    Key,
    LongPress,
    OpenApp,
    Swipe,
    SystemButton,
    TypeText,
)
from screenpilot.agent.policy import Verdict
from screenpilot.agent.record import load_run
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.replay import ReplayModel


def click_at(x: int, y: int) -> str:
    return json.dumps({"name": "mobile_use", "arguments": {"action": "click", "coordinate": [x, y]}})


def replay(*answers: str) -> ReplayModel:
    return ReplayModel([(None, f"<tool_call>\n{a}\n</tool_call>") for a in answers])


def fake_session(
    tmp_path: Path, model: ReplayModel, **options: object
) -> tuple[screenpilot.Session, FakeEnv]:
    env = FakeEnv()
    session = screenpilot.connect(
        env, model=model, out=tmp_path / "run", cache=False, quiet=True, settle=False, **options
    )
    return session, env


def test_phone_verbs_become_device_actions(tmp_path: Path) -> None:
    s, env = fake_session(tmp_path, replay())
    with s:
        s.tap(10, 20)
        s.back()
        s.home()
        s.open_app("Settings")
        s.swipe("up")
        s.swipe(screenpilot.Point(100, 200), (300, 400))
        s.scroll("down")
        s.long_press((5, 6), seconds=2)
        s.key("volume_up")
        s.type_text("hi")
    assert env.executed == [
        Click(x=10, y=20),
        SystemButton(button="back"),
        SystemButton(button="home"),
        OpenApp(app="Settings"),
        Swipe(x=540, y=1600, x2=540, y2=800),
        Swipe(x=100, y=200, x2=300, y2=400),
        Swipe(x=540, y=1600, x2=540, y2=800),  # scrolling down moves the finger up
        LongPress(x=5, y=6, seconds=2),
        Key(keys=("volume_up",)),
        TypeText(text="hi"),
    ]
    env.observe()  # an environment the caller passed in is left open
    run = load_run(tmp_path / "run")
    assert len(run.steps) == 10 and run.result is not None and run.result.counts is not None
    assert run.result.counts["model_calls"] == 0


def test_words_are_grounded_from_model_pixels_to_device_pixels(tmp_path: Path) -> None:
    # 1080x2400 is shown to the model as 1092x2408: (546, 1204) there is the device's (540, 1200).
    model = replay(
        click_at(546, 1204),
        '{"name": "mobile_use", "arguments": {"action": "terminate", "status": "failure"}}',
    )
    s, env = fake_session(tmp_path, model)
    with s:
        assert s.click("the middle") == (540, 1200)
        with pytest.raises(screenpilot.TargetNotFound, match="not on the screen"):
            s.long_press("the missing icon")
    assert env.executed == [Click(x=540, y=1200)]
    prompt = model.calls[0][1].content[0]
    assert "Click the middle. Answer with exactly one action" in getattr(prompt, "text", "")


def test_a_policy_that_aborts_stops_every_later_action(tmp_path: Path) -> None:
    class NoTyping:
        def review(self, action: screenpilot.Action, *, step: int) -> Verdict:
            return (
                Verdict("abort", action, "no typing")
                if isinstance(action, TypeText)
                else Verdict("approve", action)
            )

    s, env = fake_session(tmp_path, replay(), policy=NoTyping())
    with pytest.raises(screenpilot.ActionRefused, match="takes no more actions"), s:
        s.tap(1, 2)
        with contextlib.suppress(screenpilot.ActionRefused):
            s.type_text("secret")
        s.tap(3, 4)
    assert env.executed == [Click(x=1, y=2)]
    result = load_run(tmp_path / "run").result
    assert result is not None and (result.status, result.reason) == ("failure", "aborted")


def test_ctrl_c_inside_the_with_marks_the_run_interrupted(tmp_path: Path) -> None:
    s, _ = fake_session(tmp_path, replay())
    with pytest.raises(KeyboardInterrupt), s:
        s.tap(1, 2)
        raise KeyboardInterrupt
    result = load_run(tmp_path / "run").result
    assert result is not None and (result.reason, result.steps) == ("interrupted", 1)


@pytest.mark.parametrize(
    ("env", "options", "message"),
    [
        ("fake", {"max_stepz": 3}, "unknown option 'max_stepz'; did you mean 'max_steps'?"),
        ("moon", {}, "unknown environment 'moon'; choose one of android, desktop, sandbox, fake"),
        ("fake", {"policy": "maybe"}, "unknown policy 'maybe'"),
        ("fake", {"screen_size": "10x10"}, "--screen-size 10x10: 10x10 is out of range"),
        ("fake", {"app": "xterm"}, "--app applies only to --env sandbox"),
        ("fake", {"model": "replay:/nonexistent/answers.jsonl"}, "/nonexistent/answers.jsonl"),
    ],
)
def test_bad_options_are_one_line_errors_and_leave_no_run_folder(
    tmp_path: Path, env: str, options: dict[str, object], message: str
) -> None:
    given = {"model": "replay:/dev/null", **options}
    with pytest.raises(screenpilot.SetupError) as error:
        screenpilot.connect(env, out=tmp_path / "run", cache=False, **given)  # type: ignore[arg-type]
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_closed_session_refuses_more_work(tmp_path: Path) -> None:
    s, _ = fake_session(tmp_path, replay())
    s.close()
    s.close()  # twice is fine
    with pytest.raises(screenpilot.SetupError, match="closed"):
        s.tap(1, 1)


def test_steps_can_be_stopped_and_keep_what_was_recorded(tmp_path: Path) -> None:
    s, env = fake_session(tmp_path, replay(click_at(546, 1204), click_at(100, 100)))
    with s:
        s.tap(1, 1)
        episode = s.steps("tap around", max_steps=5)
        first = next(iter(episode))
        episode.stop("aborted", "seen enough")
    assert first.record.index == 2 and first.record.actions[0].device["x"] == 540
    assert episode.result is not None and (episode.result.reason, episode.result.steps) == ("aborted", 1)
    assert env.executed == [Click(x=1, y=1), Click(x=540, y=1200)]
    run = load_run(tmp_path / "run")
    assert [step.index for step in run.steps] == [1, 2]
    assert run.result is not None and run.result.counts is not None and run.result.counts["model_calls"] == 1


@pytest.mark.parametrize("keys", [("   ",), ("",), ("ctrl", " "), ("\t",)])
def test_blank_key_names_are_refused_and_nothing_is_pressed(tmp_path: Path, keys: tuple[str, ...]) -> None:
    s, env = fake_session(tmp_path, replay())
    with s:
        with pytest.raises(screenpilot.SetupError, match=r"key\(\) needs key names") as error:
            s.key(*keys)
        assert "\n" not in str(error.value)
    assert env.executed == []


@pytest.mark.parametrize("keys", [("ctrl+",), ("ctrl + shift +",), ("shift", "ctrl+")])
def test_a_combination_ending_in_plus_is_refused_not_pressed_as_ctrl_alone(
    tmp_path: Path, keys: tuple[str, ...]
) -> None:
    s, env = fake_session(tmp_path, replay())
    with s:
        with pytest.raises(
            screenpilot.SetupError, match=r"^The key combination .* ends with '\+' and no key after it.*\+\+'"
        ):
            s.key(*keys)
        s.key("ctrl++")
    assert env.executed == [Key(keys=("ctrl", "+"))]


BAD_ARGUMENTS: list[tuple[Callable[[screenpilot.Session], object], str]] = [
    (
        lambda s: s.click("the OK button", button="side"),
        "click(): button: Input should be 'left', 'right' or",
    ),
    (lambda s: s.long_press("the list", seconds=-1), "long_press(): seconds: Input should be greater than 0"),
    (lambda s: s.swipe("the list", "the OK button", seconds=0), "swipe(): seconds: Input should be greater"),
    (lambda s: s.type_text(None, into="the field"), "type_text(): text: Input should be a valid string"),  # type: ignore[arg-type]
    (lambda s: s.scroll(amount=0), "scroll() amount is a whole number of pixels, 1 to 10000, not 0"),
    (lambda s: s.scroll(amount=10**9), "scroll() amount is a whole number of pixels, 1 to 10000, not 1000"),
]


@pytest.mark.parametrize(("verb", "message"), BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_before_the_model_is_asked_or_a_step_recorded(
    tmp_path: Path, verb: Callable[[screenpilot.Session], object], message: str
) -> None:
    s, env = fake_session(tmp_path, replay())  # no answers: asking the model would fail otherwise
    with s:
        with pytest.raises(screenpilot.SetupError) as error:
            verb(s)
        assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert env.executed == []
    run = load_run(tmp_path / "run")
    assert run.steps == [] and run.result is not None and run.result.status == "success"


def test_refused_locator_stores_are_counted_and_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = FakeEnv()  # the middle of its screen is flat: no anchor can be cut there
    with screenpilot.connect(
        env, model=replay(click_at(546, 1204)), out=tmp_path / "run", cache=tmp_path / "c.json", settle=False
    ) as s:
        s.click("the middle")
    result = load_run(tmp_path / "run").result
    assert result is not None and result.counts is not None
    assert (result.counts["locator_stores"], result.counts["locator_refused"]) == (0, 1)
    assert "0 stores, 1 refused" in capsys.readouterr().err
