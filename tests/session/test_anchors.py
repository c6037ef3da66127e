"""Anchors on real screenshots: the demo app in the sandbox desktop and the fake phone's screen over ADB.

Variants the apps cannot produce by themselves (a widget moved inside the window, a renamed label, a second
identical button) are drawn with PIL onto the real screenshots.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from screenpilot.actions.coords import Point
from screenpilot.envs.android import AndroidEnv, RetryPolicy
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone, default_screen
from screenpilot.envs.desktop import SandboxEnv
from screenpilot.envs.desktop.demo_app import BUTTON, ENTRY, centre
from screenpilot.session import anchors
from screenpilot.session.anchors import (
    CREATE_RIVAL_MAX,
    MATCH_MIN,
    PATCH_SIZES,
    Anchor,
    AnchorError,
    find_anchor,
    make_anchor,
)
from screenpilot.tasks.fonts import FONT_PATHS
from tests.session.conftest import HAVE_X

needs_x = pytest.mark.skipif(not HAVE_X, reason="needs Xvfb and xclip (apt install xvfb xclip)")

DEMO = f"{sys.executable} -m screenpilot.envs.desktop.demo_app"
FONT = next((p for p in FONT_PATHS if Path(p).exists()), None)
needs_font = pytest.mark.skipif(FONT is None, reason="needs DejaVu Sans (apt install fonts-dejavu-core)")

Box = tuple[int, int, int, int]


def _font(size: int) -> ImageFont.FreeTypeFont:
    assert FONT is not None
    return ImageFont.truetype(FONT, size)


def _sandbox_shot(tmp: Path, origin: tuple[int, int]) -> Image.Image:
    log = tmp / f"events-{origin[0]}-{origin[1]}.jsonl"
    with SandboxEnv(app=f"{DEMO} --log {log} --geometry 600x400+{origin[0]}+{origin[1]}") as env:
        env.reset()
        deadline = time.monotonic() + 20
        while '"ready"' not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the demo app never became ready"
            time.sleep(0.05)
        time.sleep(0.3)  # the first frame is drawn just after the ready event
        return env.observe().screenshot


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image.Image]:
    """Real screenshots of the demo app: at its usual place, and re-rendered with the window elsewhere."""
    if not HAVE_X:
        pytest.skip("needs Xvfb and xclip (apt install xvfb xclip)")
    tmp = tmp_path_factory.mktemp("desk")
    return {"home": _sandbox_shot(tmp, (100, 100)), "moved": _sandbox_shot(tmp, (300, 250))}


def _screen_box(rect: tuple[int, int, int, int], origin: tuple[int, int] = (100, 100)) -> Box:
    x, y, w, h = rect
    return origin[0] + x, origin[1] + y, origin[0] + x + w, origin[1] + y + h


SEND = Point(*centre(BUTTON))
SEND_BOX = _screen_box(BUTTON)


def _moved_button(shot: Image.Image, dx: int, dy: int) -> Image.Image:
    """The button cut out (the window's grey left behind) and pasted ``dx, dy`` away."""
    out = shot.copy()
    button = shot.crop(SEND_BOX)
    background = shot.getpixel((SEND_BOX[0] - 8, SEND_BOX[1] - 8))
    ImageDraw.Draw(out).rectangle(
        (SEND_BOX[0], SEND_BOX[1], SEND_BOX[2] - 1, SEND_BOX[3] - 1), fill=background
    )
    out.paste(button, (SEND_BOX[0] + dx, SEND_BOX[1] + dy))
    return out


def _relabelled(shot: Image.Image, box: Box, label: str, size: int = 19) -> Image.Image:
    """The button with its face repainted and ``label`` written in the middle."""
    out = shot.copy()
    face = shot.getpixel((box[0] + 5, box[1] + 5))
    draw = ImageDraw.Draw(out)
    draw.rectangle((box[0] + 4, box[1] + 4, box[2] - 5, box[3] - 5), fill=face)
    middle = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
    draw.text(middle, label, font=_font(size), fill=(0, 0, 0), anchor="mm")
    return out


# -- the desktop ---------------------------------------------------------------------------------------------------
@needs_x
def test_found_in_place_with_a_small_patch(desk: dict[str, Image.Image]) -> None:
    anchor = make_anchor(desk["home"], SEND)
    assert anchor.patch.size == PATCH_SIZES[0]  # the label alone identifies the button
    match = find_anchor(anchor, desk["home"], near=SEND)
    assert match is not None
    assert match.point == SEND
    assert match.score > 0.99
    assert match.runner_up <= CREATE_RIVAL_MAX


@needs_x
def test_found_after_the_window_moved(desk: dict[str, Image.Image]) -> None:
    anchor = make_anchor(desk["home"], SEND)
    for near in (SEND, None):
        match = find_anchor(anchor, desk["moved"], near=near)
        assert match is not None
        assert match.point == Point(SEND.x + 200, SEND.y + 150)


@needs_x
@pytest.mark.parametrize(("dx", "dy"), [(0, 300), (-420, 120), (10, 4)])
def test_found_after_the_button_moved_inside_the_window(
    desk: dict[str, Image.Image], dx: int, dy: int
) -> None:
    anchor = make_anchor(desk["home"], SEND)
    moved = _moved_button(desk["home"], dx, dy)
    match = find_anchor(anchor, moved, near=SEND)
    assert match is not None
    assert match.point == Point(SEND.x + dx, SEND.y + dy)
    assert find_anchor(anchor, desk["home"].crop((0, 0, 400, 300)), near=SEND) is None  # gone from view


@needs_x
@needs_font
@pytest.mark.parametrize("label", ["Save", "Sent", "Submit"])
def test_not_found_when_the_label_changed(desk: dict[str, Image.Image], label: str) -> None:
    """Both labels are drawn the same way, so the label is the only difference."""
    before = _relabelled(desk["home"], SEND_BOX, "Send")
    anchor = make_anchor(before, SEND)
    moved = before.copy()
    moved.paste(before.crop(SEND_BOX), (SEND_BOX[0] - 300, SEND_BOX[1] + 200))
    moved.paste(desk["home"].crop(SEND_BOX), SEND_BOX[:2])
    match = find_anchor(anchor, moved, near=SEND)
    assert match is not None  # the same drawing, moved, is found
    assert match.point == Point(SEND.x - 300, SEND.y + 200)
    renamed = _relabelled(desk["home"], SEND_BOX, label)
    assert find_anchor(anchor, renamed, near=SEND) is None
    assert find_anchor(anchor, renamed) is None


@needs_x
@pytest.mark.parametrize(("dx", "dy"), [(-300, 200), (-297, 203), (-421, 310)])
def test_not_found_when_a_second_identical_button_appears(
    desk: dict[str, Image.Image], dx: int, dy: int
) -> None:
    anchor = make_anchor(desk["home"], SEND)
    twice = desk["home"].copy()
    twice.paste(desk["home"].crop(SEND_BOX), (SEND_BOX[0] + dx, SEND_BOX[1] + dy))
    assert find_anchor(anchor, twice, near=SEND) is None
    assert find_anchor(anchor, twice) is None


@needs_x
def test_a_slight_tint_is_still_found(desk: dict[str, Image.Image]) -> None:
    """A hover highlight lightens the button a little; the label still identifies it."""
    anchor = make_anchor(desk["home"], SEND)
    tinted = desk["home"].copy()
    tinted.paste(desk["home"].crop(SEND_BOX).point(lambda v: min(v + 12, 255)), SEND_BOX[:2])
    match = find_anchor(anchor, tinted, near=SEND)
    assert match is not None
    assert match.point == SEND
    assert match.score >= MATCH_MIN


@needs_x
def test_a_flat_region_is_not_an_anchor(desk: dict[str, Image.Image]) -> None:
    with pytest.raises(AnchorError, match=r"no anchor at \(1100, 700\).* is flat"):
        make_anchor(desk["home"], Point(1100, 700))


@needs_x
def test_an_empty_field_grows_its_patch_until_it_is_unique(desk: dict[str, Image.Image]) -> None:
    """The middle of the empty entry is plain white; only a larger patch, reaching its ends, places it."""
    field = Point(*centre(ENTRY))
    anchor = make_anchor(desk["home"], field)
    assert anchor.patch.size[0] > PATCH_SIZES[0][0]
    match = find_anchor(anchor, desk["moved"], near=field)
    assert match is not None
    assert match.point == Point(field.x + 200, field.y + 150)


@needs_x
def test_context_alone_is_not_a_match(desk: dict[str, Image.Image]) -> None:
    """The empty field's anchor is mostly the window around it; with the field gone, the window still
    matches, but the field itself (the anchor's core) does not, so nothing is returned."""
    field = Point(*centre(ENTRY))
    anchor = make_anchor(desk["home"], field)
    gone = desk["home"].copy()
    box = _screen_box(ENTRY)
    ImageDraw.Draw(gone).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 255, 255))
    assert find_anchor(anchor, gone, near=field) is None


@needs_x
def test_the_json_form_reads_back_and_still_finds(desk: dict[str, Image.Image]) -> None:
    anchor = make_anchor(desk["home"], SEND)
    data = json.loads(json.dumps(anchor.model_dump(mode="json")))
    assert set(data) == {"patch_png", "offset", "screen"}
    assert data["screen"] == [1280, 800]
    again = Anchor.model_validate(data)
    assert again.offset == anchor.offset
    match = find_anchor(again, desk["moved"], near=SEND)
    assert match is not None
    assert match.point == Point(SEND.x + 200, SEND.y + 150)


def test_a_broken_json_form_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a readable base64 PNG"):
        Anchor.model_validate({"patch_png": "not base64!", "offset": [1, 1], "screen": [10, 10]})
    patch = make_anchor(_phone_screen(), Point(820, 2260)).model_dump(mode="json")
    with pytest.raises(ValidationError, match="outside the 64x32 patch"):
        Anchor.model_validate({**patch, "offset": [64, 3]})


# -- the fake phone ------------------------------------------------------------------------------------------------
LABELS = ("Network", "Bluetooth", "Display", "Sound", "Storage", "Battery")
SAVE = Point(820, 2260)


def _phone_screen(*, labels: tuple[str, ...] = LABELS, button: str = "Save", lift: int = 0) -> Image.Image:
    """The fake phone's default screen with row labels and a button (``lift`` pixels higher)."""
    image = default_screen((1080, 2400))
    if FONT is None:
        pytest.skip("needs DejaVu Sans (apt install fonts-dejavu-core)")
    draw = ImageDraw.Draw(image)
    font = _font(44)
    draw.text((60, 110), "Settings", font=font, fill="white")
    for row, label in enumerate(labels):
        draw.text((90, 300 + row * 240 + 40), label, font=font, fill=(20, 20, 20))
    top = 2200 - lift
    draw.rounded_rectangle((640, top, 1000, top + 120), 20, fill=(25, 118, 210))
    draw.text((820, top + 60), button, font=font, fill="white", anchor="mm")
    return image


@pytest.fixture
def phone_env() -> Iterator[tuple[FakePhone, AndroidEnv]]:
    phone = FakePhone(serial="emulator-5554", screen=_phone_screen())
    with FakeAdbServer([phone]) as server:
        env = AndroidEnv(port=server.port, retry=RetryPolicy(attempts=2, first_wait_s=0.01, max_wait_s=0.02))
        try:
            env.reset()
            yield phone, env
        finally:
            env.close()


def test_phone_button_found_in_place_and_after_a_move(phone_env: tuple[FakePhone, AndroidEnv]) -> None:
    phone, env = phone_env
    anchor = make_anchor(env.observe().screenshot, SAVE)
    match = find_anchor(anchor, env.observe().screenshot, near=SAVE)
    assert match is not None
    assert match.point == SAVE
    phone.set_screen(_phone_screen(lift=700))
    match = find_anchor(anchor, env.observe().screenshot, near=SAVE)
    assert match is not None
    assert match.point == Point(SAVE.x, SAVE.y - 700)


def test_phone_button_renamed_is_not_found(phone_env: tuple[FakePhone, AndroidEnv]) -> None:
    phone, env = phone_env
    anchor = make_anchor(env.observe().screenshot, SAVE)
    phone.set_screen(_phone_screen(button="Send"))
    assert find_anchor(anchor, env.observe().screenshot, near=SAVE) is None


def test_phone_row_is_ambiguous_once_two_rows_read_the_same(phone_env: tuple[FakePhone, AndroidEnv]) -> None:
    phone, env = phone_env
    sound = Point(200, 300 + 3 * 240 + 60)
    anchor = make_anchor(env.observe().screenshot, sound)
    phone.set_screen(_phone_screen(labels=("Network", "Sound", "Display", "Sound", "Storage", "Battery")))
    assert find_anchor(anchor, env.observe().screenshot, near=sound) is None


def test_identical_rows_without_text_are_not_an_anchor(phone_env: tuple[FakePhone, AndroidEnv]) -> None:
    """The plain default screen: six identical rows; a point at a row's corner matches every row."""
    phone, env = phone_env
    phone.set_screen(default_screen((1080, 2400)))
    with pytest.raises(AnchorError, match="is not unique within 512x256 pixels"):
        make_anchor(env.observe().screenshot, Point(60, 2400 // 8 + 2400 // 10 + 5))


def test_a_patch_larger_than_the_screenshot_is_not_found() -> None:
    anchor = make_anchor(_phone_screen(), SAVE)
    assert find_anchor(anchor, Image.new("RGB", (40, 20), "white")) is None


def _shifted(shot: Image.Image, dx: int, dy: int) -> Image.Image:
    """The whole screen content moved by ``dx, dy`` (as a scroll or a moved window would); the edge that
    comes into view takes the colour of the screen's own edge there."""
    out = Image.new("RGB", shot.size, shot.getpixel((0, shot.height - 1 if dy < 0 else 0)))
    out.paste(shot, (dx, dy))
    return out


def _never_wrong(shot: Image.Image, points: list[Point], shift: tuple[int, int]) -> int:
    """Anchors made at ``points`` find their own point, and on the shifted screen the shifted point, or
    nothing when their patch would cross the screen's edge; returns how many anchors were made."""
    moved = _shifted(shot, *shift)
    made = 0
    for point in points:
        try:
            anchor = make_anchor(shot, point)
        except AnchorError:
            continue
        made += 1
        match = find_anchor(anchor, shot, near=point)
        assert match is not None and match.point == point, (point, match)
        match = find_anchor(anchor, moved, near=point)
        left, top = point.x - anchor.offset.x + shift[0], point.y - anchor.offset.y + shift[1]
        width, height = anchor.patch.size
        if left >= 0 and top >= 0 and left + width <= shot.width and top + height <= shot.height:
            assert match is not None, (point, anchor.patch.size)
        if match is not None:
            assert match.point == Point(point.x + shift[0], point.y + shift[1]), (point, match)
    return made


@needs_x
def test_anchors_anywhere_on_the_desktop_find_their_point_or_nothing(desk: dict[str, Image.Image]) -> None:
    points = [Point(x, y) for x in range(130, 700, 95) for y in range(115, 500, 75)]
    assert _never_wrong(desk["home"], points, (37, -23)) >= len(points) // 2


def test_anchors_anywhere_on_the_phone_find_their_point_or_nothing() -> None:
    points = [Point(x, y) for x in range(100, 1080, 190) for y in range(150, 2400, 330)]
    assert _never_wrong(_phone_screen(), points, (0, -262)) >= len(points) // 3


@needs_x
@pytest.mark.parametrize(
    ("point", "shift"),
    [
        # the pad's corner against the window's edge: a fainter corner 20 px away has the same shape
        (Point(160, 470), (150, 201)),
        # a patch that would now reach past the screen's left edge: a partial match there is off by 13 px
        (Point(160, 110), (-45, 17)),
        # a shift that is not a multiple of the reduced search's scale, near look-alike edges
        (Point(610, 245), (3, -2)),
    ],
)
def test_found_exactly_or_not_at_all_after_a_shift(
    desk: dict[str, Image.Image], point: Point, shift: tuple[int, int]
) -> None:
    assert _never_wrong(desk["home"], [point], shift) == 1


def _outlined(at: tuple[int, int], ink: tuple[int, int, int]) -> Image.Image:
    """A blank screen with one outlined box with a tab (so its outline has a single place) at ``at``."""
    image = Image.new("RGB", (800, 600), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    x, y = at
    draw.rectangle((x, y, x + 90, y + 40), outline=ink, width=3)
    draw.rectangle((x + 10, y - 12, x + 40, y), outline=ink, width=3)
    return image


def test_a_faint_outline_of_the_same_shape_is_not_a_match() -> None:
    """Correlation ignores contrast; the contrast rule keeps a pale ghost from passing for the element."""
    strong = _outlined((100, 100), (20, 20, 20))
    anchor = make_anchor(strong, Point(145, 120))
    moved = find_anchor(anchor, _outlined((400, 300), (20, 20, 20)), near=Point(145, 120))
    assert moved is not None
    assert moved.point == Point(445, 320)
    assert find_anchor(anchor, _outlined((400, 300), (110, 110, 110)), near=Point(145, 120)) is None


def _zncc_by_hand(screen: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """ZNCC at every place, window by window, in float64 (flat windows: 0), the definition the search uses."""
    height, width = patch.shape
    centred = patch - patch.mean()
    out = np.zeros((screen.shape[0] - height + 1, screen.shape[1] - width + 1))
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            window = screen[y : y + height, x : x + width].astype(np.float64)
            if window.std() * 4 > anchors.FLAT_STD:
                out[y, x] = (centred * (window - window.mean())).sum() / (
                    np.linalg.norm(centred) * np.linalg.norm(window - window.mean())
                )
    return out


def test_scores_match_the_definition_whatever_ran_before_on_this_thread() -> None:
    """The search reuses its working arrays from one call to the next: a call of another size in between,
    or the same size again, leaves no trace in the scores."""
    rng = np.random.default_rng(7)
    cases = [
        (rng.integers(0, 256, (40, 70)).astype(np.uint8), rng.integers(0, 256, (9, 13)).astype(np.float32)),
        (rng.integers(0, 256, (33, 50)).astype(np.uint8), rng.integers(0, 256, (8, 8)).astype(np.float32)),
    ]
    cases[0][0][:12, :20] = 90  # a flat corner scores 0
    expected = [_zncc_by_hand(screen, patch) for screen, patch in cases]
    for screen, patch in [*cases, *cases, cases[0]]:
        plane = anchors._Plane.of(screen, transient=True)
        scores = plane.zncc(anchors._Patch(patch)).copy()
        want = expected[0] if screen is cases[0][0] else expected[1]
        np.testing.assert_allclose(scores, want, atol=2e-5)
    assert expected[0][0, 0] == 0


def test_finding_is_the_same_in_parallel_threads_and_without_numpy_2_ffts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Working arrays are per thread; numpy 1's FFTs (no ``out=``) give the very same answers."""
    shot = _phone_screen()
    moved = _phone_screen(lift=300)
    made = [make_anchor(shot, SAVE), make_anchor(shot, Point(150, 362))]  # the button, a row label
    cases = [(anchor, screen) for anchor in made for screen in (shot, moved)]
    alone = [find_anchor(anchor, screen, near=SAVE) for anchor, screen in cases]
    assert alone[0] is not None and alone[1] is not None and alone[1].point.y == SAVE.y - 300
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda c: find_anchor(c[0], c[1], near=SAVE), cases * 4))
    assert together == alone * 4
    monkeypatch.setattr(anchors, "_FFT_OUT", False)
    assert [find_anchor(anchor, screen, near=SAVE) for anchor, screen in cases] == alone
