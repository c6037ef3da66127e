"""The sandbox starts its app with the interpreter that runs screenpilot, and a broken app command is a setup
error that names the command and what it printed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from screenpilot.envs.desktop import SandboxEnv
from screenpilot.envs.desktop.sandbox import AppStartError
from screenpilot.errors import SetupError


def test_python3_in_an_app_command_is_the_interpreter_running_screenpilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another python3 first on PATH, as on a machine where screenpilot lives in a virtual environment.
    decoy = tmp_path / "bin"
    decoy.mkdir()
    (decoy / "python3").write_text("#!/bin/sh\necho 'not the interpreter running screenpilot' >&2\nexit 7\n")
    (decoy / "python3").chmod(0o755)
    monkeypatch.setenv("PATH", f"{decoy}{os.pathsep}{os.environ['PATH']}")
    with SandboxEnv(app="python3 -m screenpilot.envs.desktop.demo_app") as env:
        env.reset()
        assert env.app_running
        result = env.shell("python3 -c 'import sys; print(sys.executable)'")
    assert Path(result.output.strip()).resolve() == Path(sys.executable).resolve()


def test_an_app_that_exits_at_once_is_a_setup_error_naming_it() -> None:
    command = "python3 -m screenpilot.no_such_module"
    with SandboxEnv(app=command) as env, pytest.raises(AppStartError) as exc_info:
        env.reset()
    message = str(exc_info.value)
    assert isinstance(exc_info.value, SetupError)
    assert command in message
    assert "No module named screenpilot.no_such_module" in message
    assert "\n" not in message
