"""benchmarks/gpu_check.py: every stage bounded in time, and a machine that cannot run the GPU stages told why."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_check  # type: ignore[import-not-found]

# A stage whose child leaves a grandchild running, holding the log open, and says its pid.
STUBBORN = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "print('grandchild', child.pid, flush=True); time.sleep(120)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_a_stage_over_its_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    stage = gpu_check.Stage("stubborn", [sys.executable, "-c", STUBBORN], timeout_s=2)
    gpu_check.run_stage(stage, tmp_path, dict(os.environ), time.monotonic() + 60)
    assert stage.status == "timed out after 2 s"
    log = (tmp_path / "stubborn.log").read_text()
    grandchild = int(log.split("grandchild")[1].split()[0])
    for _ in range(50):
        if not alive(grandchild):
            break
        time.sleep(0.1)
    assert not alive(grandchild)


def test_a_stage_is_skipped_when_the_run_has_no_time_left(tmp_path: Path) -> None:
    stage = gpu_check.Stage("late", [sys.executable, "-c", "print('ran')"], timeout_s=60)
    gpu_check.run_stage(stage, tmp_path, dict(os.environ), time.monotonic() + 5)
    assert stage.status == "skipped (no time left)"
    assert not (tmp_path / "late.log").exists()


def test_a_cpu_build_of_torch_fails_the_environment_and_skips_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    if torch.version.cuda is not None:
        pytest.skip("this torch is a CUDA build")
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary] == ["env", "gpu_tests", "bench_model"]
    assert summary[0].split()[1:3] == ["failed", "(exit"]
    assert all("skipped (the environment cannot run it)" in line for line in summary[1:])
    env_log = (tmp_path / "env.log").read_text()
    assert "is a CPU build: run this with the python of a CUDA build of torch" in env_log
    assert "pydantic" in env_log and "MISSING" not in env_log


def test_the_summary_repeats_the_paths_bench_model_finished(tmp_path: Path) -> None:
    (tmp_path / "rows.json").write_text('{"stock": {"vision_ms": 400.25, "step_ms": 2500}}')
    lines = gpu_check.bench_summary(tmp_path / "rows.json")
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["vision_ms"] == ["400.2", "-"] and rows["step_ms"] == ["2500.0", "-"]
    assert rows["peak_gib"] == ["-", "-"]
    assert gpu_check.bench_summary(tmp_path / "missing.json") == []


def test_every_stage_runs_in_order_and_the_summary_says_how_each_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = '{"stock": {"step_ms": 2500.0}, "screenpilot": {"step_ms": 350.0}}'

    def stages(args: object, out: Path) -> list[object]:
        write = f"import pathlib; pathlib.Path({str(out / 'bench_model.json')!r}).write_text({rows!r})"
        return [
            gpu_check.Stage("env", [sys.executable, "-c", "print('gpu: fake')"], 30),
            gpu_check.Stage("gpu_tests", [sys.executable, "-c", "raise SystemExit(3)"], 30),
            gpu_check.Stage("bench_model", [sys.executable, "-c", write], 30),
        ]

    monkeypatch.setattr(gpu_check, "stages", stages)
    assert gpu_check.main(["--out", str(tmp_path)]) == 1  # one stage failed
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert [line.split()[:2] for line in summary[:3]] == [
        ["env", "passed"],
        ["gpu_tests", "failed"],
        ["bench_model", "passed"],
    ]
    assert summary[1].split()[2] == "(exit"
    numbers = {line.split()[0]: line.split()[1:] for line in summary[4:]}
    assert numbers["step_ms"] == ["2500.0", "350.0"] and numbers["vision_ms"] == ["-", "-"]
    assert (tmp_path / "env.log").read_text() == "gpu: fake\n"
