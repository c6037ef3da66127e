"""AndroidControl as released (GZIP TFRecord episodes written here, with real framing, checksums, Example and
accessibility-tree encodings), scored with the replay model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Click
from screenpilot.cli.main import main
from screenpilot.errors import SetupError
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.evaluate import ANDROIDCONTROL_RULES, evaluate_steps, format_steps, match_step
from tests.tasks.test_evaluate import mobile, write_jsonl
from tests.tasks.tfrecord_writer import example, forest, write_tfrecord

W, H = 1080, 2400


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), color).save(buf, format="PNG")
    return buf.getvalue()


def episode(
    episode_id: int, goal: str, actions: list[dict[str, Any]], trees: list[bytes], steps: list[str]
) -> bytes:
    n = len(actions) + 1
    return example(
        {
            "episode_id": [episode_id],
            "goal": [goal.encode()],
            "screenshots": [png((10 * i, 100, 200)) for i in range(n)],
            "screenshot_widths": [W] * n,
            "screenshot_heights": [H] * n,
            "accessibility_trees": trees + [forest([])] * (n - len(trees)),
            "actions": [json.dumps(a).encode() for a in actions],
            "step_instructions": [s.encode() for s in steps],
        }
    )


ROOT = (0, 0, W, H)
FIELD = (100, 250, 980, 350)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "android_control"
    folder.mkdir()
    first = episode(
        101,
        "Send hello to Ann",
        [
            {"action_type": "open_app", "app_name": "Messages"},
            {"action_type": "click", "x": 540, "y": 300},
            {"action_type": "type", "text": "hello there", "x": 540, "y": 300},
        ],
        [forest([ROOT]), forest([ROOT, FIELD])],
        ["Open Messages", "Tap the message field", "Type the message"],
    )
    second = episode(
        202,
        "Go back from the list",
        [{"action_type": "scroll", "direction": "down"}, {"action_type": "navigate_back"}],
        [],
        ["Scroll down", "Go back"],
    )
    write_tfrecord(folder / "android_control-00000-of-00002", [first])
    write_tfrecord(folder / "android_control-00001-of-00002", [second])
    (folder / "splits.json").write_text(json.dumps({"train": [101], "validation": [], "test": [202]}))
    return folder


# model frame 1092x2408 for a 1080x2400 screen
ANSWERS: list[tuple[str | None, str]] = [
    ("101:0", mobile(action="open", text="messages")),
    # device (540, 355): outside the field's box (250..350) but inside it enlarged 1.2 times (240..360)
    ("101:1", mobile(action="click", coordinate=[546, 356])),
    ("101:2", mobile(action="type", text="Hello")),  # contained in the recorded text
    (
        "202:0",
        mobile(action="swipe", coordinate=[546, 1800], coordinate2=[546, 600]),
    ),  # finger up: scroll down
    ("202:1", mobile(action="system_button", button="Home")),
]


def test_androidcontrol_steps_are_scored_by_the_published_rules(release: Path) -> None:
    model = ReplayModel(ANSWERS, name="replay:ac")
    report = evaluate_steps(release, model, level="low")
    assert report["format"] == "androidcontrol"
    assert [i["key"] for i in report["items"]] == ["101:0", "101:1", "101:2", "202:0", "202:1"]
    assert {i["key"]: (i["type_ok"], i["step_ok"]) for i in report["items"]} == {
        "101:0": (True, True),
        "101:1": (True, True),
        "101:2": (True, True),
        "202:0": (True, True),
        "202:1": (True, False),
    }
    click = report["items"][1]
    assert click["bbox"] == list(FIELD) and click["why"] == "inside the target box"  # the smallest node
    assert report["step_accuracy"] == pytest.approx(0.8)
    # The third step was asked with the goal, the step's instruction and the two recorded actions before it.
    text = model.calls[2][1].content[0].text  # type: ignore[union-attr]
    assert "Send hello to Ann\nNext step: Type the message" in text
    assert '"action": "open", "text": "Messages"' in text and '"coordinate": [546, 301]' in text
    assert model.calls[2][1].images[0].getpixel((0, 0)) == (20, 100, 200)  # the step's own screenshot
    table = format_steps(report)
    assert "Qwen2.5-VL published (AndroidControl-Low): 3B 90.8%, 7B 91.4%, 72B 93.7%" in table


def test_distance_fallback_is_the_published_one() -> None:
    # 0.090 of the screen away, no box: right by the 0.14 default, wrong by AndroidControl's 0.04
    assert match_step(Click(x=140, y=300), Click(x=100, y=100), Size(W, H)).step_ok
    assert not match_step(
        Click(x=140, y=300), Click(x=100, y=100), Size(W, H), None, ANDROIDCONTROL_RULES
    ).step_ok
    assert match_step(
        Click(x=120, y=150), Click(x=100, y=100), Size(W, H), None, ANDROIDCONTROL_RULES
    ).step_ok


def test_split_and_cli(release: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    replay = write_jsonl(tmp_path / "r.jsonl", [{"task": t, "output": o} for t, o in ANSWERS])
    out = tmp_path / "ac.json"
    code = main(
        ["eval", "steps", str(release), "--split", "test", "--model", f"replay:{replay}", "--out", str(out)]
    )
    assert code == 0
    saved = json.loads(out.read_text())
    assert [i["key"] for i in saved["items"]] == ["202:0", "202:1"] and saved["step_accuracy"] == 0.5
    assert (
        "Qwen2.5-VL published (AndroidControl-High): 3B 63.7%, 7B 60.1%, 72B 67.36%"
        in capsys.readouterr().out
    )


def test_a_bad_action_is_reported_before_anything_is_asked(tmp_path: Path) -> None:
    bad = episode(
        5, "g", [{"action_type": "fly"}, {"action_type": "click", "x": "a", "y": 1}], [], ["a", "b"]
    )
    path = write_tfrecord(tmp_path / "android_control-bad", [bad])
    model = ReplayModel([])
    with pytest.raises(SetupError, match=r"record 0 \(episode 5\): step 0: unknown action_type 'fly'"):
        evaluate_steps(path, model)
    assert model.calls == []
    short = example({"episode_id": [1], "goal": [b"g"]})
    with pytest.raises(SetupError, match=r"record 0: not an AndroidControl episode: missing screenshots"):
        evaluate_steps(write_tfrecord(tmp_path / "android_control-short", [short]), model)


def test_a_folder_without_step_data_says_what_was_looked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not data")
    replay = write_jsonl(tmp_path / "r.jsonl", [{"output": "x"}])
    for folder in (empty, other):
        expected = f"{folder} has no android_control-* or *.tfrecord files, and is not a JSON Lines file"
        with pytest.raises(SetupError) as caught:
            evaluate_steps(folder, ReplayModel([]))
        assert str(caught.value) == expected
        assert main(["eval", "steps", str(folder), "--model", f"replay:{replay}", "--no-progress"]) == 2
        assert capsys.readouterr().err == f"screenpilot: error: {expected}\n"
