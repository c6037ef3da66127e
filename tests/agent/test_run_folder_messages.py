"""A run folder that cannot be used is refused in words that fit a Python caller as well as the CLI: they name
"the run folder", not a command-line option, and nothing in it is touched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import screenpilot
from screenpilot.agent.folders import given_run_folder
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import SetupError
from screenpilot.model.replay import ReplayModel


def test_a_full_folder_and_a_file_are_refused_as_the_run_folder(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(
        SetupError,
        match=f"^the run folder {re.escape(str(full))} already exists and is not empty; choose a new",
    ):
        given_run_folder(full)
    file = tmp_path / "file"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(
        SetupError,
        match=f"^the run folder {re.escape(str(file))} is a file, not a folder; choose a new folder",
    ):
        given_run_folder(file)
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]


def test_connect_from_python_does_not_speak_of_a_command_line_option(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SetupError) as caught:
        screenpilot.connect(FakeEnv(), model=ReplayModel([]), out=tmp_path, cache=False, quiet=True)
    assert "--out" not in str(caught.value) and "the run folder" in str(caught.value)
