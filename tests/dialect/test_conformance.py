"""One conformance suite every registered dialect passes, on phones and desktops: prompt vectors, point round trips
on many screens, calibration through the agent loop on a real screen, and every action form executed.

A dialect added to ``DIALECTS`` is run through all of it; it only has to add its prompt vectors below.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.types import Action, Click, Wait, action_kind
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.android import AndroidEnv, RetryPolicy
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone
from screenpilot.envs.base import Environment
from screenpilot.envs.conformance import check_actions
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.conformance import (
    TARGET_RGB,
    PointingModel,
    PromptVector,
    check_action_forms,
    check_prompt_vector,
    check_round_trip,
    find_target,
)
from screenpilot.model.dialect import Dialect, Platform, SupportsCallText
from screenpilot.model.dialects import DIALECT_NAMES, make_dialect
from screenpilot.model.qwen25vl import Qwen25VLDialect

PLATFORMS: tuple[Platform, ...] = ("mobile", "desktop")
CASES = list(itertools.product(DIALECT_NAMES, PLATFORMS))
CASE_IDS = [f"{name}-{platform}" for name, platform in CASES]

# -- 1. prompt vectors (from /shared/docs/*-wire-format.md, computed with each family's reference code) ----------------
FILES = "Open the file manager app and view the au_uu_SzH3yR2.mp3 file in MUSIC Folder"
OPEN_FILES = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "open", "text": "File Manager"}}\n</tool_call>'
MUSK = "Search for Musk in X and go to his homepage to open the first post."
OPENED_X = (
    "Thought: The X app is open.\nAction: I opened the X app from the home screen.\n"
    '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [500, 80]}}\n</tool_call>'
)
WIFI = "Open the Settings app and turn on Wi-Fi."
STEP1 = (
    "Thought: The Settings icon is on the desktop. I'll double-click it to open Settings.\n"
    "Action: left_double(start_box='(960,540)')"
)
PHONE, DESK, WIDE = Size(1080, 2400), Size(1920, 1080), Size(2560, 1440)


def vector(dialect: str, platform: Platform, part: str, screen: Size, goal: str, hashed: str, **extra: Any):
    chars, sha = hashed.split(":")
    return PromptVector(dialect, platform, part, screen, goal, int(chars), sha, **extra)  # type: ignore[arg-type]


VECTORS = [
    vector("qwen2.5-vl", "mobile", "system", PHONE, "", "3226:08758deb1261464319e7c8e0ad8413c64285da66736b560d809f3754271a15e2"),
    vector("qwen2.5-vl", "mobile", "prompt", PHONE, FILES, "3610:20285d0ed6996f0553f67b914c4342fb864eb0cfdafaa445ab6dd4e193d3b33f", answers=(OPEN_FILES,)),
    vector("qwen2.5-vl", "desktop", "system", WIDE, "", "3498:1ba53409c1dbd11419024a9ee6fbcb564eb3c67c93d2a75c50a3923a82bea15c"),
    vector("qwen3-vl", "mobile", "system", PHONE, "", "3468:9d060af15f62acb31b9fb197649ec001d4096491d7fb102de929316944b3e26d"),
    vector("qwen3-vl", "mobile", "prompt", PHONE, MUSK, "3805:30cedd7d9d8018af0ae93bdebeef5d3ab1311a5b5f42599aa1305667cb892e39", answers=(OPENED_X,)),
    vector("qwen3-vl", "mobile", "first_user", PHONE, WIFI, "137:b551d47235593f5b56f9a42c75c6b42b5e6736c81012044beea9f9777c9e2ab2"),
    vector("qwen3-vl", "desktop", "system", DESK, "", "3886:6084d16a025c374a9523958d4438e1f068c73da969aa3002415da011ff85b37c"),
    vector("qwen3-vl", "desktop", "prompt", DESK, "open the third issue", "4029:b38b8d1a8cee5c43fdd221bf2b70bc27a113a6a9a7a9b5aea8fc17099026160e"),
    vector("qwen3-vl", "desktop", "prompt", WIDE, "open the third issue", "4029:b38b8d1a8cee5c43fdd221bf2b70bc27a113a6a9a7a9b5aea8fc17099026160e"),
    vector("ui-tars-1.5", "mobile", "first_user", PHONE, WIFI, "1010:3da60407e54cbdaf5a24a90f110526d008a3c42fc4ac3e4f21e23aa8c097ce7b"),
    vector("ui-tars-1.5", "desktop", "first_user", WIDE, WIFI, "1227:48950d4a96408049f6b9c2badb38f5304dcc4badf7f6ab1d08632decb3ceae87"),
    vector("ui-tars-1.5", "desktop", "prompt", DESK, WIFI, "1406:9d64590d88c6b9851c429f5cd3fc1585b9350cf85a204635c7d0bf07c36386bf"),
    vector("ui-tars-1.5", "desktop", "prompt", DESK, WIFI, "1661:50457cf944b1de94a8ee39ca9b2fd5186334d73bcebb8b7cc3dff06ac65c4cf6", answers=(STEP1,), options={"keep_images": 1}),
]  # fmt: skip


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v.dialect}-{v.platform}-{v.part}-{v.chars}")
def test_prompt_vectors(vec: PromptVector) -> None:
    check_prompt_vector(make_dialect(vec.dialect, vec.platform, **vec.options), vec)


@pytest.mark.parametrize(("name", "platform"), CASES, ids=CASE_IDS)
def test_every_dialect_and_platform_has_prompt_vectors(name: str, platform: Platform) -> None:
    """Each platform's prompt is pinned (Qwen2.5-VL's desktop reference gives only its system text), and each
    dialect has a whole prompt pinned on some platform."""
    assert any((v.dialect, v.platform) == (name, platform) for v in VECTORS), (
        f"add a prompt vector for {name} on {platform}"
    )
    assert any(v.dialect == name and v.part == "prompt" for v in VECTORS), (
        f"add a whole-prompt vector for {name}"
    )


def test_a_changed_prompt_fails_its_vector() -> None:
    dialect = make_dialect("qwen2.5-vl", "mobile", answer_action=True)  # the AndroidWorld variant of the tool
    with pytest.raises(AssertionError, match=r"qwen2\.5-vl mobile system prompt differs"):
        check_prompt_vector(dialect, VECTORS[0])


# -- 2. coordinate round trip -------------------------------------------------------------------------------------------
#: Portrait and landscape of each (a width/height swap fails on all but the square), odd sizes, 4K and 8K.
SCREENS = [Size(*s) for s in [(1080, 2400), (720, 1280), (1440, 3200), (393, 852), (1920, 1080), (1366, 768),
                               (2560, 1440), (3840, 2160), (7680, 4320), (1000, 1000), (600, 2900), (1280, 800)]]  # fmt: skip
SCREENS += [Size(h, w) for w, h in SCREENS if w != h]


@pytest.mark.parametrize(("name", "platform"), CASES, ids=CASE_IDS)
def test_points_survive_the_dialects_own_written_form(name: str, platform: Platform) -> None:
    dialect = make_dialect(name, platform)
    for screen in SCREENS:
        worst = check_round_trip(dialect, screen)
        if max(screen) < 3000:  # a 1000-unit grid is finer than 3 px here: the nearest unit is within 1 px
            assert worst <= 1, f"{name} on {screen}: {worst} px off"


@pytest.mark.parametrize(("name", "platform"), CASES, ids=CASE_IDS)
def test_points_survive_a_smaller_image(name: str, platform: Platform) -> None:
    """A lower pixel budget shrinks the image; the points still come back within the written form's grain."""
    dialect = make_dialect(name, platform, max_pixels=640 * 28 * 28)
    for screen in (Size(1080, 2400), Size(2400, 1080), Size(3840, 2160)):
        check_round_trip(dialect, screen)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_grid_reaches_the_last_pixel(platform: Platform) -> None:
    """Qwen3-VL's grid runs 0..N with N the far edge: the last pixel of a 4K screen is N, not N - 1 (which
    reads back 3 px short)."""
    dialect = make_dialect("qwen3-vl", platform)
    space = dialect.coordinate_space(Size(3840, 2160))
    assert isinstance(dialect, SupportsCallText)
    text = dialect.call_text(Click(x=3839, y=2159), space)
    n = space.model.width
    assert f"[{n}, {n}]" in text
    assert dialect.parse(text, space)[0].device == Click(x=3839, y=2159)


class _TransposingReader(Qwen25VLDialect):
    """A broken dialect: it reads points with the image's width and height swapped."""

    def parse(self, text: str, space: CoordinateSpace) -> list[Any]:
        swapped = CoordinateSpace(Size(space.model.height, space.model.width), space.device)
        return super().parse(text, swapped)


def test_a_width_height_swap_fails_the_round_trip() -> None:
    dialect = _TransposingReader("mobile_use")
    check_round_trip(dialect, Size(1000, 1000))  # a square screen cannot tell
    with pytest.raises(AssertionError, match="px off"):
        check_round_trip(dialect, Size(1080, 2400))


# -- 3. calibration: a target drawn at a known device point, clicked through the agent loop ----------------------------
class TargetScreen(FakeEnv):
    """The fake environment with the calibration target drawn at ``target`` (device pixels)."""

    def __init__(self, size: Size, platform: Platform, target: tuple[int, int], radius: int = 9) -> None:
        self.target, self.radius = target, radius
        super().__init__(size, platform=platform, static=True)

    def _blank(self) -> Image.Image:
        image = super()._blank()
        x, y, r = *self.target, self.radius
        ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill=TARGET_RGB)
        return image


CALIBRATION_SCREENS: dict[Platform, list[Size]] = {
    "mobile": [Size(1080, 2400), Size(2400, 1080), Size(720, 1280)],
    "desktop": [Size(1920, 1080), Size(1366, 768), Size(1080, 1920)],
}


def targets(screen: Size) -> list[tuple[int, int]]:
    w, h = screen
    return [
        (w * 5 // 6, h * 9 // 10),
        (w // 9, h // 13 + 40),
        (w // 2 + 7, h // 2 - 3),
        (w - 15, 14 + h // 20),
    ]


def click_once(env: Environment, dialect: Dialect) -> tuple[PointingModel, Any]:
    model = PointingModel(dialect)
    episode = run_episode(env, Agent(model, dialect), "Tap the red dot.", limits=Limits(max_steps=1))
    steps = list(episode)
    return model, steps


def test_the_target_is_found_where_it_is_drawn() -> None:
    env = TargetScreen(Size(1080, 2400), "mobile", (301, 1707))
    centre = find_target(env.reset().screenshot)
    assert centre is not None and abs(centre[0] - 301) < 0.05 and abs(centre[1] - 1707) < 0.05


@pytest.mark.parametrize(("name", "platform"), CASES, ids=CASE_IDS)
def test_calibration_a_click_at_a_drawn_target_lands_on_it(name: str, platform: Platform) -> None:
    dialect = make_dialect(name, platform)
    for screen in CALIBRATION_SCREENS[platform]:
        allowed = 1
        for target in targets(screen):
            env = TargetScreen(screen, platform, target)
            model, _ = click_once(env, dialect)
            ((shown, _frame, point),) = model.seen
            assert point is not None, f"no target on the {shown} image {name} sent"
            (click,) = env.executed
            assert isinstance(click, Click) and click.x is not None and click.y is not None
            off = max(abs(click.x - target[0]), abs(click.y - target[1]))
            assert off <= allowed, f"{name} on {screen}: target {target}, click at ({click.x}, {click.y})"


class _StatesTheDeviceSize(Qwen25VLDialect):
    """A broken dialect: its prompt states the device's size while the image is resized (a classic bug)."""

    def tool_schema(self, space: CoordinateSpace) -> dict[str, Any]:
        return super().tool_schema(CoordinateSpace(space.device, space.device))


def test_calibration_catches_a_prompt_that_disagrees_with_the_image() -> None:
    dialect = _StatesTheDeviceSize("mobile_use")
    env = TargetScreen(Size(1080, 2400), "mobile", (1000, 2300))
    click_once(env, dialect)
    (click,) = env.executed
    assert isinstance(click, Click) and click.y is not None and abs(click.y - 2300) > 1


# -- calibration on a real X server ---------------------------------------------------------------------------------
TARGET_APP = """
import sys, tkinter as tk
w, h, x, y, r, log = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
root = tk.Tk()
root.geometry(f"{w}x{h}+0+0")
canvas = tk.Canvas(root, width=w, height=h, bg="white", highlightthickness=0, borderwidth=0)
canvas.pack()
canvas.create_rectangle(x - r, y - r, x + r + 1, y + r + 1, fill="#e61414", width=0)
def press(event):
    with open(log, "a") as out:
        out.write(f"{event.x_root} {event.y_root}\\n")
canvas.bind("<ButtonPress>", press)
root.mainloop()
"""

DESKTOP_SCREEN, DESKTOP_TARGET = Size(1366, 768), (1101, 583)
HAVE_X = all(shutil.which(tool) for tool in ("Xvfb", "xclip"))


@pytest.fixture(scope="module")
def target_desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    if not HAVE_X:
        pytest.skip("needs Xvfb and xclip (apt install xvfb xclip)")
    from screenpilot.envs.desktop import SandboxEnv

    folder = tmp_path_factory.mktemp("target")
    script, log = folder / "target_app.py", folder / "presses.txt"
    script.write_text(TARGET_APP, encoding="utf-8")
    args = " ".join(str(v) for v in (*DESKTOP_SCREEN, *DESKTOP_TARGET, 8, log))
    env = SandboxEnv(DESKTOP_SCREEN, app=f"{sys.executable} {script} {args}")
    try:
        yield env, log
    finally:
        env.close()


def _presses(log: Path, count: int) -> list[tuple[int, int]]:
    deadline = time.monotonic() + 5
    while True:
        lines = log.read_text(encoding="utf-8").split() if log.exists() else []
        if len(lines) >= 2 * count or time.monotonic() > deadline:
            return [(int(a), int(b)) for a, b in zip(lines[::2], lines[1::2], strict=True)]
        time.sleep(0.02)


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_calibration_on_a_real_desktop(name: str, target_desktop: tuple[Any, Path]) -> None:
    env, log = target_desktop
    before = len(_presses(log, 0))
    dialect = make_dialect(name, "desktop")
    _, steps = click_once(env, dialect)
    screen = steps[0].screenshot
    centre = find_target(screen)
    assert (
        centre is not None
        and max(abs(centre[0] - DESKTOP_TARGET[0]), abs(centre[1] - DESKTOP_TARGET[1])) < 0.05
    )
    landed = _presses(log, before + 1)[before:]
    assert len(landed) == 1, f"the target app saw {landed}"
    x, y = landed[0]
    assert max(abs(x - DESKTOP_TARGET[0]), abs(y - DESKTOP_TARGET[1])) <= 1, (name, landed)


# -- 4. every action form the dialect writes reads back and is executed -------------------------------------------------
FAST = RetryPolicy(attempts=2, first_wait_s=0.01, max_wait_s=0.02)


def _instant(action: Action) -> Action:
    """The action, a wait shortened to nothing (a wait is a sleep: executing it proves no more)."""
    return Wait(seconds=0) if isinstance(action, Wait) else action


@pytest.fixture(scope="module")
def phone_env() -> Iterator[AndroidEnv]:
    with FakeAdbServer([FakePhone(serial="emulator-5554")]) as server:
        env = AndroidEnv(port=server.port, retry=FAST, timeout_s=5.0, ime_switch_wait_s=0.0)  # type: ignore[arg-type]
        try:
            env.reset()
            yield env
        finally:
            env.close()


@pytest.mark.parametrize(("name", "platform"), CASES, ids=CASE_IDS)
def test_every_action_form_reads_back_and_is_executed(
    name: str, platform: Platform, phone_env: AndroidEnv
) -> None:
    dialect = make_dialect(name, platform)
    assert isinstance(dialect, SupportsCallText)
    screen = Size(1080, 2400)  # the fake phone's screen, so every point is on it
    written, unwritable = check_action_forms(dialect, screen)
    actions = [action for w in written for action in w.parsed]
    fake = FakeEnv(screen, platform=platform)
    fake.reset()
    for action in actions:
        fake.execute(action)  # raises if the fake cannot do it
    assert fake.executed == actions
    outcomes = check_actions(phone_env, [_instant(a) for a in actions])
    assert set(outcomes) == {action_kind(a) for a in actions}
    if platform == "mobile":  # a phone dialect writes only what a phone does
        assert set(outcomes.values()) == {"done"}, outcomes
    assert unwritable, (
        "no dialect writes every action of the vocabulary: the sample must include ones it cannot"
    )


class _ListsAnUnwrittenAction(Qwen25VLDialect):
    """A broken dialect: it lists an action its call_text never writes."""

    def action_names(self) -> frozenset[str]:
        return super().action_names() | {"pinch"}


def test_an_action_listed_but_never_written_fails() -> None:
    with pytest.raises(AssertionError, match="never writes for any sample action: pinch"):
        check_action_forms(_ListsAnUnwrittenAction("mobile_use"), Size(1080, 2400))
