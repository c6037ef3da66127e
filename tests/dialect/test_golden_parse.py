"""Recorded raw model outputs, good and malformed, parsed against expected device-pixel actions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import action_to_dict
from screenpilot.errors import ModelOutputError
from screenpilot.model.qwen25vl import Qwen25VLDialect

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))


def test_every_golden_file_has_a_case():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    case = CASES[name]
    text = (GOLDEN / f"{name}.txt").read_text(encoding="utf-8")
    dialect = Qwen25VLDialect(case["tool"], **case.get("options", {}))
    space = dialect.coordinate_space(Size.parse(case["screen"]))
    if "error" in case:
        with pytest.raises(ModelOutputError) as info:
            dialect.parse(text, space)
        assert case["error"] in str(info.value)
        return
    parsed = dialect.parse(text, space)
    assert [action_to_dict(p.device) for p in parsed] == case["actions"]
    if "summary" in case:
        assert dialect.summary(text) == case["summary"]
    for p in parsed:
        call = json.loads(p.call)
        assert call["name"] == case["tool"] and isinstance(call["arguments"], dict)
