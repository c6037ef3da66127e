"""The README's Quickstart: what it installs, and that the fonts it installs show what the demo types."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    """The fenced bash blocks of the README's Quickstart section, in order (what .ci/run executes)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```$", section, re.M | re.S)]


def apt_packages(command: str) -> set[str]:
    match = re.search(r"apt-get install -y ([^&]+)&&", command)
    assert match, command
    return set(match.group(1).split())


def test_there_are_two_commands_using_the_distribution_python_in_a_venv() -> None:
    demo, tests = quickstart_commands()
    for command in (demo, tests):
        assert "\n" not in command
        assert "/usr/bin/python3 -m venv .venv" in command
        assert {"python3-venv", "python3-tk", "xvfb", "xclip"} <= apt_packages(command)
    assert demo.endswith("--model replay:examples/replay/sandbox-demo.jsonl")
    assert tests.endswith("python -m pytest")


def test_the_demo_installs_no_torch() -> None:
    demo, _ = quickstart_commands()
    assert "torch" not in demo
    installed = re.search(r'pip install -e "\.\[([a-z,]+)\]"', demo)
    assert installed, demo
    extras = set(installed.group(1).split(","))
    assert extras.isdisjoint({"all", "local", "dev"})


def _typed_text() -> str:
    lines = (ROOT / "examples/replay/sandbox-demo.jsonl").read_text(encoding="utf-8").splitlines()
    typed = []
    for line in lines:
        output = json.loads(line)["output"]
        typed += re.findall(r'"text": "([^"]*)"', output)
    return "".join(typed)


@pytest.mark.skipif(shutil.which("fc-list") is None, reason="needs fontconfig (installed with the fonts)")
def test_installed_fonts_cover_every_character_the_demo_types() -> None:
    text = _typed_text()
    assert "世" in text  # the demo really types beyond Latin-1
    missing = []
    for char in sorted(set(text) - {" "}):
        fonts = subprocess.run(
            ["fc-list", f":charset={ord(char):x}", "family"], capture_output=True, text=True, check=True
        ).stdout
        if not fonts.strip():
            missing.append(char)
    assert not missing, f"no installed font has {missing}: install the Quickstart's font packages"
