"""``screenpilot mcp`` without the ``mcp`` extra installed says what to install, in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from screenpilot.cli.main import main


def test_without_the_mcp_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` meets when the package is missing
    for name in [n for n in sys.modules if n.startswith("mcp.")]:  # imported by other tests in this process
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "screenpilot.session.mcp_server", raising=False)
    argv = ["mcp", "--env", "fake", "--model", "replay:answers.jsonl", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "screenpilot: error: screenpilot mcp needs the 'mcp' package: pip install 'screenpilot[mcp]'\n"
    )
    assert not (tmp_path / "run").exists()
