"""The README's Scripting example, extracted and run as a script on the sandbox, as a reader would run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from screenpilot.agent.record import load_run
from tests.session.conftest import needs_x

ROOT = Path(__file__).resolve().parents[2]


def scripting_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Scripting\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)
    return block


@needs_x
def test_the_readme_scripting_example_runs(tmp_path: Path) -> None:
    (tmp_path / "examples" / "replay").mkdir(parents=True)
    shutil.copy(ROOT / "examples/replay/scripting-demo.jsonl", tmp_path / "examples/replay")
    script = tmp_path / "flow.py"
    script.write_text(scripting_example(), encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # python3: the venv's
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["the button says Send", "success 2"]
    (folder,) = (tmp_path / "runs").iterdir()
    run = load_run(folder)
    assert run.result is not None and run.result.status == "success"
    assert run.result.counts is not None and run.result.counts["model_calls"] == 7
    assert (
        "7 model calls; locators: 0 hits, 0 misses, 0 stores, 0 refused "
        f"(run folder: {Path('runs') / folder.name})" in proc.stderr
    )
