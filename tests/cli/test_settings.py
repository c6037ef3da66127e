"""Invalid settings are usage errors (exit 2, one line) before anything starts, on every subcommand."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.settings import MAX_SCREEN_SIDE, Settings, SettingsError

REPLAY = "replay:examples/replay/sandbox-demo.jsonl"


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc_info:
        code = main(argv)
        raise SystemExit(code)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    return lines[-1]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-pixels", "100"], "--max-pixels"),
        (["--min-pixels", "20000000"], "min_pixels (20000000) is larger than max_pixels"),
        (["--settle-timeout", "-1"], "--settle-timeout"),
        (["--screen-size", "100000x100000"], f"{MAX_SCREEN_SIDE}"),
        (["--screen-size", "1x1"], "--screen-size"),
        (["--max-seconds", "0"], "--max-seconds"),
        (["--serial", "emulator-5554"], "--serial applies only to --env android"),
        (["--monitor", "2"], "--monitor applies only to --env desktop"),
        (["--model", "  "], "--model"),
    ],
)
def test_run_refuses_bad_settings_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], needle: str
) -> None:
    out = tmp_path / "run"
    line = _usage_error(
        capsys, ["run", "task", "--env", "fake", "--model", REPLAY, "--out", str(out), *extra]
    )
    assert line.startswith("screenpilot: error:")
    assert needle in line
    assert not out.exists()


def test_an_empty_task_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _usage_error(
        capsys, ["run", "  ", "--env", "fake", "--model", REPLAY, "--out", str(tmp_path / "r")]
    )
    assert "must not be empty" in line


@pytest.mark.parametrize(
    ("env", "option", "value"),
    [
        ("android", "--app", "xterm"),
        ("android", "--screen-size", "800x600"),
        ("desktop", "--screen-size", "800x600"),
        ("fake", "--app", "xterm"),
        ("sandbox", "--serial", "x"),
    ],
)
def test_options_an_environment_does_not_use_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, env: str, option: str, value: str
) -> None:
    line = _usage_error(
        capsys, ["run", "t", "--env", env, "--model", REPLAY, "--out", str(tmp_path / "r"), option, value]
    )
    assert f"{option} applies only to" in line
    assert f"not --env {env}" in line


def test_prompt_and_bench_share_the_same_checks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    line = _usage_error(
        capsys, ["prompt", "--tool", "mobile_use", "--screen", "1080x2400", "--max-pixels", "100"]
    )
    assert "--max-pixels 100" in line
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - {id: a, goal: g, env: fake, success: {answer: {exact: x}}}\n")
    out = tmp_path / "bench"
    line = _usage_error(
        capsys,
        [
            "bench",
            str(suite),
            "--env",
            "fake",
            "--model",
            REPLAY,
            "--out",
            str(out),
            "--settle-timeout",
            "-1",
        ],
    )
    assert "--settle-timeout" in line
    assert not out.exists()


def test_every_problem_is_named_in_one_line() -> None:
    with pytest.raises(SettingsError) as exc_info:
        Settings.from_options({"max_steps": 0, "max_failed_steps": 0, "env": "fake"})
    message = str(exc_info.value)
    assert "--max-steps" in message and "--max-failed-steps" in message
    assert "\n" not in message


def test_an_unknown_option_gets_a_suggestion() -> None:
    with pytest.raises(SettingsError, match="did you mean 'max_steps'"):
        Settings.from_options({"max_step": 3})


def test_the_api_key_is_never_described(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    settings = Settings(model="http://localhost:8000/v1")
    assert settings.api_key_value == "sk-from-env"
    described = repr(settings.describe()) + repr(settings)
    assert "sk-from-env" not in described
    explicit = Settings(api_key="sk-given")
    assert "sk-given" not in repr(explicit.describe()) + repr(explicit)
    assert explicit.api_key_value == "sk-given"


def test_defaults_apply_to_options_not_given() -> None:
    settings = Settings.from_options({"env": "sandbox", "screen_size": "640x480"})
    assert settings.max_steps == 30 and settings.settle is True
    assert settings.screen_size == (640, 480)
    assert settings.model_fields_set == {"env", "screen_size"}
    assert settings.replace(max_steps=5).max_steps == 5


def test_a_password_in_a_server_address_is_never_recorded() -> None:
    from screenpilot.model.spec import redact_url
    from screenpilot.tasks.manifest import redact_argv

    url = "http://alice:s3cret@gpu-box:8000/v1"
    assert redact_url(url) == "http://REDACTED@gpu-box:8000/v1"
    assert redact_url("http://gpu-box:8000/v1") == "http://gpu-box:8000/v1"
    assert "s3cret" not in repr(Settings(model=url).describe())
    recorded = redact_argv(["bench", "--model", f"{url},http://bob:pw@other:8000/v1", "--api-key", "k"])
    assert "s3cret" not in repr(recorded) and ":pw@" not in repr(recorded) and "k" not in recorded[3:]
