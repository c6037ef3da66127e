"""benchmarks/bench_model.py runs both paths side by side on the CPU with the tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.model.conftest import TEST_MAX_PIXELS, TEST_MIN_PIXELS

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def test_prints_stock_and_screenpilot_side_by_side(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import bench_model  # type: ignore[import-not-found]

    argv = ["--random", "tiny", "--device", "cpu", "--new-tokens", "4", "--repeats", "1"]
    argv += ["--json", str(tmp_path / "rows.json")]
    limits = ["--min-pixels", str(TEST_MIN_PIXELS), "--max-pixels", str(TEST_MAX_PIXELS)]
    assert bench_model.main(argv + limits) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "stock" in line and "screenpilot" in line)
    assert header.split() == ["stock", "screenpilot", "ratio"]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and line.split()}
    for key in ("vision_ms", "prefill_ms", "decode_ms_per_token", "step_ms", "prompt3_first_step_ms"):
        stock, ours, ratio = (float(cell) for cell in rows[key])
        assert stock > 0 and ours > 0 and ratio == pytest.approx(stock / ours, rel=0.1, abs=0.1)
    assert rows["image_tokens"] == ["189", "189"]
    for key in ("prompt_tokens", "output_tokens", "prompt2_tokens", "prompt3_tokens"):  # the same work
        assert rows[key][0] == rows[key][1]
    assert int(rows["prompt2_tokens"][0]) > int(rows["prompt_tokens"][0])
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert list(saved) == ["stock", "screenpilot"]
    assert saved["stock"]["fast_paths"]["batched_vision"] == "off: asked"
    assert saved["screenpilot"]["vision_ms"] == pytest.approx(float(rows["vision_ms"][1]), abs=0.06)
    assert rows["batched_vision"] == ["on"] and rows["reuse_system_kv"] == ["on"]
    assert rows["decode_graphs"][0] == "off:"
