"""Settling after an action in a real sandbox, with an app that redraws a little after each click."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from screenpilot.actions.types import Click
from screenpilot.envs.desktop import SandboxEnv

#: A window whose colour flips between white and black 200 ms after each click, as slow apps redraw.
LATE_REDRAW_APP = """
import tkinter as tk
root = tk.Tk()
root.geometry("400x300+100+100")
pad = tk.Canvas(root, background="white", highlightthickness=0)
pad.pack(fill="both", expand=True)
def flip():
    pad.configure(background="black" if pad.cget("background") == "white" else "white")
pad.bind("<ButtonPress-1>", lambda e: root.after(200, flip))
root.mainloop()
"""
POINT = (300, 250)
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


@pytest.fixture(scope="module")
def late_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEnv]:
    script = tmp_path_factory.mktemp("late") / "late_redraw.py"
    script.write_text(LATE_REDRAW_APP)
    env = SandboxEnv(app=f"{sys.executable} {script}")
    try:
        env.reset()
        yield env
    finally:
        env.close()


def colour(env: SandboxEnv) -> object:
    return env.observe().screenshot.getpixel(POINT)


def flip_and_settle(env: SandboxEnv, **options: float) -> tuple[object, object]:
    """Click, settle; the colour settle ended on and the colour once the app has surely redrawn."""
    env.execute(Click(x=POINT[0], y=POINT[1]))
    result = env.settle(**options)
    assert result.stable and result.last is not None
    settled = result.last.getpixel(POINT)
    env.settle(min_wait_s=0.6)
    return settled, colour(env)


def test_settle_waits_for_a_redraw_that_comes_200_ms_after_the_click(late_app: SandboxEnv) -> None:
    before = colour(late_app)
    assert before in (WHITE, BLACK)
    settled, after = flip_and_settle(late_app)
    assert after != before
    assert settled == after


def test_the_minimum_wait_is_an_option_of_the_environment_and_of_each_settle(late_app: SandboxEnv) -> None:
    before = colour(late_app)
    settled, after = flip_and_settle(late_app, min_wait_s=0)  # two equal frames 0.1 s apart come first
    assert (settled, after) == (before, WHITE if before == BLACK else BLACK)

    late_app.settle_min_wait_s = 0.0
    try:
        settled, after = flip_and_settle(late_app)
        assert settled != after
        settled, after = flip_and_settle(late_app, min_wait_s=0.3)
        assert settled == after
    finally:
        late_app.settle_min_wait_s = None


def test_reset_waits_for_the_app_to_draw(tmp_path: Path) -> None:
    script = tmp_path / "late_first_draw.py"
    # The window maps at once with a white pad and turns black 200 ms later.
    script.write_text(LATE_REDRAW_APP.replace("root.mainloop()", "root.after(200, flip)\nroot.mainloop()"))
    with SandboxEnv(app=f"{sys.executable} {script}") as env:
        first = env.reset()
        assert first.screenshot.getpixel(POINT) == BLACK
