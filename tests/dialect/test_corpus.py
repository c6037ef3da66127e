"""The held-out corpus (corpus.yaml): realistic answers, each with the actions it gives or the error it raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from screenpilot.actions.coords import Size
from screenpilot.actions.types import action_to_dict
from screenpilot.errors import ModelOutputError
from screenpilot.model.qwen25vl import Qwen25VLDialect

CASES = yaml.safe_load((Path(__file__).parent / "corpus.yaml").read_text(encoding="utf-8"))
SHOWN_AS_IS = {"mobile_use": "1092x2408", "computer_use": "2548x1428"}


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)
    assert all(("actions" in case) != ("error" in case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_corpus(case):
    tool = case.get("tool", "mobile_use")
    dialect = Qwen25VLDialect(tool, **case.get("options", {}))
    space = dialect.coordinate_space(Size.parse(case.get("screen", SHOWN_AS_IS[tool])))
    if "error" in case:
        with pytest.raises(ModelOutputError) as info:
            dialect.parse(case["text"], space)
        assert case["error"] in str(info.value)
        return
    parsed = dialect.parse(case["text"], space)
    assert [action_to_dict(p.device) for p in parsed] == case["actions"]
    assert all(json.loads(p.call)["name"] == tool for p in parsed)
    if "summary" in case:
        assert dialect.summary(case["text"]) == case["summary"]
