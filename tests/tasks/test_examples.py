"""The example suites, end to end through ``screenpilot bench``: Android against the fake ADB server (adbutils
unchanged), the desktop one in a real Xvfb sandbox with the Tk demo app. Checks read the real state."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from screenpilot.cli.main import main
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone
from screenpilot.tasks.runner import read_results

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "suites"


def load_fake_phone() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fake_phone", EXAMPLES / "fake_phone.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def phone(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePhone]:
    phone: FakePhone = load_fake_phone().make_phone()
    with FakeAdbServer([phone]) as server:
        for key, value in server.environ.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        yield phone


def results(out: Path) -> dict[str, dict[str, Any]]:
    return {r["task"]: r for r in read_results(out)}


def test_android_example_suite_on_the_fake_phone(tmp_path: Path, phone: FakePhone) -> None:
    out = tmp_path / "android"
    code = main(
        [
            "bench",
            str(EXAMPLES / "android.yaml"),
            "--env",
            "android",
            "--answer-action",
            "--model",
            f"replay:{EXAMPLES / 'android.replay.jsonl'}",
            "--out",
            str(out),
            "--no-progress",
            "--no-settle",
        ]
    )
    assert code == 0
    lines = results(out)
    assert {t: r["success"] for t, r in lines.items()} == {
        "wifi-off": True,
        "open-clock": True,
        "shopping-second-item": True,
        "search-battery": True,
    }
    assert all(r["error"] is None for r in lines.values())
    # What reached the phone: setup, the agent's actions, the checks' reads, teardown.
    ran = phone.ran
    assert "svc wifi enable" in ran
    assert "monkey -p com.android.settings -c android.intent.category.LAUNCHER 1" in ran
    assert "input tap 969 620" in ran
    assert "settings get global wifi_on" in ran
    assert "input text battery" in ran
    assert "rm -f /sdcard/Documents/shopping.txt" in ran
    assert lines["wifi-off"]["check"]["detail"] == "$ settings get global wifi_on: '0' == '0'"
    manifest = json.loads((out / "manifest.json").read_text())
    (device,) = manifest["devices"]
    assert device["env"]["serial"] == "emulator-5554"
    assert (device["screen"], device["model_image"]) == ("1080x2400", "1092x2408")
    report = (out / "report.html").read_text()
    assert "$ svc wifi enable (" in report  # the setup log
    assert "settings get global wifi_on: &#39;0&#39; == &#39;0&#39;" in report


def test_android_check_fails_when_the_state_disagrees(tmp_path: Path, phone: FakePhone) -> None:
    """The agent taps somewhere else and claims success: Wi-Fi is still on, so the task failed."""
    replay = tmp_path / "replay.jsonl"
    wrong = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1500]}}\n</tool_call>'
    done = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    replay.write_text(json.dumps({"output": wrong}) + "\n" + json.dumps({"output": done}) + "\n")
    out = tmp_path / "out"
    args = ["bench", str(EXAMPLES / "android.yaml"), "--env", "android", "--task", "wifi-off"]
    args += ["--model", f"replay:{replay}", "--out", str(out), "--no-progress", "--no-settle", "--no-report"]
    assert main(args) == 0
    line = results(out)["wifi-off"]
    assert (line["success"], line["agent_status"], line["error"]) == (False, "success", None)
    assert line["check"]["detail"] == "$ settings get global wifi_on: '1' != '0'"


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="the sandbox needs Xvfb")
def test_sandbox_example_suite_with_the_demo_app(tmp_path: Path) -> None:
    out = tmp_path / "sandbox"
    args = ["bench", str(EXAMPLES / "sandbox.yaml"), "--env", "sandbox", "--jobs", "2"]
    args += ["--model", f"replay:{EXAMPLES / 'sandbox.replay.jsonl'}", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    lines = results(out)
    assert {t: r["success"] for t, r in lines.items()} == {
        "send-greeting": True,
        "double-click-pad": True,
        "scroll-pad": True,
    }
    assert "events since start: ready" in lines["double-click-pad"]["check"]["detail"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {d["worker"] for d in manifest["devices"]} == {0, 1}
    assert {d["model_image"] for d in manifest["devices"]} == {"1288x812"}


def test_two_phones_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--serial`` twice: worker i drives phone i, and both phones do real work."""
    fake_phone = load_fake_phone()
    phones = [fake_phone.make_phone("emulator-5554"), fake_phone.make_phone("emulator-5556")]
    with FakeAdbServer(phones) as server:
        for key, value in server.environ.items():
            monkeypatch.setenv(key, value)
        out = tmp_path / "out"
        args = ["bench", str(EXAMPLES / "android.yaml"), "--env", "android", "--answer-action"]
        args += ["--serial", "emulator-5554", "--serial", "emulator-5556", "--trials", "2"]
        args += ["--model", f"replay:{EXAMPLES / 'android.replay.jsonl'}", "--out", str(out)]
        assert main([*args, "--no-progress", "--no-settle", "--no-report"]) == 0
    lines = read_results(out)
    assert len(lines) == 8 and all(r["success"] for r in lines)
    assert {r["worker"] for r in lines} == {0, 1}
    for phone in phones:
        assert any(c.startswith("input ") for c in phone.ran)
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(d["env"]["serial"] for d in manifest["devices"]) == ["emulator-5554", "emulator-5556"]
