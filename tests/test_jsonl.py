"""JSON Lines input: replay files and data files name the bad line, every bad line, and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.jsonl import MAX_LISTED_PROBLEMS, read_lines, read_objects
from screenpilot.model.replay import ReplayModel

ANSWER = json.dumps({"output": "<tool_call>{}</tool_call>"}).encode()


def test_non_utf8_replay_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(ANSWER + b"\n" + b'{"output": "caf\xe9"}\n' + ANSWER + b"\n")
    with pytest.raises(SetupError) as info:
        ReplayModel.from_path(path)
    assert str(info.value) == f"{path}:2: not UTF-8 text (byte 0xe9 at column 16)"


def test_non_utf8_replay_file_is_one_line_from_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"\xff\xfe" + ANSWER + b"\n")
    assert main(["run", "a task", "--env", "fake", "--model", f"replay:{path}"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"\nscreenpilot: error: {path}:1: not UTF-8 text (byte 0xff at column 1)\n")
    assert "Traceback" not in err and err.count("error") == 1


def test_every_bad_replay_line_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(
        b"\n".join([ANSWER, b"not json", b"[1, 2]", b'{"output": 3}', b'{"output": "x", "task": 1}', b"\x80"])
    )
    with pytest.raises(SetupError) as info:
        ReplayModel.from_path(path)
    lines = str(info.value).split("\n")
    assert lines[0] == f"5 problems in {path}:"
    assert [line.strip().split(": ", 1)[0] for line in lines[1:]] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]


def test_long_problem_lists_are_cut_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("oops\n" * (MAX_LISTED_PROBLEMS + 7))
    with pytest.raises(SetupError) as info:
        read_objects(path)
    text = str(info.value)
    assert text.startswith(f"{MAX_LISTED_PROBLEMS + 7} problems in {path}:")
    assert text.endswith("... and 7 more") and text.count("not JSON") == MAX_LISTED_PROBLEMS


def test_deeply_nested_line_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(SetupError, match=r"data\.jsonl:1: not JSON"):
        read_objects(path)


def test_read_lines_drops_a_tail_torn_inside_a_character(tmp_path: Path) -> None:
    """The shape of a results file whose writer died mid-line: the torn tail is never decoded."""
    path = tmp_path / "results.jsonl"
    path.write_bytes('{"task": "ü"}\n'.encode() + '{"task": "ü'.encode()[:-1])
    assert read_lines(path, drop_torn_tail=True) == [(1, '{"task": "ü"}')]
    with pytest.raises(SetupError, match=r"results\.jsonl:2: not UTF-8 text"):
        read_lines(path)
    path.write_bytes(b'{"task": "a"}\n\xc3\x28\n')
    with pytest.raises(SetupError, match=r"results\.jsonl:2: not UTF-8 text \(byte 0xc3 at column 1\)"):
        read_lines(path, drop_torn_tail=True)


def test_a_folder_is_not_a_data_file(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="is a folder"):
        read_objects(tmp_path)


def test_a_byte_order_mark_is_not_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "replay.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + ANSWER + b"\n" + ANSWER + b"\n")
    assert ReplayModel.from_path(path).remaining() == 2
