"""ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro folders written here in their released layouts (their JSON,
box conventions and image folders), scored with the replay model; resume and concurrent requests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.cli.main import main
from screenpilot.cli.run_command import StopSignal
from screenpilot.errors import SetupError
from screenpilot.model.dialects import DEFAULT_DIALECT, make_dialect
from screenpilot.model.replay import ReplayModel
from screenpilot.tasks.evaluate import evaluate_grounding, format_grounding
from tests.model.openai_server import ScriptedServer
from tests.tasks.test_evaluate import desktop, mobile, write_jsonl


def seeclick_layout(root: Path, suffix: str, images: str) -> Path:
    """ScreenSpot (suffix "") or ScreenSpot-v2 (suffix "_v2"): bbox [x, y, width, height]."""
    root.mkdir()
    (root / images).mkdir()
    Image.new("RGB", (1080, 2400), (200, 200, 200)).save(root / images / "mobile_1.png")
    Image.new("RGB", (1920, 1080), (90, 90, 90)).save(root / images / "pc_1.png")
    entries = {
        "mobile": [
            {
                "img_filename": "mobile_1.png",
                "bbox": [500, 1150, 100, 100],
                "instruction": "tap OK",
                "data_type": "text",
                "data_source": "android",
            },
            {
                "img_filename": "mobile_1.png",
                "bbox": [0, 0, 100, 100],
                "instruction": "tap the gear",
                "data_type": "icon",
                "data_source": "ios",
            },
        ],
        "desktop": [
            {
                "img_filename": "pc_1.png",
                "bbox": [950, 530, 20, 20],
                "instruction": "click File",
                "data_type": "text",
                "data_source": "windows",
            },
        ],
        "web": [
            {
                "img_filename": "pc_1.png",
                "bbox": [0, 0, 50, 50],
                "instruction": "open the menu",
                "data_type": "icon",
                "data_source": "shop",
            },
        ],
    }
    for platform, rows in entries.items():
        (root / f"screenspot_{platform}{suffix}.json").write_text(json.dumps(rows))
    return root


SEECLICK_ANSWERS: list[tuple[str | None, str]] = [
    ("screenspot_mobile{s}.json[0]", mobile(action="click", coordinate=[546, 1204])),  # device (540, 1200)
    ("screenspot_mobile{s}.json[1]", mobile(action="click", coordinate=[546, 1204])),
    (
        "screenspot_desktop{s}.json[0]",
        desktop(action="left_click", coordinate=[966, 546]),
    ),  # device (960, 540)
    ("screenspot_web{s}.json[0]", desktop(action="left_click", coordinate=[966, 546])),
]


def answers(suffix: str) -> list[tuple[str | None, str]]:
    return [(k.format(s=suffix) if k else None, a) for k, a in SEECLICK_ANSWERS]


@pytest.mark.parametrize(
    ("suffix", "images", "fmt"),
    [("", "screenspot_imgs", "screenspot"), ("_v2", "screenspotv2_image", "screenspot-v2")],
)
def test_screenspot_releases_by_platform_and_type(tmp_path: Path, suffix: str, images: str, fmt: str) -> None:
    root = seeclick_layout(tmp_path / "release", suffix, images)
    model = ReplayModel(answers(suffix))
    report = evaluate_grounding(root, model)
    assert report["format"] == fmt
    assert [i["hit"] for i in report["items"]] == [True, False, True, False]  # mobile, desktop, web order
    groups = report["groups"]
    assert list(groups) == ["desktop", "mobile", "web"]
    assert groups["mobile"]["text"]["accuracy"] == 1.0 and groups["mobile"]["icon"]["accuracy"] == 0.0
    assert report["by_ui_type"]["text"] == {"total": 2, "hits": 2, "accuracy": 1.0}
    assert report["items"][0]["bbox"] == [500, 1150, 600, 1250]  # [x, y, w, h] read as such
    assert [i["tool"] for i in report["items"]] == [
        "mobile_use",
        "mobile_use",
        "computer_use",
        "computer_use",
    ]
    table = format_grounding(report)
    assert "text" in table.splitlines()[0] and "icon" in table.splitlines()[0]
    if fmt == "screenspot":
        assert "Qwen2.5-VL published (ScreenSpot): 3B 55.5%, 7B 84.7%, 72B 87.1%" in table
    else:
        assert "none for ScreenSpot-v2" in table


def pro_layout(root: Path) -> Path:
    """ScreenSpot-Pro: annotations/<app>_<platform>.json, images/<app folder>/…, bbox [x1, y1, x2, y2]."""
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "vscode_windows").mkdir(parents=True)
    Image.new("RGB", (3840, 2160), (30, 30, 30)).save(root / "images" / "vscode_windows" / "s1.png")
    base = {
        "img_filename": "vscode_windows/s1.png",
        "img_size": [3840, 2160],
        "application": "vscode",
        "platform": "windows",
        "instruction_cn": "x",
    }
    rows = [
        {
            **base,
            "id": "vscode_windows_0",
            "bbox": [1900, 1000, 2000, 1100],
            "instruction": "run",
            "ui_type": "icon",
            "group": "Dev",
        },
        {**base, "id": "vscode_windows_1", "bbox": [0, 0, 40, 40], "instruction": "close", "ui_type": "text"},
    ]
    (root / "annotations" / "vscode_windows.json").write_text(json.dumps(rows))
    return root


def test_screenspot_pro_by_group_and_type(tmp_path: Path) -> None:
    root = pro_layout(tmp_path / "pro")
    # the screen is resized for the model; a click at device (1950, 1050) lands inside the first box only
    space = make_dialect(DEFAULT_DIALECT, "desktop").coordinate_space(Size(3840, 2160))
    center = desktop(action="left_click", coordinate=list(space.to_model(1950, 1050)))
    model = ReplayModel([("vscode_windows_0", center), ("vscode_windows_1", center)])
    report = evaluate_grounding(root / "annotations" / "vscode_windows.json", model)
    assert report["format"] == "screenspot-pro"
    assert report["groups"]["Dev"]["total"] == 2  # the second has no group field: found from its application
    assert report["groups"]["Dev"]["icon"]["accuracy"] == 1.0 and report["groups"]["Dev"]["text"]["hits"] == 0
    assert "Qwen2.5-VL published (ScreenSpot-Pro): 3B 23.9%, 7B 29.0%, 72B 43.6%" in format_grounding(report)


def test_a_missing_image_is_reported_before_anything_is_asked(tmp_path: Path) -> None:
    root = seeclick_layout(tmp_path / "release", "", "screenspot_imgs")
    (root / "screenspot_imgs" / "pc_1.png").unlink()
    model = ReplayModel([])
    with pytest.raises(Exception, match=r"(?s)2 problems in .*screenspot_desktop\.json\[0\]: no image"):
        evaluate_grounding(root, model)
    assert model.calls == []


def test_bad_entries_and_missing_images_are_reported_together_within_the_limit(tmp_path: Path) -> None:
    root = seeclick_layout(tmp_path / "release", "", "screenspot_imgs")
    (root / "screenspot_imgs" / "pc_1.png").unlink()  # the desktop and web entries' image
    mobile_file = root / "screenspot_mobile.json"
    rows = json.loads(mobile_file.read_text())
    rows[1]["bbox"] = [0, 0, 1]
    mobile_file.write_text(json.dumps(rows))
    model = ReplayModel([])
    with pytest.raises(SetupError) as caught:
        evaluate_grounding(root, model)
    message = str(caught.value)
    assert message.startswith("3 problems in ")
    assert "screenspot_mobile.json[1]: bbox must be" in message
    assert "screenspot_desktop.json[0]: no image" in message and "screenspot_web.json[0]: no image" in message
    # images are checked only for the examples the run would ask; every entry is checked all the same
    with pytest.raises(SetupError) as caught:
        evaluate_grounding(root, model, limit=3)
    message = str(caught.value)
    assert message.startswith("2 problems in ") and "web.json[0]" not in message
    assert "screenspot_mobile.json[1]: bbox must be" in message and "desktop.json[0]: no image" in message
    assert model.calls == []


def test_a_missing_image_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = seeclick_layout(tmp_path / "release", "", "screenspot_imgs")
    replay = write_jsonl(tmp_path / "answers.jsonl", [{"output": "no point"}])
    args = ["eval", "grounding", str(root), "--model", f"replay:{replay}", "--no-progress"]
    elsewhere = tmp_path / "elsewhere"
    assert main([*args, "--images", str(elsewhere)]) == 2
    assert capsys.readouterr().err == f"screenpilot: error: --images {elsewhere} is not a folder\n"
    (root / "screenspot_imgs").rename(root / "moved")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no screenspot image folder {root / 'screenspot_imgs'}: " in err
    assert main([*args, "--images", str(root / "moved")]) == 0  # found there


class StopAfter(ReplayModel):
    """Replays, and is interrupted (SIGTERM) on call number ``stop``."""

    def __init__(self, answers: list[tuple[str | None, str]], stop: int) -> None:
        super().__init__(answers)
        self.stop = stop

    def complete(self, messages: Any, *, deadline: float | None = None) -> Any:
        if len(self.calls) + 1 == self.stop:
            self.calls.append(list(messages))
            raise StopSignal(15)
        return super().complete(messages, deadline=deadline)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    root = seeclick_layout(tmp_path / "release", "", "screenspot_imgs")
    journal = tmp_path / "results.items.jsonl"
    first = evaluate_grounding(root, StopAfter(answers(""), stop=3), journal=journal)
    assert first["interrupted_by"] == "SIGTERM" and first["finished"] == 2
    again = ReplayModel(answers(""))
    second = evaluate_grounding(root, again, journal=journal)
    assert len(again.calls) == 2 and second["complete"] and second["finished"] == 4  # only the last two asked
    assert [i["hit"] for i in second["items"]] == [True, False, True, False]
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 4 and json.loads(lines[0])["format"] == "screenspot"
    other = tmp_path / "other"
    other.mkdir()
    (other / "screenspot_web.json").write_text((root / "screenspot_web.json").read_text())
    with pytest.raises(Exception, match="holds results of another evaluation"):
        evaluate_grounding(other, ReplayModel([]), journal=journal, images=root / "screenspot_imgs")


def test_concurrent_requests_against_a_server_keep_data_order(tmp_path: Path) -> None:
    rows = [
        {"id": f"g{i}", "image": "a.png", "instruction": f"tap {i}", "bbox": [0, 0, 60, 60]} for i in range(8)
    ]
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    data = write_jsonl(tmp_path / "g.jsonl", rows)
    out = tmp_path / "results.json"
    with ScriptedServer() as server:
        server.default_text = mobile(action="click", coordinate=[28, 28])
        code = main(
            [
                "eval",
                "grounding",
                str(data),
                "--model",
                server.url,
                "--concurrency",
                "4",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        asked = sorted(t for r in server.posts for t in re.findall(r"tap \d", json.dumps(r.json)))
    saved = json.loads(out.read_text())
    assert code == 0 and sorted(set(asked)) == [f"tap {i}" for i in range(8)] and saved["hits"] == 8
    assert [i["id"] for i in saved["items"]] == [f"g{i}" for i in range(8)]
    assert len((tmp_path / "results.items.jsonl").read_text().splitlines()) == 9
