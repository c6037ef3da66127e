"""Offline evaluation scoring on small data files made here, with a replay model keyed by line id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Click, OpenApp, Swipe, SystemButton, Terminate, TypeText
from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.model.base import TextPart
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.evaluate import (
    evaluate_grounding,
    evaluate_steps,
    format_grounding,
    match_step,
    swipe_direction,
)


def mobile(**arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": "mobile_use", "arguments": arguments}) + "\n</tool_call>"


def desktop(**arguments: Any) -> str:
    return "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": arguments}) + "\n</tool_call>"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def grounding_data(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    Image.new("RGB", (1080, 2400), (200, 200, 200)).save(tmp_path / "img" / "phone.png")
    Image.new("RGB", (1920, 1080), (90, 90, 90)).save(tmp_path / "img" / "desk.png")
    rows = [
        # phone: model frame 1092x2408; box around (540, 1200) in device pixels
        {
            "id": "p-hit",
            "image": "img/phone.png",
            "instruction": "tap OK",
            "bbox": [500, 1150, 600, 1250],
            "group": "icon",
        },
        {
            "id": "p-miss",
            "image": "img/phone.png",
            "instruction": "tap Cancel",
            "bbox": [0, 0, 100, 100],
            "group": "icon",
        },
        {
            "id": "p-bad",
            "image": "img/phone.png",
            "instruction": "tap Help",
            "bbox": [0, 0, 100, 100],
            "group": "text",
        },
        {
            "id": "p-none",
            "image": "img/phone.png",
            "instruction": "tap Menu",
            "bbox": [0, 0, 100, 100],
            "group": "text",
        },
        # desktop: model frame 1932x1092; a click at model (966, 546) lands at device (960, 540)
        {
            "id": "d-hit",
            "image": "img/desk.png",
            "instruction": "click File",
            "bbox": [950, 530, 970, 550],
            "platform": "web",
            "group": "text",
        },
    ]
    return write_jsonl(tmp_path / "grounding.jsonl", rows)


GROUNDING_REPLAY: list[tuple[str | None, str]] = [
    ("p-hit", mobile(action="click", coordinate=[546, 1204])),
    ("p-miss", mobile(action="click", coordinate=[546, 1204])),
    ("p-bad", "I think it is the top left corner."),
    ("p-none", mobile(action="wait", time=1)),
    ("d-hit", desktop(action="left_click", coordinate=[966, 546])),
]


def test_grounding_scores_hits_misses_and_unparsable(grounding_data: Path) -> None:
    model = ReplayModel(GROUNDING_REPLAY, name="replay:grounding")
    report = evaluate_grounding(grounding_data, model)
    status = {i["id"]: i["status"] for i in report["items"]}
    assert status == {
        "p-hit": "hit",
        "p-miss": "miss",
        "p-bad": "unparsable",
        "p-none": "no_point",
        "d-hit": "hit",
    }
    assert (report["total"], report["hits"], report["unparsable"], report["no_point"]) == (5, 2, 1, 1)
    assert report["accuracy"] == pytest.approx(0.4)
    assert report["groups"] == {
        "icon": {"total": 2, "hits": 1, "accuracy": 0.5},
        "text": {"total": 3, "hits": 1, "accuracy": pytest.approx(1 / 3)},
    }
    hit = next(i for i in report["items"] if i["id"] == "p-hit")
    assert hit["point"] == [540, 1200]  # device = original image pixels
    assert next(i for i in report["items"] if i["id"] == "d-hit")["tool"] == "computer_use"

    # The model was asked in the native format: the tool schema at the resized size, then the instruction.
    system, user = model.calls[0]
    assert "The screen's resolution is 1092x2408." in system.content[0].text  # type: ignore[union-attr]
    assert user.content[0].text == "tap OK"  # type: ignore[union-attr]
    assert user.images[0].size == (1092, 2408)
    assert "overall" in format_grounding(report) and "unparsable answers: 1" in format_grounding(report)


def test_grounding_data_errors_name_the_line(tmp_path: Path) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    data = write_jsonl(
        tmp_path / "g.jsonl", [{"image": "a.png", "instruction": "x", "bbox": [10, 10, 5, 20]}]
    )
    with pytest.raises(SetupError, match=r"g\.jsonl:1: bbox .* has x2 < x1"):
        evaluate_grounding(data, ReplayModel([]))
    data = write_jsonl(
        tmp_path / "g.jsonl", [{"image": "missing.png", "instruction": "x", "bbox": [0, 0, 5, 5]}]
    )
    with pytest.raises(SetupError, match=r"g\.jsonl:1: cannot open image"):
        evaluate_grounding(data, ReplayModel([]))


SCREEN = Size(1080, 2400)


@pytest.mark.parametrize(
    ("predicted", "truth", "bbox", "type_ok", "step_ok"),
    [
        (Click(x=540, y=1200), Click(x=100, y=100), (500, 1150, 600, 1250), True, True),  # inside the box
        (Click(x=140, y=300), Click(x=100, y=100), None, True, True),  # 0.090 of the screen away
        (Click(x=400, y=600), Click(x=100, y=100), None, True, False),  # 0.347 away
        (Swipe(x=500, y=1800, x2=520, y2=600), Swipe(x=540, y=2000, x2=540, y2=400), None, True, True),
        (Swipe(x=500, y=600, x2=520, y2=1800), Swipe(x=540, y=2000, x2=540, y2=400), None, True, False),
        (TypeText(text=" Hello,  World! "), TypeText(text="hello, world"), None, True, True),
        (TypeText(text="hello word"), TypeText(text="hello world"), None, True, False),
        (OpenApp(app="google chrome"), OpenApp(app="Google-Chrome"), None, True, True),
        (SystemButton(button="home"), SystemButton(button="back"), None, True, False),
        (Terminate(status="success"), Terminate(status="success"), None, True, True),
        (Terminate(status="failure"), Terminate(status="success"), None, True, False),
        (Click(x=1, y=1), TypeText(text="x"), None, False, False),
        (None, Click(x=1, y=1), None, False, False),
    ],
)
def test_step_matching_rules(predicted: Any, truth: Any, bbox: Any, type_ok: bool, step_ok: bool) -> None:
    result = match_step(predicted, truth, SCREEN, bbox)
    assert (result.type_ok, result.step_ok) == (type_ok, step_ok), result.why


def test_swipe_direction() -> None:
    assert swipe_direction(0, 100, 0, 0) == "up"
    assert swipe_direction(0, 0, 0, 100) == "down"
    assert swipe_direction(100, 0, 0, 10) == "left"
    assert swipe_direction(0, 0, 100, -10) == "right"


def test_steps_evaluation_and_cli(tmp_path: Path) -> None:
    Image.new("RGB", (1080, 2400), (220, 220, 220)).save(tmp_path / "s.png")
    rows: list[dict[str, Any]] = [
        {
            "id": "a",
            "screenshot": "s.png",
            "goal": "Open Chrome",
            "action": {"action": "open", "text": "Chrome"},
        },
        {
            "id": "b",
            "screenshot": "s.png",
            "goal": "Search for cats",
            "instruction": "Tap the search box",
            "history": [{"action": "open", "text": "Chrome"}, {"action": "click", "coordinate": [540, 1200]}],
            "action": {"action": "click", "coordinate": [540, 300]},
            "bbox": [100, 250, 980, 350],
        },
        {"id": "c", "screenshot": "s.png", "goal": "Type", "action": {"action": "type", "text": "cats"}},
        {
            "id": "d",
            "screenshot": "s.png",
            "goal": "Go back",
            "action": {"action": "system_button", "button": "Back"},
        },
    ]
    data = write_jsonl(tmp_path / "steps.jsonl", rows)
    answers: list[tuple[str | None, str]] = [
        ("a", mobile(action="open", text="chrome")),
        ("b", mobile(action="click", coordinate=[900, 300])),  # device (891, 299): inside the box
        ("c", mobile(action="type", text="dogs")),
        ("d", "```json\nnot a call\n```"),
    ]
    model = ReplayModel(answers, name="replay:steps")
    report = evaluate_steps(data, model, level="low")
    assert {i["id"]: (i["type_ok"], i["step_ok"]) for i in report["items"]} == {
        "a": (True, True),
        "b": (True, True),
        "c": (True, False),
        "d": (False, False),
    }
    assert (report["type_accuracy"], report["step_accuracy"], report["unparsable"]) == (0.75, 0.5, 1)
    # History reached the prompt in model pixels; the low level adds the step's instruction.
    text = model.calls[1][1].content[0].text  # type: ignore[union-attr]
    assert "The user query:  Search for cats\nNext step: Tap the search box\n" in text
    assert (
        'Step 2: {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1204]}}; '
        in text
    )

    replay = tmp_path / "replay.jsonl"
    write_jsonl(replay, [{"task": t, "output": o} for t, o in answers])
    out = tmp_path / "steps-result.json"
    assert main(["eval", "steps", str(data), "--model", f"replay:{replay}", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["step_accuracy"] == 0.5 and saved["level"] == "high"


def test_grounding_cli(grounding_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = write_jsonl(tmp_path / "r.jsonl", [{"task": t, "output": o} for t, o in GROUNDING_REPLAY])
    out = tmp_path / "g.json"
    code = main(["eval", "grounding", str(grounding_data), "--model", f"replay:{replay}", "--out", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["hits"] == 2
    out2 = tmp_path / "g2.json"
    printed = capsys.readouterr().out
    assert "overall" in printed and "40.0%" in printed
    xywh = write_jsonl(
        tmp_path / "xywh.jsonl",
        [
            {
                "id": "p-hit",
                "image": str(grounding_data.parent / "img" / "phone.png"),
                "instruction": "OK",
                "bbox": [500, 1150, 100, 100],
            }
        ],
    )
    assert (
        main(
            [
                "eval",
                "grounding",
                str(xywh),
                "--bbox-format",
                "xywh",
                "--model",
                f"replay:{replay}",
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    assert json.loads(out2.read_text())["items"][0]["bbox"] == [500, 1150, 600, 1250]
    assert json.loads(out2.read_text())["hits"] == 1
    bad = write_jsonl(
        tmp_path / "bad.jsonl", [{"image": "nope.png", "instruction": "x", "bbox": [0, 0, 1, 1]}]
    )
    assert main(["eval", "grounding", str(bad), "--model", f"replay:{replay}"]) == 2


@pytest.mark.parametrize(
    ("dialect", "written"),
    [
        ("qwen3-vl", "coordinate: [500, 500]"),  # the 0..999 grid's middle, in Qwen3-VL's history form
        ("ui-tars-1.5", "click(start_box="),  # UI-TARS's own action syntax
    ],
)
def test_step_history_is_written_in_the_asking_dialects_own_form(
    tmp_path: Path, dialect: str, written: str
) -> None:
    Image.new("RGB", (1080, 2400), (220, 220, 220)).save(tmp_path / "s.png")
    row = {
        "id": "b",
        "screenshot": "s.png",
        "goal": "Search for cats",
        "history": [{"action": "click", "coordinate": [540, 1200]}],
        "action": {"action": "click", "coordinate": [540, 300]},
    }
    data = write_jsonl(tmp_path / "steps.jsonl", [row])
    model = ReplayModel([("b", "no call")], name="replay:steps")
    evaluate_steps(data, model, dialect=dialect)
    prompt = "".join(
        part.text for message in model.calls[0] for part in message.content if isinstance(part, TextPart)
    )
    assert written in prompt
    assert '"name": "mobile_use", "arguments": {"action": "click", "coordinate": [540, 1200]}' not in prompt
