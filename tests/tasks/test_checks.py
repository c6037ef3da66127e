"""Success checks read the real state: a shell, files, the screen's text, the agent's answer, Python code."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from screenpilot.agent.loop import EpisodeResult
from screenpilot.envs.base import ShellResult, SupportsFiles
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import DeviceError
from screenpilot.tasks.checks import CheckContext, CheckError, evaluate, normalize_text
from screenpilot.tasks.suite import Check, Task
from tests.tasks.fakes import ShellFakeEnv

CHECK: TypeAdapter[Any] = TypeAdapter(Check)


def context(tmp_path: Path, env: Any = None, answer: str | None = None) -> CheckContext:
    env = env or ShellFakeEnv(tmp_path / "device")
    env.reset()
    task = Task.model_validate(
        {"id": "t", "goal": "g", "env": "android", "success": {"answer": {"exact": "x"}}}
    )
    result = EpisodeResult(goal="g", status="success", reason="answered", steps=1, answer=answer)
    return CheckContext(task, env, result, tmp_path / "run", tmp_path)


def check(spec: dict[str, Any], ctx: CheckContext) -> bool:
    return evaluate(CHECK.validate_python(spec), ctx).passed


def test_shell_checks_compare_output_and_exit_code(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert check({"shell": "echo ' 0 '", "equals": "0"}, ctx)
    assert not check({"shell": "echo 1", "equals": "0"}, ctx)
    assert check({"shell": "echo Wi-Fi is ON", "contains": "on", "ignore_case": True}, ctx)
    assert not check({"shell": "echo Wi-Fi is ON", "contains": "on"}, ctx)
    assert check({"shell": "echo version 12.3", "regex": r"version \d+\.\d"}, ctx)
    assert check({"shell": "true"}, ctx)  # no matcher: exit code 0 is the check
    assert not check({"shell": "false"}, ctx)
    assert check({"shell": "echo x; exit 3", "exit_code": 3, "equals": "x"}, ctx)
    assert not check({"shell": "echo x; exit 0", "exit_code": 3, "equals": "x"}, ctx)
    outcome = evaluate(CHECK.validate_python({"shell": "echo 1", "equals": "0"}), ctx)
    assert outcome.detail == "$ echo 1: '1' != '0'"


def test_file_checks_read_the_environment(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    (tmp_path / "device" / "sdcard").mkdir()
    (tmp_path / "device" / "sdcard" / "list.txt").write_text("milk\neggs\n")
    assert check({"file": "/sdcard/list.txt", "contains": "eggs"}, ctx)
    assert check({"file": "/sdcard/list.txt", "exists": True}, ctx)
    assert not check({"file": "/sdcard/list.txt", "exists": False}, ctx)
    assert not check({"file": "/sdcard/none.txt", "exists": True}, ctx)
    assert check({"file": "/sdcard/none.txt", "exists": False}, ctx)
    assert not check({"file": "/sdcard/none.txt", "contains": "milk"}, ctx)


def test_screen_text_and_answers(tmp_path: Path) -> None:
    env = ShellFakeEnv(tmp_path / "device")
    env.text = "Alarm set for 7:30 AM"
    ctx = context(tmp_path, env, answer="  The answer is 42. ")
    assert check({"screen_text": {"contains": "7:30"}}, ctx)
    assert not check({"screen_text": {"contains": "8:00"}}, ctx)
    assert check({"screen_text": {"regex": r"\d+:\d+ (AM|PM)"}}, ctx)
    assert check({"answer": {"regex": r"\b42\b"}}, ctx)
    assert check({"answer": {"normalized": "the ANSWER is 42"}}, ctx)
    assert not check({"answer": {"exact": "the answer is 42."}}, ctx)
    assert check({"answer": {"exact": "the answer is 42.", "ignore_case": True}}, ctx)
    assert not check({"answer": {"normalized": "42"}}, context(tmp_path, answer=None))
    assert normalize_text("  «Ｈｅｌｌｏ»   World! ") == "«hello» world"


def test_composition_and_python_checks(tmp_path: Path) -> None:
    (tmp_path / "checks_for_ctx.py").write_text(
        "def has_answer(ctx, want):\n"
        "    return ctx.answer == want, f'answer {ctx.answer!r}'\n"
        "def shell_says(ctx):\n"
        "    return ctx.shell('echo yes').output.strip() == 'yes'\n"
        "def broken(ctx):\n"
        "    raise ValueError('no such widget')\n"
        "def wrong_type(ctx):\n"
        "    return 'yes'\n"
    )
    ctx = context(tmp_path, answer="blue")
    good = {"python": "checks_for_ctx:has_answer", "args": {"want": "blue"}}
    bad = {"python": "checks_for_ctx:has_answer", "args": {"want": "red"}}
    assert check(good, ctx)
    assert not check(bad, ctx)
    assert check({"python": "checks_for_ctx:shell_says"}, ctx)
    assert check({"all": [good, {"shell": "true"}]}, ctx)
    assert not check({"all": [good, bad]}, ctx)
    assert check({"any": [bad, good]}, ctx)
    assert check({"not": bad}, ctx)
    outcome = evaluate(CHECK.validate_python({"any": [bad, good]}), ctx)
    assert [c.passed for c in outcome.children] == [False, True]
    assert outcome.to_dict()["children"][0]["detail"] == "checks_for_ctx:has_answer: answer 'blue'"

    # A check that cannot run is an error, never a "no": `not` must not turn it into a pass.
    with pytest.raises(CheckError, match="raised ValueError: no such widget"):
        check({"not": {"python": "checks_for_ctx:broken"}}, ctx)
    with pytest.raises(CheckError, match="must return a bool"):
        check({"python": "checks_for_ctx:wrong_type"}, ctx)


def test_missing_capabilities_are_errors(tmp_path: Path) -> None:
    ctx = context(tmp_path, FakeEnv())
    with pytest.raises(CheckError, match="cannot run shell commands"):
        check({"shell": "true"}, ctx)
    with pytest.raises(CheckError, match="cannot read files"):
        check({"file": "/x", "exists": True}, ctx)
    with pytest.raises(CheckError, match="cannot read the text on its screen"):
        check({"screen_text": {"contains": "x"}}, ctx)


class ShellOnlyEnv(FakeEnv):
    """An environment that can run shell commands but cannot move files: checks read files through cat."""

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)
        return ShellResult(done.stdout + done.stderr, done.returncode)


def test_file_checks_through_a_shell_tell_missing_from_unreadable(tmp_path: Path) -> None:
    ctx = context(tmp_path, ShellOnlyEnv())
    assert not isinstance(ctx.env, SupportsFiles)
    present = tmp_path / "list.txt"
    present.write_text("milk\neggs\n")
    assert check({"file": str(present), "contains": "eggs"}, ctx)
    assert check({"file": str(present), "exists": True}, ctx)
    assert check({"file": str(tmp_path / "none.txt"), "exists": False}, ctx)
    assert not check({"file": str(tmp_path / "none.txt"), "exists": True}, ctx)
    # Something is there but cannot be read as a file: an error, never "missing" (`exists: false` would pass).
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CheckError, match=f"^cannot read {folder}: it is not a regular file$"):
        check({"file": str(folder), "exists": False}, ctx)
    unreadable = Path("/proc/self/mem")  # a regular file whose read fails, even for root
    if not unreadable.is_file():
        pytest.skip("no /proc/self/mem here to fail a read")
    with pytest.raises(CheckError, match=r"^cannot read /proc/self/mem: .*Input/output error$"):
        check({"not": {"file": str(unreadable), "exists": True}}, ctx)


class WordyErrorsEnv(ShellFakeEnv):
    """Files whose read fails with a DeviceError that merely says "not found" / "no such file"."""

    def read_file(self, remote: str) -> bytes:
        raise DeviceError(f"cannot read {remote}: the adb server was not found (no such file as its socket)")


def test_a_file_is_missing_by_the_error_type_never_by_its_words(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert isinstance(ctx.env, SupportsFiles)
    assert check({"file": "/nowhere.txt", "exists": False}, ctx)
    assert not check({"file": "/nowhere.txt", "exists": True}, ctx)
    (tmp_path / "device" / "folder").mkdir()
    with pytest.raises(CheckError, match=r"^cannot read /folder: "):
        check({"file": "/folder", "exists": False}, ctx)
    # A device failure that happens to use the words of a missing file is still an error, never "missing".
    wordy = context(tmp_path, WordyErrorsEnv(tmp_path / "wordy"))
    with pytest.raises(CheckError, match="adb server was not found"):
        check({"file": "/list.txt", "exists": False}, wordy)
