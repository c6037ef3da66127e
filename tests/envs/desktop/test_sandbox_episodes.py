"""Whole episodes in the sandbox: replayed model answers in model pixels -> the real Tk window."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from screenpilot.actions.coords import Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.conformance import check_environment
from screenpilot.envs.desktop import SandboxEnv
from screenpilot.envs.desktop.processes import group_alive
from screenpilot.errors import DeviceError, SetupError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel

REPO = Path(__file__).resolve().parents[3]
DEMO_REPLAY = REPO / "examples" / "replay" / "sandbox-demo.jsonl"
DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"


def call(**arguments: Any) -> str:
    return (
        "<tool_call>\n"
        + json.dumps({"name": "computer_use", "arguments": arguments}, ensure_ascii=False)
        + "\n</tool_call>"
    )


def run(env: SandboxEnv, outputs: list[str], goal: str = "demo") -> Any:
    agent = Agent(ReplayModel([(None, o) for o in outputs]), Qwen25VLDialect("computer_use"))
    episode = run_episode(env, agent, goal, limits=Limits(max_steps=len(outputs) + 1), settle=lambda e: None)
    steps = list(episode)
    assert episode.result is not None
    return episode.result, steps


def test_an_episode_in_model_pixels_reaches_the_window(sandbox_app: Any) -> None:
    env, log = sandbox_app
    # 1280x800 is shown to the model as 1288x812: the entry's centre (300, 138) is (302, 140) there.
    result, steps = run(
        env,
        [
            call(action="left_click", coordinate=[302, 140]),
            call(action="key", keys=["ctrl", "slash"]),
            call(action="key", keys=["Delete"]),
            call(action="type", text="Grüße, 世界 🙂"),
            call(action="key", keys=["Return"]),
            call(action="scroll", pixels=-200, coordinate=[402, 304]),
            call(action="double_click", coordinate=[503, 406]),
            call(action="terminate", status="success"),
        ],
    )
    assert (result.status, result.reason) == ("success", "terminated")
    assert steps[0].record.model_screen == (1288, 812)
    assert steps[0].record.actions[0].device == {
        "action": "click",
        "x": 300,
        "y": 138,
        "button": "left",
        "count": 1,
    }

    assert log.wait_event("submit")["text"] == "Grüße, 世界 🙂"
    press = log.of("press")[0]
    assert (press["x"], press["y"], press["widget"]) == (300, 138, "entry")
    log.wait_for(lambda events: any(e["event"] == "double" for e in events))
    wheels = log.of("wheel")
    assert [(w["direction"], w["x"], w["y"]) for w in wheels] == [("down", 400, 300)] * 2
    double = log.of("double")[0]
    assert (double["x"], double["y"]) == (500, 400)


def test_an_unknown_key_goes_back_to_the_model_and_the_episode_recovers(sandbox_app: Any) -> None:
    env, log = sandbox_app
    result, steps = run(
        env,
        [
            call(action="key", keys=["hyperdrive"]),
            call(action="key", keys=["esc"]),
            call(action="terminate", status="success"),
        ],
    )
    assert result.status == "success"
    assert steps[0].record.failed
    assert "hyperdrive" in steps[0].record.actions[0].error
    assert "hyperdrive" in (steps[1].record.feedback or "")
    assert log.wait_event("key", keysym="Escape")


def test_the_readme_demo_through_the_command_line(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "screenpilot",
            "run",
            "Type 'Grüße, 世界' into the text box and press Send",
            "--env",
            "sandbox",
            "--app",
            f"{DEMO} --log {events}",
            "--model",
            f"replay:{DEMO_REPLAY}",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env={**os.environ, "DISPLAY": ":12345"},  # a bogus caller display must not matter
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.startswith("success: terminated after 4 steps")
    received = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()]
    submits = [e for e in received if e["event"] == "submit"]
    assert submits == [{**submits[0], "via": "button", "text": "Grüße, 世界"}]


def test_conformance_without_an_app() -> None:
    first = check_environment(lambda: SandboxEnv(size=Size(800, 600)))
    assert first.size == (800, 600)


def test_conformance_with_the_demo_app_restarts_it_per_reset(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    check_environment(lambda: SandboxEnv(app=f"{DEMO} --log {log}"))
    readies = [line for line in log.read_text().splitlines() if '"ready"' in line]
    assert len(readies) == 2  # a fresh app for each of the two resets


def test_close_stops_the_display_the_app_and_clipboard_daemons(tmp_path: Path) -> None:
    env = SandboxEnv(app=f"{DEMO} --log {tmp_path / 'events.jsonl'}")
    env.reset()
    env.clipboard().set_text("ä")  # leaves an xclip daemon owning the selection
    xvfb_pid = env._xvfb.pid
    app_group = env._apps[0].pid
    clip_groups = set(env.clipboard()._groups)  # type: ignore[attr-defined]
    assert xvfb_pid and group_alive(xvfb_pid) and group_alive(app_group)
    assert any(group_alive(g) for g in clip_groups)
    env.close()
    assert not group_alive(xvfb_pid)
    assert not group_alive(app_group)
    assert not any(group_alive(g) for g in clip_groups)
    env.close()


def test_an_app_that_fails_is_a_setup_error_and_leaves_nothing_behind() -> None:
    env = SandboxEnv(app="echo broken >&2; exit 3")
    with pytest.raises(SetupError, match=r"status 3.*broken"):
        env.reset()
    xvfb_pid = env._xvfb.pid
    env.close()
    assert xvfb_pid is not None and not group_alive(xvfb_pid)


def test_a_dropped_sandbox_is_cleaned_up() -> None:
    env = SandboxEnv()
    env.reset()
    xvfb_pid = env._xvfb.pid
    assert xvfb_pid is not None
    del env
    gc.collect()
    assert not group_alive(xvfb_pid)


def test_two_sandboxes_in_one_process_each_get_their_own_input(tmp_path: Path) -> None:
    logs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    with SandboxEnv(app=f"{DEMO} --log {logs[0]}") as a, SandboxEnv(app=f"{DEMO} --log {logs[1]}") as b:
        a.reset()
        b.reset()
        assert a.display != b.display
        from screenpilot.actions.types import Click

        a.execute(Click(x=200, y=300))
        b.execute(Click(x=600, y=400))
        a.settle(timeout_s=1)
        b.settle(timeout_s=1)
    presses = [
        [(e["x"], e["y"]) for e in map(json.loads, log.read_text().splitlines()) if e["event"] == "press"]
        for log in logs
    ]
    assert presses == [[(200, 300)], [(600, 400)]]


def test_sandboxes_in_parallel_threads_keep_their_input_apart(tmp_path: Path) -> None:
    """The benchmark runner drives one sandbox per worker thread."""
    from concurrent.futures import ThreadPoolExecutor

    from screenpilot.actions.types import Click, TypeText

    def work(i: int) -> list[str]:
        log = tmp_path / f"{i}.jsonl"
        with SandboxEnv(app=f"{DEMO} --log {log}") as env:
            env.reset()
            env.execute(Click(x=300, y=138))
            for n in range(3):
                env.execute(TypeText(text=f"w{i}-{n}é "))
                env.execute(TypeText(text=f"a{i} "))
            env.settle(timeout_s=1)
        events = [json.loads(line) for line in log.read_text().splitlines()]
        return [e["text"] for e in events if e["event"] == "text"]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(work, range(3)))
    for i, texts in enumerate(results):
        assert texts[-1] == "".join(f"w{i}-{n}é a{i} " for n in range(3))


def test_a_crashed_display_is_a_device_error_and_the_next_reset_starts_a_new_one(tmp_path: Path) -> None:
    import signal

    from screenpilot.actions.types import Click

    log = tmp_path / "events.jsonl"
    with SandboxEnv(app=f"{DEMO} --log {log}") as env:
        env.reset()
        xvfb_pid = env._xvfb.pid
        assert xvfb_pid is not None
        os.kill(xvfb_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while group_alive(xvfb_pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(DeviceError):
            env.observe()
            env.execute(Click(x=10, y=10))
        env.reset()
        assert env._xvfb.pid != xvfb_pid
        assert env.observe().screenshot.getpixel((300, 138)) == (255, 255, 255)  # the new app's entry
        assert env.app_running
