"""ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro annotation files, exactly as released.

* ScreenSpot (SeeClick, njucckevin/SeeClick): ``screenspot_mobile.json``, ``screenspot_desktop.json``,
  ``screenspot_web.json``, images in ``screenspot_imgs/``.
* ScreenSpot-v2 (OS-Copilot/ScreenSpot-v2): the same layout, files ``screenspot_{mobile,desktop,web}_v2.json``,
  images in ``screenspotv2_image/``.
  Both: a JSON list of ``{"img_filename", "bbox": [x, y, width, height], "instruction", "data_type": "text" |
  "icon", "data_source"}``; the platform is the file's.
* ScreenSpot-Pro (likaixin/ScreenSpot-Pro): ``annotations/<application>_<platform>.json``, images in ``images/``;
  each a JSON list of ``{"img_filename", "bbox": [x1, y1, x2, y2], "instruction", "application", "platform",
  "img_size", "ui_type": "text" | "icon", "group", "id", ...}``.

The breakdowns the papers report: ScreenSpot by platform (mobile, desktop, web) and element type (text, icon);
ScreenSpot-Pro by application group (Dev, Creative, CAD, Scientific, Office, OS) and element type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from screenpilot.errors import SetupError
from screenpilot.jsonl import problems_error

Box = tuple[float, float, float, float]

#: Names ``--format`` takes for the released layouts.
FORMATS = ("screenspot", "screenspot-v2", "screenspot-pro")
PLATFORMS = ("mobile", "desktop", "web")
_V1 = re.compile(r"^screenspot_(mobile|desktop|web)\.json$")
_V2 = re.compile(r"^screenspot_(mobile|desktop|web)_v2\.json$")
_IMAGES = {"screenspot": "screenspot_imgs", "screenspot-v2": "screenspotv2_image", "screenspot-pro": "images"}

#: ScreenSpot-Pro's application groups (the paper's table), for annotation files without a ``group`` field.
PRO_GROUPS = {
    "Dev": ("android_studio", "pycharm", "vscode", "quartus", "vmware"),
    "Creative": ("blender", "davinci", "fruitloops", "illustrator", "photoshop", "premiere", "unreal_engine"),
    "CAD": ("autocad", "inventor", "solidworks", "vivado"),
    "Scientific": ("eviews", "matlab", "origin", "stata"),
    "Office": ("excel", "powerpoint", "word"),
    "OS": ("linux_common", "macos_common", "windows_common"),
}


@dataclass(frozen=True)
class Example:
    """One grounding example in a common form: the box in image pixels as ``[x1, y1, x2, y2]``."""

    key: str
    image: Path
    instruction: str
    bbox: Box
    platform: str
    ui_type: str | None
    group: str
    id: Any


def detect(path: Path) -> str | None:
    """The released layout ``path`` is in (a folder or one annotation file), or None for none of them."""
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if any(_V2.match(n) for n in names):
            return "screenspot-v2"
        if any(_V1.match(n) for n in names):
            return "screenspot"
        if (path / "annotations").is_dir():
            return "screenspot-pro"
        return None
    if _V2.match(path.name):
        return "screenspot-v2"
    if _V1.match(path.name):
        return "screenspot"
    if path.suffix == ".json" and path.parent.name == "annotations":
        return "screenspot-pro"
    return None


def annotation_files(path: Path, fmt: str) -> list[Path]:
    """The annotation files of a folder (or the one file given), in a fixed order."""
    if not path.is_dir():
        return [path]
    if fmt == "screenspot-pro":
        folder = path / "annotations" if (path / "annotations").is_dir() else path
        found = sorted(folder.glob("*.json"))
    else:
        pattern = _V2 if fmt == "screenspot-v2" else _V1
        found = sorted(
            (p for p in path.iterdir() if pattern.match(p.name)), key=lambda p: _platform_order(p.name)
        )
    if not found:
        raise SetupError(f"{path} has no {fmt} annotation files")
    return found


def _platform_order(name: str) -> int:
    return next((i for i, p in enumerate(PLATFORMS) if f"_{p}" in name), len(PLATFORMS))


def image_folder(path: Path, fmt: str, images: Path | None) -> Path:
    """Where the images are: ``images`` if given, else the release's folder beside the annotations. A folder
    that is not there is one line (not one "no image" per example: a release has thousands)."""
    if images is not None:
        if not images.is_dir():
            raise SetupError(f"--images {images} is not a folder")
        return images
    base = path if path.is_dir() else path.parent
    if fmt == "screenspot-pro" and base.name == "annotations":
        base = base.parent
    folder = base / _IMAGES[fmt]
    if not folder.is_dir():
        raise SetupError(
            f"no {fmt} image folder {folder}: download the release's images there, or give --images DIR"
        )
    return folder


def _load_list(file: Path) -> list[Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SetupError(f"cannot read {file}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SetupError(f"{file} is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise SetupError(f"{file}: expected a JSON list of examples, as released")
    return data


def _numbers(value: Any) -> TypeGuard[list[float]]:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _example(obj: Any, where: str, key: str, file: Path, fmt: str, images: Path) -> Example:
    if not isinstance(obj, dict):
        raise SetupError(f"{where}: expected an object")
    name, text, raw = obj.get("img_filename"), obj.get("instruction"), obj.get("bbox")
    if not isinstance(name, str) or not name:
        raise SetupError(f"{where}: 'img_filename' must be a file name")
    if not isinstance(text, str) or not text.strip():
        raise SetupError(f"{where}: 'instruction' must be a non-empty string")
    if not _numbers(raw):
        shape = "[x1, y1, x2, y2]" if fmt == "screenspot-pro" else "[x, y, width, height]"
        raise SetupError(f"{where}: bbox must be {shape} in image pixels, got {raw!r}")
    x1, y1, a, b = (float(v) for v in raw)
    box = (x1, y1, a, b) if fmt == "screenspot-pro" else (x1, y1, x1 + a, y1 + b)
    if box[2] < box[0] or box[3] < box[1]:
        raise SetupError(f"{where}: bbox {raw!r} is empty or inverted")
    if fmt == "screenspot-pro":
        platform, ui_type, group = "desktop", obj.get("ui_type"), _pro_group(obj)
    else:
        order = _platform_order(file.name)
        platform = PLATFORMS[order] if order < len(PLATFORMS) else "mobile"
        ui_type, group = obj.get("data_type"), platform
    ui = str(ui_type).lower() if ui_type is not None else None
    return Example(key, images / name, text, box, platform, ui, group, obj.get("id"))


def _pro_group(obj: dict[str, Any]) -> str:
    if isinstance(obj.get("group"), str) and obj["group"]:
        return str(obj["group"])
    app = str(obj.get("application") or "")
    return next((g for g, apps in PRO_GROUPS.items() if app in apps), "other")


def load(path: Path, fmt: str, *, images: Path | None = None, limit: int | None = None) -> list[Example]:
    """Every example of a release (a folder, or one of its annotation files), in file order; with ``limit``, the
    first ``limit`` entries. Every entry is checked, and the image of each one returned: all problems (bad
    entries and missing images) are reported in one SetupError."""
    if fmt not in FORMATS:
        raise SetupError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = image_folder(path, fmt, images)
    examples: list[Example] = []
    problems: list[str] = []
    position = 0
    for file in annotation_files(path, fmt):
        for i, obj in enumerate(_load_list(file)):
            wanted = limit is None or position < limit
            position += 1
            try:
                example = _example(obj, f"{file}[{i}]", f"{file.name}[{i}]", file, fmt, folder)
            except SetupError as exc:
                problems.append(str(exc))
                continue
            if not wanted:
                continue
            if example.image.is_file():
                examples.append(example)
            else:
                problems.append(f"{example.key}: no image {example.image}")
    if problems:
        raise problems_error(path, problems)
    if not examples:
        raise SetupError(f"{path} has no examples")
    return examples
