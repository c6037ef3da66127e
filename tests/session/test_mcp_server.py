"""``screenpilot mcp`` driven by the MCP SDK's own client over stdio, the server a real subprocess: on the fake
phone with replayed model answers, and on the sandbox's demo app with the oracle model that sees it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.agent.record import load_run
from tests.envs.desktop.test_sandbox_shutdown import alive, descendants, reap
from tests.session.conftest import Demo, needs_x

mcp = pytest.importorskip("mcp")
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOOLS = {
    "screenshot", "locate", "click", "type_text", "key", "swipe", "scroll",
    "back", "home", "open_app", "ask", "run",
}  # fmt: skip


def answer(tool: str, **arguments: Any) -> str:
    call = json.dumps({"name": tool, "arguments": arguments})
    return json.dumps({"output": f"<tool_call>\n{call}\n</tool_call>"})


def replay_file(path: Path, *answers: str) -> str:
    path.write_text("".join(a + "\n" for a in answers), encoding="utf-8")
    return f"replay:{path}"


@contextlib.asynccontextmanager
async def served(tmp_path: Path, *options: str, tee: Path | None = None) -> AsyncIterator[Client]:
    """A client connected to ``screenpilot mcp OPTIONS`` started as a subprocess; its stderr goes to
    ``tmp_path/stderr.txt``; with ``tee``, a copy of its stdout goes there."""
    argv = [sys.executable, "-m", "screenpilot", "mcp", *options]
    if tee is not None:
        argv = ["sh", "-c", f"{shlex.join(argv)} | tee {shlex.quote(str(tee))}"]
    params = StdioServerParameters(
        command=argv[0], args=argv[1:], cwd=str(tmp_path), env={"PYTHONPATH": str(REPO)}
    )
    with (tmp_path / "stderr.txt").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def text(result: Any) -> str:
    assert len(result.content) == 1, result.content
    return str(result.content[0].text)


def png_size(result: Any) -> tuple[int, int]:
    (content,) = result.content
    assert content.type == "image" and content.mime_type == "image/png"
    return Image.open(io.BytesIO(base64.b64decode(content.data))).size


# -- the fake phone ----------------------------------------------------------------------------------------------
def test_phone_verbs_over_stdio_are_recorded_in_the_run_folder(tmp_path: Path) -> None:
    # 1080x2400 is shown to the model as 1092x2408: (546, 1204) there is the device's (540, 1200).
    model = replay_file(
        tmp_path / "answers.jsonl",
        answer("mobile_use", action="click", coordinate=[546, 1204]),
        answer("mobile_use", action="answer", text="42 apples"),
        answer("mobile_use", action="terminate", status="success"),
    )
    out, stdout = tmp_path / "run", tmp_path / "stdout.txt"
    options = ("--env", "fake", "--model", model, "--out", str(out), "--no-cache")

    async def scenario() -> None:
        async with served(tmp_path, *options, tee=stdout) as c:
            assert {tool.name for tool in (await c.list_tools()).tools} == TOOLS
            assert png_size(await c.call_tool("screenshot", {})) == (1080, 2400)
            assert json.loads(text(await c.call_tool("click", {"target": "the OK button"}))) == {
                "x": 540,
                "y": 1200,
            }
            assert json.loads(text(await c.call_tool("click", {"target": {"x": 10, "y": 20}}))) == {
                "x": 10,
                "y": 20,
            }
            assert text(await c.call_tool("type_text", {"text": "hi"})) == "typed 2 characters"
            assert text(await c.call_tool("key", {"keys": "volume_up"})) == "pressed volume_up"
            assert text(await c.call_tool("swipe", {"direction": "up"})) == "swiped up"
            assert text(await c.call_tool("back", {})) == "pressed back"
            assert text(await c.call_tool("open_app", {"name": "Settings"})) == "opened Settings"
            assert text(await c.call_tool("ask", {"question": "How many apples?"})) == "42 apples"
            assert text(await c.call_tool("run", {"goal": "finish"})).startswith("success: terminated")

    run(scenario)
    record = load_run(out)
    assert [step.actions[0].call for step in record.steps[:3]] == [
        "click('the OK button')",
        "click(Point(x=10, y=20))",
        "type_text('hi')",
    ]
    assert [step.actions[0].device["action"] for step in record.steps[2:7]] == [
        "type", "key", "swipe", "system_button", "open_app",
    ]  # fmt: skip
    assert len(record.steps) == 9  # the screenshot is no step; the agent's step is the ninth
    assert record.result is not None and (record.result.status, record.result.reason) == (
        "success",
        "terminated",
    )
    assert record.result.counts is not None and record.result.counts["model_calls"] == 3
    stderr = (tmp_path / "stderr.txt").read_text()
    assert f"serving MCP tools on stdio (run folder: {out})" in stderr
    lines = stdout.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 12 and all(
        json.loads(line)["jsonrpc"] == "2.0" for line in lines
    )  # only the protocol


def test_failures_are_one_line_tool_errors_and_the_server_carries_on(tmp_path: Path) -> None:
    model = replay_file(
        tmp_path / "answers.jsonl",
        answer("mobile_use", action="terminate", status="failure"),
        answer("mobile_use", action="click", coordinate=[546, 1204]),
    )
    out = tmp_path / "run"
    errors: dict[str, str] = {}

    async def scenario() -> None:
        async with served(tmp_path, "--env", "fake", "--model", model, "--out", str(out), "--no-cache") as c:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("locate", {"target": "the purple unicorn"}),  # the model says it is not there
                ("click", {"target": 5}),  # neither words nor a point
                ("click", {"target": {"x": -1, "y": 3}}),
                ("swipe", {"direction": "up", "start": "the list"}),
                ("key", {"keys": "   "}),
                ("nothing", {}),
            ]
            for name, arguments in calls:
                result = await c.call_tool(name, arguments)
                assert result.is_error, (name, result)
                errors[name + str(len(errors))] = text(result)
            assert json.loads(text(await c.call_tool("locate", {"target": "the OK button"}))) == {
                "x": 540,
                "y": 1200,
            }

    run(scenario)
    assert all("\n" not in message for message in errors.values()), errors
    not_found, bad_type, negative, swipe, keys, unknown = errors.values()
    assert not_found.startswith("locate: 'the purple unicorn' not found")
    assert str(out / "screens") in not_found  # the saved screenshot is named
    assert bad_type == "click: bad arguments: target: give words or a point {x, y}"
    assert negative == "click: bad arguments: target.x: Input should be greater than or equal to 0"
    assert swipe == "swipe: give a direction, or both start and end"
    assert keys == "key: give key names, like 'ctrl+s' or 'Return'"
    assert unknown == "Unknown tool: nothing"
    steps = load_run(out).steps
    assert steps[0].failed and steps[1].summary is not None and "from the model" in steps[1].summary


def test_a_refused_action_is_a_tool_error_and_a_dry_run_executes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"

    async def scenario() -> None:
        options = ("--env", "fake", "--model", replay_file(tmp_path / "none.jsonl"), "--out", str(out))
        async with served(tmp_path, *options, "--no-cache", "--dry-run") as c:
            assert not (await c.call_tool("click", {"target": {"x": 1, "y": 2}})).is_error
            result = await c.call_tool("home", {})
            assert not result.is_error and text(result) == "pressed home"

    run(scenario)
    steps = load_run(out).steps
    assert [a.verdict for step in steps for a in step.actions] == ["skip", "skip"]
    assert not any(a.executed for step in steps for a in step.actions)


def test_a_bad_setup_is_one_line_and_exit_status_2_with_nothing_on_stdout(tmp_path: Path) -> None:
    argv = [
        "mcp",
        "--env",
        "fake",
        "--model",
        f"replay:{tmp_path / 'missing.jsonl'}",
        "--out",
        str(tmp_path / "r"),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "screenpilot", *argv],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("screenpilot: error:")]
    assert len(errors) == 1 and "missing.jsonl" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


# -- the sandbox and its demo app ----------------------------------------------------------------------------------
def server_pid() -> int:
    """The ``screenpilot mcp`` process this test started."""
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if b"\0mcp\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("no screenpilot mcp process")


def sandbox_options(demo: Demo, out: Path) -> tuple[str, ...]:
    return (
        "--env",
        "sandbox",
        "--app",
        demo.app,
        "--model",
        demo.oracle.url,
        "--out",
        str(out),
        "--no-cache",
    )


@needs_x
def test_a_client_drives_the_demo_app_and_disconnecting_leaves_nothing_running(
    demo: Demo, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    processes: dict[int, str] = {}

    async def scenario() -> None:
        async with served(tmp_path, *sandbox_options(demo, out)) as c:
            demo.wait_for("ready")  # the oracle reads the widgets' places from it
            processes.update({server_pid(): "server", **descendants(server_pid())})
            assert "Xvfb" in processes.values()
            assert png_size(await c.call_tool("screenshot", {})) == (1280, 800)
            clicked = await c.call_tool("click", {"target": "the Send button"})
            assert not clicked.is_error, text(clicked)
            point = json.loads(text(clicked))
            assert (point["x"], point["y"]) == demo.centre("button")
            demo.wait_for("submit", via="button")
            await c.call_tool("type_text", {"text": "Alice", "into": "the text field"})
            await c.call_tool("key", {"keys": "Return"})
            assert demo.wait_for("submit", via="return")["text"] == "Alice"
            assert text(await c.call_tool("ask", {"question": "What does the button say?"})) == "Send"
            back = await c.call_tool("back", {})  # a desktop has no Back button
            assert back.is_error and text(back).startswith("back: ") and "\n" not in text(back)

    run(scenario)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reap(processes) == []
    assert demo.oracle.calls == 3
    record = load_run(out)
    assert record.result is not None and (record.result.status, record.result.reason) == (
        "success",
        "terminated",
    )
    assert [s.actions[-1].device["action"] for s in record.steps] == [
        "click",
        "type",
        "key",
        "answer",
        "system_button",
    ]


@needs_x
def test_sigterm_closes_the_session_and_the_sandbox(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "run"
    processes: dict[int, str] = {}

    async def scenario() -> None:
        with contextlib.suppress(Exception):  # the client sees its server go away
            async with served(tmp_path, *sandbox_options(demo, out)) as c:
                await c.call_tool("click", {"target": {"x": 5, "y": 5}})
                pid = server_pid()
                processes.update({pid: "server", **descendants(pid)})
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 15
                while alive(pid) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)

    run(scenario)
    assert reap(processes) == []
    record = load_run(out)
    assert record.result is not None and record.result.reason == "interrupted"
    assert len(record.steps) == 1
    assert "stopped by SIGTERM" in (tmp_path / "stderr.txt").read_text()


def test_an_argument_a_tool_does_not_take_is_refused_and_keys_come_as_a_list_too(tmp_path: Path) -> None:
    out = tmp_path / "run"
    answers: list[str] = []

    async def scenario() -> None:
        model = replay_file(tmp_path / "none.jsonl")
        async with served(tmp_path, "--env", "fake", "--model", model, "--out", str(out), "--no-cache") as c:
            calls: list[tuple[str, dict[str, Any]]] = [
                ("click", {"target": {"x": 5, "y": 5}, "buton": "right"}),  # misspelt: not a left click
                ("back", {"now": True}),
                ("key", {"keys": "ctrl+"}),
                ("key", {"keys": []}),
            ]
            for name, arguments in calls:
                result = await c.call_tool(name, arguments)
                assert result.is_error, (name, result)
                answers.append(text(result))
            answers.append(text(await c.call_tool("key", {"keys": ["ctrl", "s"]})))

    run(scenario)
    assert answers == [
        "click: bad arguments: buton: not an argument (it takes: target, button)",
        "back: bad arguments: now: not an argument (it takes: none)",
        "key: The key combination 'ctrl+' ends with '+' and no key after it; "
        "write 'ctrl++' or 'ctrl+plus' for the plus key.",
        "key: give key names, like 'ctrl+s' or 'Return'",
        "pressed ctrl+s",
    ]
    (step,) = load_run(out).steps  # only the key that was pressed
    assert step.actions[0].call == "key('ctrl+s')" and step.actions[0].executed
