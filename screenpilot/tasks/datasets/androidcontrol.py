"""AndroidControl as released: GZIP TFRecord files of ``tf.train.Example`` episodes.

Each episode (google-research/android_control README) has ``episode_id``, ``goal``, ``screenshots`` (PNG bytes),
``screenshot_widths``, ``screenshot_heights``, ``accessibility_trees`` (serialised android_env
``AndroidAccessibilityForest`` messages), ``actions`` (JSON objects with an ``action_type``, one fewer than the
screenshots) and ``step_instructions`` (one per action). Step *i* shows screenshot *i* and expects action *i*.

The target box of a click, long press or ``type`` is the smallest accessibility node whose bounds contain the
recorded point (android_env's ``bounds_in_screen``); steps without one are matched by distance alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenpilot.actions.types import Action, Click, LongPress, OpenApp, Swipe, SystemButton, TypeText, Wait
from screenpilot.errors import SetupError
from screenpilot.tasks.datasets.tfrecord import WireError, fields, parse_example, read_records, signed64

Box = tuple[float, float, float, float]

#: The features an AndroidControl episode must have.
FEATURES = (
    "episode_id",
    "goal",
    "screenshots",
    "screenshot_widths",
    "screenshot_heights",
    "accessibility_trees",
    "actions",
    "step_instructions",
)

#: A ``scroll`` moves the content the named way, so the finger moves the other way (android_env and AndroidWorld
#: read ``scroll down`` as "show what is below": a swipe up). The recorded step becomes that swipe from the centre.
FINGER_FOR_SCROLL = {"down": "up", "up": "down", "left": "right", "right": "left"}


@dataclass(frozen=True)
class Step:
    """One step of an episode: what the model is shown and the recorded answer."""

    episode_id: int
    index: int
    goal: str
    instruction: str
    width: int
    height: int
    action: dict[str, Any]
    truth: Action
    bbox: Box | None
    history: tuple[Action, ...]

    @property
    def key(self) -> str:
        return f"{self.episode_id}:{self.index}"


def is_tfrecord(path: Path) -> bool:
    """A GZIP file, or a file named like AndroidControl's shards (``android_control-*``, ``*.tfrecord*``)."""
    if path.is_dir():
        return bool(data_files(path, quiet=True))
    try:
        with path.open("rb") as f:
            magic = f.read(2)
    except OSError:
        return False
    return magic == b"\x1f\x8b" or ".tfrecord" in path.name or path.name.startswith("android_control")


def data_files(path: Path, *, quiet: bool = False) -> list[Path]:
    """The TFRecord files of ``path``: itself, or a folder's ``android_control*`` / ``*.tfrecord*`` files."""
    if not path.is_dir():
        return [path]
    found = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and (p.name.startswith("android_control") or ".tfrecord" in p.name)
    )
    if not found and not quiet:
        raise SetupError(f"{path} has no android_control-* or *.tfrecord files")
    return found


# -- accessibility trees --------------------------------------------------------------------------------------


def _rect(buf: bytes) -> Box | None:
    """A ProtoRect (left = 1, top = 2, right = 3, bottom = 4; int32)."""
    side = {1: 0, 2: 0, 3: 0, 4: 0}
    for number, wire, value in fields(buf):
        if number in side and wire == 0 and isinstance(value, int):
            side[number] = signed64(value)
    left, top, right, bottom = side[1], side[2], side[3], side[4]
    return (left, top, right, bottom) if right > left and bottom > top else None


def node_boxes(forest: bytes) -> list[Box]:
    """Every node's ``bounds_in_screen`` in an AndroidAccessibilityForest: windows = 1, window.tree = 11,
    tree.nodes = 1, node.bounds_in_screen = 2. Empty boxes are left out."""
    boxes: list[Box] = []
    for n_window, _, window in fields(forest):
        if n_window != 1 or not isinstance(window, bytes):
            continue
        for n_tree, _, tree in fields(window):
            if n_tree != 11 or not isinstance(tree, bytes):
                continue
            for n_node, _, node in fields(tree):
                if n_node != 1 or not isinstance(node, bytes):
                    continue
                for n_field, _, value in fields(node):
                    if n_field == 2 and isinstance(value, bytes):
                        box = _rect(value)
                        if box is not None:
                            boxes.append(box)
    return boxes


def target_box(boxes: list[Box], x: float, y: float) -> Box | None:
    """The smallest box that contains the point (the element the recorded tap landed on)."""
    inside = [b for b in boxes if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    return min(inside, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


# -- actions --------------------------------------------------------------------------------------------------


def _point(action: dict[str, Any]) -> tuple[int, int]:
    x, y = action.get("x"), action.get("y")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
        raise ValueError(f"{action['action_type']} needs numeric x and y, got {action!r}")
    assert isinstance(x, (int, float)) and isinstance(y, (int, float))
    return round(x), round(y)


def _text(action: dict[str, Any], key: str) -> str:
    value = action.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{action['action_type']} needs a non-empty {key!r}, got {action!r}")
    return value


def to_action(action: dict[str, Any], width: int, height: int) -> Action:
    """An AndroidControl action as a screenpilot action (device pixels). ``type`` (tap, type, enter) is compared
    by its text, as ``input_text`` is; ``scroll`` becomes a swipe from the centre (:data:`FINGER_FOR_SCROLL`)."""
    kind = action.get("action_type")
    if kind in ("click", "long_press"):
        x, y = _point(action)
        return Click(x=x, y=y) if kind == "click" else LongPress(x=x, y=y)
    if kind in ("type", "input_text"):
        return TypeText(text=_text(action, "text"))
    if kind == "open_app":
        return OpenApp(app=_text(action, "app_name"))
    if kind in ("navigate_back", "navigate_home"):
        return SystemButton(button="back" if kind == "navigate_back" else "home")
    if kind == "wait":
        return Wait()
    if kind == "scroll":
        return _scroll(_text(action, "direction"), width, height)
    raise ValueError(f"unknown action_type {kind!r}")


def _scroll(direction: str, width: int, height: int) -> Swipe:
    finger = FINGER_FOR_SCROLL.get(direction.lower())
    if finger is None:
        raise ValueError(f"scroll direction must be up, down, left or right, got {direction!r}")
    cx, cy, dx, dy = width // 2, height // 2, width // 4, height // 4
    ends = {"up": (cx, cy + dy, cx, cy - dy), "down": (cx, cy - dy, cx, cy + dy)}
    ends |= {"left": (cx + dx, cy, cx - dx, cy), "right": (cx - dx, cy, cx + dx, cy)}
    x, y, x2, y2 = ends[finger]
    return Swipe(x=x, y=y, x2=x2, y2=y2)


# -- episodes -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """One decoded episode; screenshots stay PNG bytes until asked for."""

    episode_id: int
    goal: str
    screenshots: list[bytes]
    widths: list[int]
    heights: list[int]
    trees: list[bytes]
    actions: list[dict[str, Any]]
    instructions: list[str]


def _strings(values: Any, name: str) -> list[str]:
    if not all(isinstance(v, bytes) for v in values):
        raise ValueError(f"{name} must be a bytes list")
    return [v.decode("utf-8") for v in values]


def _ints(values: Any, name: str) -> list[int]:
    if not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int64 list")
    return list(values)


def decode_episode(data: bytes) -> Episode:
    """An episode from one record; ValueError (WireError, UnicodeDecodeError, json errors) says what is wrong."""
    feats = parse_example(data)
    missing = [f for f in FEATURES if f not in feats]
    if missing:
        raise ValueError(f"not an AndroidControl episode: missing {', '.join(missing)}")
    ids = _ints(feats["episode_id"], "episode_id")
    goals = _strings(feats["goal"], "goal")
    if len(ids) != 1 or len(goals) != 1:
        raise ValueError("episode_id and goal must hold one value each")
    actions = [json.loads(a) for a in _strings(feats["actions"], "actions")]
    if not all(isinstance(a, dict) for a in actions):
        raise ValueError("every action must be a JSON object")
    episode = Episode(
        ids[0],
        goals[0],
        [bytes(v) for v in feats["screenshots"] if isinstance(v, bytes)],
        _ints(feats["screenshot_widths"], "screenshot_widths"),
        _ints(feats["screenshot_heights"], "screenshot_heights"),
        [bytes(v) for v in feats["accessibility_trees"] if isinstance(v, bytes)],
        actions,
        _strings(feats["step_instructions"], "step_instructions"),
    )
    _check_lengths(episode)
    return episode


def _check_lengths(e: Episode) -> None:
    n = len(e.screenshots)
    if not (len(e.widths) == len(e.heights) == len(e.trees) == n):
        raise ValueError("screenshots, their widths, heights and accessibility trees differ in number")
    if len(e.actions) != n - 1 or len(e.instructions) != len(e.actions):
        raise ValueError(
            f"{n} screenshots need {n - 1} actions and step instructions, got {len(e.actions)} and "
            f"{len(e.instructions)}"
        )


def steps(episode: Episode) -> Iterator[Step]:
    """The episode's steps, each with the recorded actions before it as history."""
    history: list[Action] = []
    for i, action in enumerate(episode.actions):
        width, height = episode.widths[i], episode.heights[i]
        if width <= 0 or height <= 0:
            raise ValueError(f"step {i}: screenshot size {width}x{height}")
        try:
            truth = to_action(action, width, height)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"step {i}: {exc}") from None
        bbox = None
        if "x" in action and "y" in action and action.get("action_type") in ("click", "long_press"):
            bbox = target_box(node_boxes(episode.trees[i]), *_point(action))
        yield Step(
            episode.episode_id,
            i,
            episode.goal,
            episode.instructions[i],
            width,
            height,
            action,
            truth,
            bbox,
            tuple(history),
        )
        history.append(truth)


def read_episodes(path: Path) -> Iterator[tuple[str, Episode]]:
    """``(where, episode)`` for every record of every file of ``path``; a record that is not an episode is a
    SetupError naming the file and record."""
    for file in data_files(path):
        for index, data in read_records(file):
            where = f"{file}: record {index}"
            try:
                yield where, decode_episode(data)
            except (ValueError, WireError) as exc:
                raise SetupError(f"{where}: {exc}") from None


def read_splits(path: Path, split: str) -> set[int]:
    """The episode ids of ``split`` in AndroidControl's ``splits.json`` (``{"train": [...], "validation": [...],
    "test": [...]}``)."""
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SetupError(f"cannot read the splits file {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SetupError(f"{path} is not JSON: {exc}") from None
    ids = splits.get(split) if isinstance(splits, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        names = ", ".join(sorted(splits)) if isinstance(splits, dict) else "none"
        raise SetupError(f"{path} has no list of episode ids named {split!r} (it has: {names})")
    return set(ids)
