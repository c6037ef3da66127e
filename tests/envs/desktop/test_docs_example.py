"""docs/desktop.md's "Using them from Python" example, extracted and run as a script, as a reader would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def python_example() -> str:
    text = (ROOT / "docs" / "desktop.md").read_text(encoding="utf-8")
    section = text.split("\n## Using them from Python\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"^```python\n(.*?)^```$", section, re.M | re.S)
    return block


def test_the_desktop_docs_example_runs_and_prints_the_window_name(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(python_example(), encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # python3: the venv's
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PATH": path},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "screenpilot demo\n\n", (proc.stdout, proc.stderr)
