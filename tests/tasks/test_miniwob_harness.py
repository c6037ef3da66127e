"""MiniWoB++ pages in Chromium on a sandbox, checked with a model that reads the DOM: if zoom, screen mapping or
reward reading were wrong, it could not solve the single-step tasks, or its clicks would land off target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("miniwob")
pytest.importorskip("selenium")
if not (shutil.which("chromedriver") and shutil.which("chromium") and shutil.which("Xvfb")):
    pytest.skip("needs chromium, chromium-driver and Xvfb", allow_module_level=True)

from screenpilot.tasks.miniwob import load_miniwob_suite
from screenpilot.tasks.runner import BenchSettings, read_results, run_suite
from tests.tasks.miniwob_oracle import OracleSource, RecordingSource

#: The single-step click, focus and type tasks (typing: click the box, type, click Submit).
TASKS = (
    "click-test",
    "click-test-2",
    "click-button",
    "click-link",
    "click-dialog",
    "click-dialog-2",
    "focus-text",
    "focus-text-2",
    "enter-text",
)
TRIALS = 3  # seeds 7, 8, 9


def _within(aim: tuple[float, float], landed: list[float], zoom: int) -> float:
    return max(abs(aim[0] - landed[0] * zoom), abs(aim[1] - landed[1] * zoom))


def test_a_dom_reading_model_solves_the_single_step_tasks(tmp_path: Path) -> None:
    suite = load_miniwob_suite("miniwob:" + ",".join(TASKS))
    envs = RecordingSource()
    models = OracleSource(envs)
    settings = BenchSettings(trials=TRIALS, jobs=2, seed=7, progress=False, dialect="qwen2.5-vl")
    outcome = run_suite(suite, tmp_path, envs, models, settings)

    lines = read_results(tmp_path)
    assert len(lines) == len(TASKS) * TRIALS and outcome.exit_status == 0
    assert envs.built == 2  # one sandbox and browser per worker, kept for every episode
    failed = [
        f"{r['task']} seed {r['task_result']['seed']}: {r['error'] or r['check']['detail']}"
        for r in lines
        if not r["success"]
    ]
    assert len(failed) <= 0.1 * len(lines), f"failed: {failed}"

    zoom = suite.info["zoom"]
    by_episode = {(r["task"], r["task_result"]["seed"]): r["task_result"] for r in lines}
    off = []
    for aim in models.aims:
        landed = by_episode[(aim["task"], aim["seed"])]["landed"]
        error = min((_within(aim["aim"], p, zoom) for p in landed), default=float("inf"))
        if error > 2:
            off.append(f"{aim['task']} seed {aim['seed']}: {error:.1f} px off")
    assert not off and len(models.aims) >= len(lines), off

    first = lines[0]["task_result"]
    assert first["utterance"] and first["time_limit_s"] > 0 and "raw_reward" in first
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["suite"]["zoom"] == 3 and manifest["suite"]["screen"] == "480x630"
