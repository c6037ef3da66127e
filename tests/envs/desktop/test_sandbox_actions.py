"""Every action, executed in a real Xvfb sandbox, checked against what the real Tk window received.

Demo layout (window client area at 100,100): entry centre (300, 138), Send button centre (580, 138),
pad from (120, 180) to (680, 480).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from screenpilot.actions.types import (
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    MouseMove,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)
from screenpilot.envs.base import SupportsFiles, SupportsShell
from screenpilot.envs.desktop import PointOutsideScreenError, SandboxEnv, UnknownKeyError
from screenpilot.envs.desktop.demo_app import BUTTON, ENTRY, centre
from screenpilot.errors import DeviceError, ModelOutputError, UnsupportedActionError

ENTRY_AT = centre(ENTRY)
BUTTON_AT = centre(BUTTON)
PAD_AT = (400, 300)

Env = tuple[SandboxEnv, Any]


def focus_entry(env: SandboxEnv, log: Any) -> None:
    env.execute(Click(x=ENTRY_AT[0], y=ENTRY_AT[1]))
    log.wait_event("release", widget="entry")
    # Clear whatever earlier tests typed: select all (Tk: ctrl+/) and delete.
    env.execute(Key(keys=("ctrl", "slash")))
    env.execute(Key(keys=("Delete",)))
    log.wait_for(lambda events: any(e["event"] == "key" and e["keysym"] == "Delete" for e in events))
    log.mark()


def test_the_sandbox_offers_shell_and_files() -> None:
    env = SandboxEnv()  # starts nothing until used
    assert isinstance(env, SupportsShell)
    assert isinstance(env, SupportsFiles)
    env.close()


@pytest.mark.parametrize(
    ("button", "count", "number"),
    [("left", 1, 1), ("right", 1, 3), ("middle", 1, 2)],
)
def test_clicks_land_where_asked_with_the_right_button(
    sandbox_app: Env, button: str, count: int, number: int
) -> None:
    env, log = sandbox_app
    env.execute(Click(x=250, y=260, button=button, count=count))  # type: ignore[arg-type]
    press = log.wait_event("press", button=number)
    assert (press["x"], press["y"], press["widget"]) == (250, 260, "pad")
    assert log.wait_event("release", button=number)["widget"] == "pad"


def test_double_click(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(Click(x=PAD_AT[0], y=PAD_AT[1], count=2))
    double = log.wait_event("double")
    assert (double["x"], double["y"]) == PAD_AT
    assert len(log.of("press")) == 2


def test_move_then_click_at_the_cursor(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(MouseMove(x=333, y=444))
    env.execute(Click())
    press = log.wait_event("press")
    assert (press["x"], press["y"]) == (333, 444)


def test_drag_from_a_point_and_from_the_cursor(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(Drag(x=200, y=200, x2=500, y2=400, seconds=0.1))
    release = log.wait_event("release")
    press = log.of("press")[0]
    assert (press["x"], press["y"], release["x"], release["y"]) == (200, 200, 500, 400)

    log.mark()
    env.execute(MouseMove(x=300, y=300))
    env.execute(Drag(x2=600, y2=250, seconds=0.1))
    release = log.wait_event("release")
    press = log.of("press")[0]
    assert (press["x"], press["y"], release["x"], release["y"]) == (300, 300, 600, 250)


def test_long_press_holds_the_button(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(LongPress(x=450, y=350, seconds=0.3))
    release = log.wait_event("release")
    press = log.of("press")[0]
    assert (press["x"], press["y"]) == (450, 350)
    assert release["t"] - press["t"] >= 0.25


def test_scroll_maps_pixels_to_wheel_clicks_at_the_point(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(Scroll(pixels=-300, x=420, y=320))
    log.wait_for(lambda events: len([e for e in events if e["event"] == "wheel"]) >= 3)
    wheels = log.of("wheel")
    assert [w["direction"] for w in wheels] == ["down"] * 3
    assert {(w["x"], w["y"]) for w in wheels} == {(420, 320)}

    log.mark()
    env.execute(Scroll(pixels=40))  # less than one step still scrolls once, upwards, at the cursor
    wheel = log.wait_event("wheel")
    assert (wheel["direction"], wheel["x"], wheel["y"]) == ("up", 420, 320)
    env.execute(Wait(seconds=0.2))
    assert len(log.of("wheel")) == 1


def test_ascii_text_is_typed_key_by_key(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    text = "Hello, World! ~{x}=1+2 \"q\" 'a'"
    env.execute(TypeText(text=text))
    assert log.wait_event("text", text=text)
    assert len(log.of("key")) >= len(text)  # per key, not pasted


def test_unicode_text_arrives_exactly_and_the_clipboard_is_restored(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    clipboard = env.clipboard()
    clipboard.set_text("what the user had ⚙")
    text = "Grüße, 世界 🙂"
    env.execute(TypeText(text=text))
    assert log.wait_event("text", text=text)["text"] == text
    assert clipboard.get_text() == "what the user had ⚙"

    env.execute(Key(keys=("Return",)))
    assert log.wait_event("submit")["text"] == text


@pytest.mark.parametrize("text", ["hello", "héllo", "世界 🙂"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_newline_presses_return_in_any_text(sandbox_app: Env, text: str, newline: str) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    env.execute(TypeText(text=f"{text}{newline}"))
    assert log.wait_event("submit")["text"] == text
    texts = [e["text"] for e in log.of("text")]
    assert texts[-1] == text
    assert not any("\n" in t or "\r" in t for t in texts)  # nothing pasted literally
    assert [e["keysym"] for e in log.of("key") if e["keysym"] == "Return"] == ["Return"]


def test_newlines_and_tabs_inside_unicode_text_press_their_keys(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    env.execute(TypeText(text="ünï\ncödé\tx"))
    assert log.wait_event("submit")["text"] == "ünï"
    log.wait_event("key", keysym="Tab")  # the Tab moves the focus from the entry to the button
    texts = [e["text"] for e in log.of("text")]
    assert texts[-1] == "ünïcödé"
    assert not any("\n" in t or "\t" in t for t in texts)


def test_an_empty_clipboard_is_empty_again_after_pasting(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    clipboard = env.clipboard()
    clipboard.restore(clipboard.save().__class__(None))  # nobody owns the clipboard now
    assert clipboard.targets() == []
    env.execute(TypeText(text="ünïcödé"))
    log.wait_event("text", text="ünïcödé")
    assert clipboard.targets() == []


def test_key_combinations_are_pressed_together_and_all_released(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    env.execute(Key(keys=("Control", "A")))
    combo = log.wait_event("key", keysym="a")
    assert combo["modifiers"] == ["ctrl"]
    log.mark()
    env.execute(TypeText(text="z"))
    plain = log.wait_event("key", keysym="z")
    assert plain["modifiers"] == []  # ctrl was released


@pytest.mark.parametrize(
    ("keys", "keysym"),
    [
        (("Return",), "Return"),
        (("enter",), "Return"),
        (("esc",), "Escape"),
        (("PgDn",), "Next"),
        (("page_up",), "Prior"),
        (("arrowleft",), "Left"),
        (("BackSpace",), "BackSpace"),
        (("F5",), "F5"),
        (("Tab",), "Tab"),
    ],
)
def test_named_keys_reach_the_window(sandbox_app: Env, keys: tuple[str, ...], keysym: str) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    env.execute(Key(keys=keys))
    assert log.wait_event("key", keysym=keysym)


def test_system_button_enter_presses_return(sandbox_app: Env) -> None:
    env, log = sandbox_app
    focus_entry(env, log)
    env.execute(SystemButton(button="enter"))
    assert log.wait_event("key", keysym="Return")


@pytest.mark.parametrize(
    "action",
    [
        SystemButton(button="back"),
        SystemButton(button="home"),
        SystemButton(button="menu"),
        OpenApp(app="Settings"),
        Swipe(x=1, y=1, x2=100, y2=100),
        Answer(text="x"),
        Terminate(status="success"),
    ],
)
def test_phone_only_actions_are_refused_for_the_model(sandbox_app: Env, action: Any) -> None:
    env, log = sandbox_app
    with pytest.raises(UnsupportedActionError) as info:
        env.execute(action)
    assert action.action.split("_")[0] in str(info.value)
    env.execute(Wait(seconds=0.1))
    assert log.new() == []


def test_unknown_keys_are_refused_and_nothing_is_pressed(sandbox_app: Env) -> None:
    env, log = sandbox_app
    with pytest.raises(UnknownKeyError, match="hyperdrive"):
        env.execute(Key(keys=("ctrl", "hyperdrive")))
    with pytest.raises(UnknownKeyError, match="volumeup"):  # a real key name this X keyboard lacks
        env.execute(Key(keys=("volume_up",)))
    env.execute(Wait(seconds=0.1))
    assert log.of("key") == []


@pytest.mark.parametrize("point", [(1280, 10), (10, 800), (-1, 5), (5000, 5000)])
def test_points_outside_the_screen_are_refused(sandbox_app: Env, point: tuple[int, int]) -> None:
    env, _ = sandbox_app
    with pytest.raises(PointOutsideScreenError) as info:
        env.execute(Click(x=point[0], y=point[1]))
    assert isinstance(info.value, ModelOutputError)
    assert "1280x800" in str(info.value)


def test_corners_are_reachable_because_the_fail_safe_is_off(sandbox_app: Env) -> None:
    env, log = sandbox_app
    env.execute(MouseMove(x=0, y=0))
    env.execute(MouseMove(x=1279, y=799))
    env.execute(Click(x=PAD_AT[0], y=PAD_AT[1]))
    assert log.wait_event("press")["x"] == PAD_AT[0]


def test_observation_is_the_virtual_screen_with_the_window_on_it(sandbox_app: Env) -> None:
    env, _ = sandbox_app
    obs = env.observe()
    assert obs.size == (1280, 800)
    assert obs.screenshot.mode == "RGB"
    assert obs.screenshot.getpixel((5, 5)) == env.background  # the desktop around the window
    assert obs.screenshot.getpixel((130, 470)) == (255, 255, 255)  # inside the white pad
    assert obs.info["app_running"] is True
    assert env.settle(timeout_s=1.0).stable


def test_shell_runs_on_the_sandbox_display(sandbox_app: Env) -> None:
    env, _ = sandbox_app
    result = env.shell("echo $DISPLAY; xdpyinfo | grep dimensions; exit 7")
    assert result.exit_code == 7
    assert result.output.splitlines()[0] == env.display
    assert "1280x800 pixels" in result.output


def test_shell_timeout_is_a_device_error(sandbox_app: Env) -> None:
    env, _ = sandbox_app
    with pytest.raises(DeviceError, match="timed out"):
        env.shell("sleep 30", timeout=0.3)


def test_files_round_trip(sandbox_app: Env, tmp_path: Path) -> None:
    env, _ = sandbox_app
    local = tmp_path / "in.txt"
    local.write_bytes("données ✓".encode())
    env.push_file(local, str(tmp_path / "deep" / "out.txt"))
    assert env.read_file(str(tmp_path / "deep" / "out.txt")) == "données ✓".encode()
    with pytest.raises(FileNotFoundError):
        env.read_file(str(tmp_path / "missing"))
    with pytest.raises(DeviceError, match=r"^cannot read .*: Is a directory; device=sandbox$"):
        env.read_file(str(tmp_path / "deep"))
    with pytest.raises(DeviceError, match=r"^cannot read .*: Not a directory; device=sandbox$"):
        env.read_file(str(tmp_path / "deep" / "out.txt" / "below"))


def test_the_callers_display_variable_is_neither_used_nor_changed(
    sandbox_app: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, log = sandbox_app
    monkeypatch.setenv("DISPLAY", ":4321")  # a display that does not exist
    focus_entry(env, log)
    env.execute(TypeText(text="ß"))
    assert log.wait_event("text", text="ß")
    assert env.observe().size == (1280, 800)
    assert os.environ["DISPLAY"] == ":4321"


def test_an_interrupt_while_typing_leaves_no_key_held_down(
    sandbox_app: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands between a key's press and its release (made to happen here on the first release of C):
    on the user's own desktop a key left down would repeat or stay held after the program has stopped."""
    from Xlib.display import Display

    env, log = sandbox_app
    focus_entry(env, log)
    module = env._platform_module
    assert module is not None
    release, released = module._keyUp, []

    def interrupted(key: str) -> None:
        released.append(key)
        if released.count("C") == 1 and key == "C":
            raise KeyboardInterrupt
        release(key)

    monkeypatch.setattr(module, "_keyUp", interrupted)
    with pytest.raises(KeyboardInterrupt):
        env.execute(TypeText(text="abCde"))
    monkeypatch.undo()
    display = Display(env._display)
    try:
        assert not any(display.query_keymap())  # no key down on the sandbox's X server
    finally:
        display.close()
    log.mark()
    env.execute(TypeText(text="z"))
    assert log.wait_event("key", keysym="z")["modifiers"] == []
