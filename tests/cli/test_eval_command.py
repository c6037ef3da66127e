"""``screenpilot eval`` as users call it, around the evaluation itself: where its output goes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from PIL import Image

from screenpilot.cli.suite_commands import _write_json
from tests.tasks.test_evaluate import mobile, write_jsonl


def test_results_are_written_when_nobody_reads_the_table(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    rows = [{"id": f"g{i}", "image": "a.png", "instruction": "tap", "bbox": [0, 0, 60, 60]} for i in range(3)]
    data = write_jsonl(tmp_path / "g.jsonl", rows)
    answers = write_jsonl(
        tmp_path / "answers.jsonl", [{"output": mobile(action="click", coordinate=[50, 50])}] * 3
    )
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "screenpilot",
        "eval",
        "grounding",
        str(data),
        "--model",
        f"replay:{answers}",
    ]
    read, write = os.pipe()
    os.close(read)  # the table goes nowhere, as into `| head -0`
    try:
        done = subprocess.run([*cmd, "--out", str(out)], stdout=write, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 128 + signal.SIGPIPE
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["finished"], report["hits"]) == (3, 3)


def test_results_go_through_a_symlink_and_the_link_stays(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("old", encoding="utf-8")
    link = tmp_path / "results.json"
    link.symlink_to(target)
    _write_json(link, {"hits": 3})
    assert link.is_symlink() and json.loads(target.read_text(encoding="utf-8")) == {"hits": 3}
    dangling = tmp_path / "later.json"
    dangling.symlink_to(tmp_path / "made" / "now.json")
    _write_json(dangling, {"hits": 1})
    assert dangling.is_symlink() and json.loads((tmp_path / "made" / "now.json").read_text()) == {"hits": 1}


def test_results_to_a_device_are_written_through_it(tmp_path: Path) -> None:
    _write_json(Path(os.devnull), {"hits": 3})
    assert Path(os.devnull).is_char_device()
