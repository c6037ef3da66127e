"""A phone named twice would get two workers tapping over each other: refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.settings import Settings, SettingsError


def test_a_serial_given_twice_is_refused() -> None:
    with pytest.raises(SettingsError, match="emulator-5554 given more than once"):
        Settings.from_options({"env": "android", "serial": ["emulator-5554", "R58M", "emulator-5554"]})
    settings = Settings.from_options({"env": "android", "serial": ["emulator-5554", "R58M"]})
    assert settings.serial == ("emulator-5554", "R58M")


def test_bench_with_a_repeated_serial_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "examples/suites/sandbox.yaml", "--env", "android", "--serial", "X", "--serial", "X"]
    with pytest.raises(SystemExit) as exc_info:
        raise SystemExit(
            main([*argv, "--model", "replay:examples/replay/sandbox-demo.jsonl", "--out", str(out)])
        )
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    assert "X given more than once" in err and "Traceback" not in err
    assert not out.exists()
