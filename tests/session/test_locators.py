"""The locator cache: entries per target and screen size, atomic shared writes, unusable files refused."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import screenpilot
from screenpilot.actions.coords import Point
from screenpilot.agent.record import load_run
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import SetupError
from screenpilot.model.replay import ReplayModel
from screenpilot.session.locators import FORMAT, VERSION, LocatorCache, LocatorCacheError, LocatorHit
from tests.session.conftest import Demo, needs_x

ROOT = Path(__file__).resolve().parents[2]


def _screen(
    size: tuple[int, int] = (400, 300), at: tuple[int, int] = (40, 40), label: int = 0
) -> Image.Image:
    """A small screen with a textured button at ``at``; ``label`` changes the button's pattern."""
    image = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(image)
    x, y = at
    draw.rectangle((x, y, x + 90, y + 30), fill=(60, 90, 200))
    for i in range(6):
        shade = (i * 40 + label * 97) % 256
        draw.rectangle((x + 8 + i * 13, y + 8, x + 16 + i * 13, y + 22), fill=(shade, 255 - shade, 30))
    return image


BUTTON = Point(85, 55)


def test_a_stored_target_is_found_again_without_asking(tmp_path: Path) -> None:
    path = tmp_path / ".screenpilot" / "locators.json"
    cache = LocatorCache(path)
    assert cache.lookup("the OK button", _screen()) is None
    assert not path.exists()  # created on the first store
    cache.store("the OK button", _screen(), BUTTON)
    hit = cache.lookup("the OK button", _screen())
    assert hit == LocatorHit(point=BUTTON, score=pytest.approx(1.0, abs=1e-3))
    moved = cache.lookup("the OK button", _screen(at=(250, 200)))
    assert moved is not None
    assert moved.point == Point(BUTTON.x + 210, BUTTON.y + 160)
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stores) == (2, 1, 1)


def test_the_file_holds_target_screen_point_and_anchor(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    LocatorCache(path).store("the OK button", _screen(), BUTTON)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["format"], data["version"]) == (FORMAT, VERSION)
    (entry,) = data["entries"]
    assert entry["target"] == "the OK button"
    assert entry["screen"] == [400, 300]
    assert entry["point"] == [85, 55]
    assert set(entry["anchor"]) == {"patch_png", "offset", "screen"}


def test_entries_are_per_screen_size_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    LocatorCache(path).store("the OK button", _screen(), BUTTON)
    cache = LocatorCache(path)
    assert cache.lookup("the OK button", _screen((500, 300))) is None  # another screen size
    assert cache.lookup("the Cancel button", _screen()) is None  # another target
    assert cache.lookup("the OK button", _screen()) is not None
    cache.store("the OK button", _screen((500, 300), at=(300, 100)), Point(345, 115))
    assert [(e.target, str(e.screen)) for e in cache.entries()] == [
        ("the OK button", "400x300"),
        ("the OK button", "500x300"),
    ]


def test_a_changed_target_misses_and_the_new_store_replaces_the_entry(tmp_path: Path) -> None:
    cache = LocatorCache(tmp_path / "locators.json")
    cache.store("the OK button", _screen(), BUTTON)
    changed = _screen(at=(200, 150), label=1)
    assert cache.lookup("the OK button", changed) is None
    cache.store("the OK button", changed, Point(245, 165))
    hit = cache.lookup("the OK button", changed)
    assert hit is not None
    assert hit.point == Point(245, 165)
    assert len(cache) == 1
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stores) == (1, 1, 2)


def test_a_flat_point_is_refused_and_drops_the_old_entry(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    cache = LocatorCache(path)
    cache.store("the blank area", Image.new("RGB", (400, 300), "white"), Point(200, 150))
    assert not path.exists()
    assert cache.stats.refused == 1
    cache.store("the OK button", _screen(), BUTTON)
    cache.store("the OK button", Image.new("RGB", (400, 300), "white"), BUTTON)  # now on a blank screen
    assert len(cache) == 0
    assert cache.lookup("the OK button", _screen()) is None
    assert (cache.stats.stores, cache.stats.refused) == (1, 2)


# -- files that are not a usable cache -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b'{"format": "screenpilot-locators", "version": 1, "entr', "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"", "not JSON"),
        (b'{"name": "my-app", "version": "1.0.0"}', 'no "format": "screenpilot-locators"'),
        (b"[1, 2, 3]", 'no "format"'),
        (
            b'{"format": "screenpilot-locators", "version": 7, "entries": []}',
            "written by a newer screenpilot",
        ),
        (b'{"format": "screenpilot-locators", "version": "1", "entries": []}', "its version is '1'"),
        (
            b'{"format": "screenpilot-locators", "version": 1, "entries": [{"target": "x", "screen": [4, 4], '
            b'"point": [1, 1], "anchor": {"patch_png": "AAAA", "offset": [0, 0], "screen": [4, 4]}}]}',
            "entries.0.anchor.patch_png: Value error, the patch is not a PNG image",
        ),
    ],
)
def test_an_unusable_file_is_a_one_line_error_and_left_untouched(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "locators.json"
    path.write_bytes(content)
    with pytest.raises(LocatorCacheError) as caught:
        LocatorCache(path)
    message = str(caught.value)
    assert isinstance(caught.value, SetupError)
    assert "\n" not in message
    assert message.startswith(f"{path} is not a usable locator cache (")
    assert why in message
    assert "left untouched" in message
    assert path.read_bytes() == content


def test_a_file_spoiled_while_open_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    cache = LocatorCache(path)
    cache.store("the OK button", _screen(), BUTTON)
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(LocatorCacheError, match="not a usable locator cache"):
        cache.store("the Cancel button", _screen(), BUTTON)
    assert path.read_text(encoding="utf-8") == "{}"


def test_a_folder_or_an_unwritable_place_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(LocatorCacheError, match="it is a folder"):
        LocatorCache(tmp_path / "folder")
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocatorCacheError, match=r"^cannot read the locator cache .*: Not a directory$"):
        LocatorCache(tmp_path / "file" / "locators.json")
    (tmp_path / "locators.json.lock").mkdir()  # the lock cannot be taken
    cache = LocatorCache(tmp_path / "locators.json")
    with pytest.raises(
        LocatorCacheError, match=r"^cannot write the locator cache .*locators\.json: Is a directory$"
    ):
        cache.store("the OK button", _screen(), BUTTON)
    assert not (tmp_path / "locators.json").exists()


# -- several processes ---------------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from PIL import Image, ImageDraw
    from screenpilot.actions.coords import Point
    from screenpilot.session.locators import LocatorCache

    path, name, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    cache = LocatorCache(path)
    for i in range(rounds):
        image = Image.new("RGB", (200, 120), (240, 240, 240))
        draw = ImageDraw.Draw(image)
        for j in range(5):
            shade = (hash((name, i, j)) % 200) + 20
            draw.rectangle((20 + j * 14, 20, 30 + j * 14, 50), fill=(shade, 80, 255 - shade))
        cache.store(f"{name} {i}", image, Point(50, 35))
        assert len(cache) >= i + 1
    print(cache.stats.stores)
    """
)


def test_concurrent_writers_never_corrupt_or_lose_entries(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    writers, rounds = 4, 12
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"writer{n}", str(rounds)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    reader = LocatorCache(path)
    while any(p.poll() is None for p in procs):
        reader.entries()  # reads every replacement of the file while it is being written; never a torn file
    for proc in procs:
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert out.strip() == str(rounds)
    targets = {entry.target for entry in LocatorCache(path).entries()}
    assert targets == {f"writer{n} {i}" for n in range(writers) for i in range(rounds)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locators.json", "locators.json.lock"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_the_file_gets_the_usual_permissions_and_keeps_a_shared_files(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    old = os.umask(0o022)
    try:
        LocatorCache(path).store("the OK button", _screen(), BUTTON)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # like any new file; not owner-only
        path.chmod(0o664)  # shared with a group
        LocatorCache(path).store(
            "the OK button", _screen(at=(250, 200)), Point(BUTTON.x + 210, BUTTON.y + 160)
        )
        assert stat.S_IMODE(path.stat().st_mode) == 0o664
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locators.json", "locators.json.lock"]


def test_an_open_cache_sees_what_another_process_stored(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    first, second = LocatorCache(path), LocatorCache(path)
    first.store("the OK button", _screen(), BUTTON)
    hit = second.lookup("the OK button", _screen())
    assert hit is not None
    assert hit.point == BUTTON


# -- in a session, on the sandbox's demo app ----------------------------------------------------------------------
def _fill_and_send(demo: Demo, out: Path, cache: Path) -> tuple[dict[str, int], list[str]]:
    """One script run: type into the field, click the button. Returns the run's counts and the targets the
    model was asked for, after checking what the app received."""
    asked, seen = demo.oracle.calls, len(demo.events())
    with screenpilot.connect(
        "sandbox", app=demo.app, model=demo.oracle.url, out=out, cache=cache, quiet=True
    ) as s:
        s.type_text("Alice", into="the text field")
        s.click("the button")
        _wait_for_submit(demo, seen)
    presses = [e for e in demo.events()[seen:] if e["event"] == "press" and e["button"] == 1]
    assert [(e["widget"], e["x"], e["y"]) for e in presses] == [
        ("entry", *demo.centre("entry")),
        ("button", *demo.centre("button")),
    ]
    result = load_run(out).result
    assert result is not None and result.counts is not None
    assert result.counts["model_calls"] == demo.oracle.calls - asked
    grounded = [
        re.sub(r"^Click (.*?)\. Answer with.*", r"\1", _query(p)) for p in demo.oracle.prompts[asked:]
    ]
    return result.counts, grounded


def _query(prompt: str) -> str:
    return prompt.split("The user query:  ", 1)[1].split("\n", 1)[0]


def _wait_for_submit(demo: Demo, seen: int) -> None:
    deadline = time.monotonic() + 10
    while not any(e["event"] == "submit" and e.get("text") == "Alice" for e in demo.events()[seen:]):
        assert time.monotonic() < deadline, f"the app never sent 'Alice': {demo.events()[seen:]}"
        time.sleep(0.02)


@needs_x
def test_a_rerun_asks_nothing_and_a_moved_button_is_found_from_its_anchor(demo: Demo, tmp_path: Path) -> None:
    cache = tmp_path / ".screenpilot" / "locators.json"
    counts, grounded = _fill_and_send(demo, tmp_path / "run1", cache)
    assert grounded == ["the text field", "the button"]  # the first run grounds every target
    assert (counts["model_calls"], counts["locator_misses"], counts["locator_stores"]) == (2, 2, 2)
    assert {e.target for e in LocatorCache(cache).entries()} == {"the text field", "the button"}

    counts, grounded = _fill_and_send(demo, tmp_path / "run2", cache)
    assert grounded == []
    assert (counts["model_calls"], counts["locator_hits"]) == (0, 2)

    demo.layout = "moved"  # the pad goes on top, the field and the button below it
    counts, grounded = _fill_and_send(demo, tmp_path / "run3", cache)
    # The button's anchor is its label; the empty field's is the window around it, which changed.
    assert grounded == ["the text field"]
    assert (counts["model_calls"], counts["locator_hits"], counts["locator_misses"]) == (1, 1, 1)


@needs_x
def test_a_renamed_button_is_grounded_again_and_its_entry_refreshed(demo: Demo, tmp_path: Path) -> None:
    cache = tmp_path / ".screenpilot" / "locators.json"
    _fill_and_send(demo, tmp_path / "run1", cache)
    before = {e.target: e for e in LocatorCache(cache).entries()}

    demo.layout = "renamed"  # the button reads Submit
    counts, grounded = _fill_and_send(demo, tmp_path / "run2", cache)
    assert grounded == ["the button"]
    assert (counts["model_calls"], counts["locator_hits"], counts["locator_stores"]) == (1, 1, 1)
    after = {e.target: e for e in LocatorCache(cache).entries()}
    assert after["the text field"] == before["the text field"]
    assert after["the button"].point == before["the button"].point
    assert after["the button"].anchor.patch_png != before["the button"].anchor.patch_png

    counts, grounded = _fill_and_send(demo, tmp_path / "run3", cache)
    assert grounded == []
    assert (counts["model_calls"], counts["locator_hits"]) == (0, 2)


def test_connect_refuses_an_unusable_cache_and_leaves_no_run_folder(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    path.write_text('{"name": "not ours"}', encoding="utf-8")
    with pytest.raises(LocatorCacheError, match=r"is not a usable locator cache .*left untouched") as caught:
        screenpilot.connect(
            FakeEnv(), model=ReplayModel([]), out=tmp_path / "run", cache=path, quiet=True, settle=False
        )
    assert "\n" not in str(caught.value)
    assert path.read_text(encoding="utf-8") == '{"name": "not ours"}'
    assert not (tmp_path / "run").exists()


def test_an_unusable_cache_is_refused_before_the_environment_or_model_starts(tmp_path: Path) -> None:
    path = tmp_path / "locators.json"
    path.write_text('{"name": "not ours"}', encoding="utf-8")
    env = FakeEnv()
    with pytest.raises(LocatorCacheError, match="is not a usable locator cache"):
        screenpilot.connect(
            env, model="replay:/nonexistent/answers.jsonl", out=tmp_path / "run", cache=path, settle=False
        )
    assert env.resets == 0
    assert not (tmp_path / "run").exists()
