"""The locator cache in a session: the first run grounds, a rerun on the same screen asks the model nothing,
a moved button is found from its anchor, a changed one is grounded again."""

from __future__ import annotations

import json
from pathlib import Path

import screenpilot
from screenpilot.agent.record import load_run
from tests.session.conftest import Demo, needs_x

pytestmark = needs_x


def click_the_button(demo: Demo, out: Path, cache: Path) -> dict[str, int]:
    """One script run: click "the button" once; returns the counts its result.json holds."""
    calls = demo.oracle.calls
    with screenpilot.connect(
        "sandbox", app=demo.app, model=demo.oracle.url, out=out, cache=cache, quiet=True
    ) as s:
        point = s.click("the button")
        demo.wait_for("submit", via="button")
    assert tuple(point) == demo.centre("button")
    press = [e for e in demo.events("press") if e["button"] == 1][-1]
    assert (press["x"], press["y"], press["widget"]) == (*point, "button")
    result = load_run(out).result
    assert result is not None and result.counts is not None
    assert result.counts["model_calls"] == demo.oracle.calls - calls
    return result.counts


def test_reruns_skip_the_model_and_layout_changes_are_handled(demo: Demo, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "locators.json"
    first = click_the_button(demo, tmp_path / "run1", cache)
    assert (first["model_calls"], first["locator_misses"], first["locator_stores"]) == (1, 1, 1)
    assert json.loads(cache.read_text(encoding="utf-8"))  # the anchor is on disk

    again = click_the_button(demo, tmp_path / "run2", cache)
    assert (again["model_calls"], again["locator_hits"]) == (0, 1)

    demo.layout = "moved"
    moved = click_the_button(demo, tmp_path / "run3", cache)
    assert (moved["model_calls"], moved["locator_hits"]) == (0, 1)

    demo.layout = "renamed"
    renamed = click_the_button(demo, tmp_path / "run4", cache)
    assert (renamed["model_calls"], renamed["locator_misses"], renamed["locator_stores"]) == (1, 1, 1)


def test_the_default_cache_lives_next_to_the_script(demo: Demo, tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "flow.py"
    script.parent.mkdir()
    script.write_text(
        "import screenpilot, sys\n"
        f"with screenpilot.connect('sandbox', app={demo.app!r}, model={demo.oracle.url!r},"
        f" out={str(tmp_path / 'run')!r}) as s:\n"
        "    s.click('the button')\n",
        encoding="utf-8",
    )
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert (script.parent / ".screenpilot" / "locators.json").is_file()
    assert "1 model calls; locators: 0 hits, 1 misses" in proc.stderr
