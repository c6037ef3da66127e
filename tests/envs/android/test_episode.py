"""Whole episodes on the fake phone: model pixels in, device pixels on the wire, through the loop and the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import run_episode
from screenpilot.agent.record import RunRecorder, load_run, record_episode
from screenpilot.cli.main import main
from screenpilot.envs.android import AndroidEnv
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone
from screenpilot.model.base import ImagePart
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel

MakeEnv = Callable[..., AndroidEnv]


def call(arguments: dict[str, object]) -> str:
    body = json.dumps({"name": "mobile_use", "arguments": arguments})
    return f"<tool_call>\n{body}\n</tool_call>"


# A 1080x2400 screen is shown to the model at 1092x2408 (smart_resize), so model (935, 406) is device (925, 405).
SCRIPT = [
    call({"action": "click", "coordinate": [935, 406]}),
    call({"action": "swipe", "coordinate": [546, 1806], "coordinate2": [546, 602]}),
    call({"action": "type", "text": "hello world"}),
    call({"action": "key", "text": "enter"}),
    call({"action": "open", "text": "Settings"}),
    call({"action": "system_button", "button": "Back"}),
    call({"action": "terminate", "status": "success"}),
]


def test_replayed_episode_taps_device_pixels(make_env: MakeEnv, phone: FakePhone) -> None:
    env = make_env()
    model = ReplayModel([(None, out) for out in SCRIPT])
    agent = Agent(model, Qwen25VLDialect("mobile_use"))
    episode = run_episode(env, agent, "turn on wifi", settle=lambda e: e.settle())  # type: ignore[attr-defined]
    steps = list(episode)
    assert episode.result is not None
    assert (episode.result.status, episode.result.reason) == ("success", "terminated")
    assert len(steps) == 7
    assert steps[0].record.model_screen == (1092, 2408)
    assert steps[0].record.actions[0].device == {
        "action": "click",
        "x": 925,
        "y": 405,
        "button": "left",
        "count": 1,
    }
    assert phone.inputs == [
        "input tap 925 405",
        "input swipe 540 1800 540 600 300",
        "input text hello%sworld",
        "input keyevent KEYCODE_ENTER",
        "input keyevent KEYCODE_BACK",
    ]
    assert phone.text == "hello world\n"
    assert "am start -n com.android.settings/com.android.settings.Settings" in phone.commands
    # the model saw the phone's screen, resized to the size its prompt states
    images = [p.image for m in model.calls[0] for p in m.content if isinstance(p, ImagePart)]
    assert [i.size for i in images] == [(1092, 2408)]


def test_device_vanishing_mid_episode_ends_it_cleanly(
    make_env: MakeEnv, phone: FakePhone, tmp_path: Path
) -> None:
    env = make_env()
    shots = {"n": 0}

    def screencap(device: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        shots["n"] += 1
        if shots["n"] == 2:  # unplugged while the second screenshot is being taken
            device.present = False
        return device._cmd_screencap(argv)

    phone.handlers["screencap"] = screencap
    model = ReplayModel([(None, SCRIPT[0]), (None, SCRIPT[1])])
    episode = run_episode(env, Agent(model, Qwen25VLDialect("mobile_use")), "tap something")
    recorder = RunRecorder(tmp_path / "run", {"goal": "tap something"})
    result = record_episode(episode, recorder)
    assert (result.status, result.reason, result.steps) == ("failure", "device_error", 1)
    assert result.error is not None and "emulator-5554" in result.error
    assert "command='screencap 2>/dev/null'" in result.error  # no fallback to PNG for a device that is gone
    run = load_run(tmp_path / "run")
    assert len(run.steps) == 1
    assert run.steps[0].actions[0].executed
    assert run.result is not None and run.result.reason == "device_error"
    assert phone.inputs == ["input tap 925 405"]


def test_cli_run_against_the_fake_server(
    server: FakeAdbServer, phone: FakePhone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = tmp_path / "replies.jsonl"
    replay.write_text(
        "".join(json.dumps({"output": o}) + "\n" for o in (SCRIPT[0], SCRIPT[-1])), encoding="utf-8"
    )
    for key, value in server.environ.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    out = tmp_path / "run"
    status = main(
        [
            "run",
            "open the menu",
            "--env",
            "android",
            "--model",
            f"replay:{replay}",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert status == 0
    assert phone.inputs == ["input tap 925 405"]
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert (result["status"], result["reason"], result["steps"]) == ("success", "terminated", 2)
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["env"]["env"] == "android"
    assert meta["env"]["serial"] == "emulator-5554"
    assert len(list((out / "screens").glob("step-*.png"))) == 2


def test_cli_reports_a_missing_device_as_a_setup_error(
    server: FakeAdbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    replay = tmp_path / "replies.jsonl"
    replay.write_text(json.dumps({"output": SCRIPT[-1]}) + "\n", encoding="utf-8")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    status = main(["run", "x", "--env", "android", "--serial", "R58M999", "--model", f"replay:{replay}"])
    assert status == 2
    assert "'R58M999' is not connected; connected devices: emulator-5554" in capsys.readouterr().err


def test_the_documented_trial_runs_the_example_replies(
    server: FakeAdbServer, phone: FakePhone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/android.md: ANDROID_ADB_SERVER_PORT=NNNNN screenpilot run ... --model replay:examples/replay/android-demo.jsonl
    replies = Path(__file__).parents[3] / "examples" / "replay" / "android-demo.jsonl"
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    model = f"replay:{replies}"
    status = main(
        ["run", "open settings", "--env", "android", "--model", model, "--out", str(tmp_path / "run")]
    )
    assert status == 0
    assert phone.foreground == "com.android.settings"
    assert phone.inputs == ["input tap 540 420", "input text Wi-Fi", "input keyevent KEYCODE_BACK"]
    assert phone.text == "Wi-Fi"
