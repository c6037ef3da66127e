"""`screenpilot run` with a local transformers checkpoint (a tiny random Qwen2.5-VL built here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from screenpilot.agent.record import load_run
from tests.cli.test_cli import sp

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.model.tiny_qwen import build_tiny_qwen25vl

    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny"))


def test_run_with_a_local_model_records_its_raw_outputs(tiny_dir: Path, tmp_path: Path) -> None:
    out = sp(
        "run", "Open Settings", "--env", "fake", "--model", str(tiny_dir), "--device", "cpu",
        "--min-pixels", "3136", "--max-pixels", str(200 * 28 * 28), "--max-new-tokens", "8",
        "--max-steps", "2", "--max-retries", "0", "--cache-implementation", "static",
        "--out", str(tmp_path / "run"), "--no-settle",
    )  # fmt: skip
    # Random weights answer gibberish: the episode ends as a failure, not a crash.
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    run = load_run(tmp_path / "run")
    assert run.result is not None and run.result.reason in ("too_many_errors", "max_steps")
    assert all(len(step.outputs) == 1 for step in run.steps) and run.steps
    decoding = run.meta["model"]["decoding"]
    assert decoding["cache_implementation"] == "static"
    assert run.meta["model"]["max_pixels"] == 200 * 28 * 28
    assert run.steps[0].model_screen == (252, 588)
