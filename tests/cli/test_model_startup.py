"""The model is checked once, before the first episode: a dead server, a model the server does not serve or a
model that is not on disk is one line and exit 2 from run, bench and eval, and nothing runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model.openai_server import ScriptedServer


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "screenpilot", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path.cwd())},
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("screenpilot: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.parametrize("served", [[], ["--served-model", "qwen"]])
def test_run_against_a_dead_server_without_a_scheme_fails_at_once(tmp_path: Path, served: list[str]) -> None:
    url = f"127.0.0.1:{_dead_port()}/v1"  # no http://: still a server, never a hub id
    proc = _cli(
        "run", "t", "--env", "fake", "--model", url, *served, "--out", str(tmp_path / "r"), cwd=tmp_path
    )
    line = _one_line_error(proc)
    assert f"http://{url}" in line
    assert "start the model server" in line
    assert not (tmp_path / "r" / "result.json").exists()


def test_bench_does_not_run_episodes_against_a_model_the_server_does_not_serve(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("tasks:\n  - {id: a, goal: g, env: android, success: {answer: {exact: x}}}\n")
    with ScriptedServer(models=("Qwen/Qwen2.5-VL-7B-Instruct",)) as server:
        proc = _cli(
            "bench",
            str(suite),
            "--env",
            "fake",
            "--model",
            server.url,
            "--served-model",
            "qwen-typo",
            "--out",
            str(tmp_path / "out"),
            cwd=tmp_path,
        )
        assert server.posts == []
    line = _one_line_error(proc)
    assert "qwen-typo" in line and "Qwen/Qwen2.5-VL-7B-Instruct" in line
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_eval_against_a_dead_server_is_a_setup_error(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"image": "x.png", "instruction": "i", "bbox": [0, 0, 1, 1]}\n')
    url = f"http://127.0.0.1:{_dead_port()}/v1"
    proc = _cli("eval", "grounding", str(data), "--model", url, cwd=tmp_path)
    assert url in _one_line_error(proc)


def test_a_local_model_that_is_not_on_disk_offline_names_the_download(tmp_path: Path) -> None:
    proc = _cli("run", "t", "--env", "fake", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", cwd=tmp_path)
    line = _one_line_error(proc)
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in line and "download" in line
