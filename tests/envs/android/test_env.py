"""AndroidEnv against the fake ADB server: what reaches the device, and how failures surface."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

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
from screenpilot.envs.android import AndroidEnv, list_devices
from screenpilot.envs.android.apps import AppNotFoundError
from screenpilot.envs.android.device import DeviceListing, choose_serial
from screenpilot.envs.android.fake_server import ADB_KEYBOARD_IME, LATIN_IME, FakeAdbServer, FakePhone
from screenpilot.envs.android.text import TextInputError
from screenpilot.envs.base import SupportsFiles, SupportsScreenText, SupportsShell
from screenpilot.envs.conformance import check_environment
from screenpilot.errors import DeviceError, SetupError, UnsupportedActionError

MakeEnv = Callable[..., AndroidEnv]


# -- device selection ----------------------------------------------------------------------------------------
def test_the_only_device_is_chosen_and_the_server_comes_from_the_environment(
    server: FakeAdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANDROID_ADB_SERVER_HOST", server.host)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    env = AndroidEnv()
    assert env.serial == "emulator-5554"
    assert list_devices() == [DeviceListing("emulator-5554", "device", "Pixel_7")]


def test_serial_argument_and_android_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    phones = [FakePhone(serial="emulator-5554"), FakePhone(serial="R58M123")]
    with FakeAdbServer(phones) as fake:
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        with pytest.raises(SetupError, match=r"2 Android devices are connected \(emulator-5554 .*R58M123"):
            AndroidEnv(port=fake.port)
        assert AndroidEnv("R58M123", port=fake.port).serial == "R58M123"
        monkeypatch.setenv("ANDROID_SERIAL", "R58M123")
        env = AndroidEnv(port=fake.port)
        assert env.serial == "R58M123"
        env.reset()
        env.execute(Click(x=3, y=4))
        assert phones[1].inputs == ["input tap 3 4"]
        assert phones[0].inputs == []


def test_selection_errors_are_setup_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    listings = [DeviceListing("A1", "unauthorized"), DeviceListing("B2", "offline")]
    with pytest.raises(SetupError, match=r"no Android device is ready \(adb devices: A1 \[unauthorized\]"):
        choose_serial(listings)
    with pytest.raises(SetupError, match="accept the USB debugging prompt"):
        choose_serial(listings, "A1")
    with pytest.raises(SetupError, match="'C3' is not connected; connected devices: A1"):
        choose_serial(listings, "C3")
    with FakeAdbServer([]) as empty, pytest.raises(SetupError, match="no Android device is ready"):
        AndroidEnv(port=empty.port)


def test_unreachable_server_is_a_setup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = _recording_adb(tmp_path, monkeypatch)
    with FakeAdbServer([]) as fake:
        port = fake.port
    with pytest.raises(SetupError, match=f"cannot reach the ADB server at 127.0.0.1:{port}") as caught:
        AndroidEnv(port=port)
    assert str(caught.value).endswith(
        "; start it with `adb start-server`, or point ANDROID_ADB_SERVER_HOST and ANDROID_ADB_SERVER_PORT at yours"
    )
    assert not record.exists()  # no `adb start-server` behind the user's back


# -- the shared contract -------------------------------------------------------------------------------------
def test_conformance(make_env: MakeEnv) -> None:
    first = check_environment(make_env, safe_actions=(Wait(seconds=0), Click(x=540, y=1200)))
    assert first.size == (1080, 2400)


def test_capabilities(env: AndroidEnv, phone: FakePhone, tmp_path: Path) -> None:
    assert isinstance(env, SupportsShell)
    assert isinstance(env, SupportsFiles)
    assert isinstance(env, SupportsScreenText)
    assert env.shell("echo hello; false") == ("hello\n", 1)
    assert env.shell("getprop ro.product.model").exit_code == 0
    assert env.shell("no-such-tool").exit_code == 127
    assert env.shell("exit 3") == ("", 3)
    assert env.shell("echo hi; exit 4") == ("hi\n", 4)
    assert env.shell("(exit 5); echo after $?") == ("after 5\n", 0)
    assert env.shell("echo continued \\") == ("continued\n", 0)  # a trailing backslash
    local = tmp_path / "notes.txt"
    local.write_bytes(b"milk\neggs\n")
    env.push_file(local, "/sdcard/notes.txt")
    assert phone.files["/sdcard/notes.txt"] == b"milk\neggs\n"
    assert env.read_file("/sdcard/notes.txt") == b"milk\neggs\n"
    with pytest.raises(FileNotFoundError):
        env.read_file("/sdcard/missing.txt")


def test_push_into_a_directory_keeps_the_name_and_describe_reads_the_device(
    make_env: MakeEnv, phone: FakePhone, tmp_path: Path
) -> None:
    env = make_env()
    assert env.describe()["model"] == "Pixel_7"  # before reset, for run manifests
    local = tmp_path / "photo.jpg"
    local.write_bytes(b"\xff\xd8jpeg")
    env.reset()
    env.push_file(local, "/sdcard")
    assert phone.files["/sdcard/photo.jpg"] == b"\xff\xd8jpeg"


def test_screen_text_reads_the_ui_dump(env: AndroidEnv, phone: FakePhone) -> None:
    phone.ui_xml = (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">"
        '<node text="" content-desc="Navigate up"><node text="Wi‑Fi &amp; network" content-desc="" />'
        '<node text="Bluetooth" content-desc="" /></node></hierarchy>'
    )
    assert env.screen_text() == "Navigate up\nWi‑Fi & network\nBluetooth"
    phone.ui_xml = None
    with pytest.raises(DeviceError, match="uiautomator dump failed"):
        env.screen_text()


def test_a_failed_ui_dump_never_returns_the_previous_screen(env: AndroidEnv, phone: FakePhone) -> None:
    phone.ui_xml = '<?xml version="1.0"?><hierarchy><node text="Wi-Fi is off" content-desc=""/></hierarchy>'
    assert env.screen_text() == "Wi-Fi is off"
    phone.ui_idle = False  # uiautomator prints an error, writes nothing and exits 0
    with pytest.raises(DeviceError, match="uiautomator dump failed: ERROR: could not get idle state"):
        env.screen_text()
    phone.ui_idle = True
    phone.handlers["uiautomator"] = lambda device, argv: (b"", 0)  # silent, no file
    with pytest.raises(DeviceError, match="uiautomator dump failed"):
        env.screen_text()


# -- observation ---------------------------------------------------------------------------------------------
def test_observation_uses_raw_screencap_and_reports_the_screen(env: AndroidEnv, phone: FakePhone) -> None:
    marked = Image.new("RGB", (1080, 2400), (255, 255, 255))
    ImageDraw.Draw(marked).rectangle((100, 200, 300, 400), fill=(255, 0, 0))
    phone.set_screen(marked)
    observation = env.observe()
    assert observation.size == (1080, 2400)
    assert observation.screenshot.getpixel((200, 300)) == (255, 0, 0)
    assert observation.info["capture"] == "raw"
    assert observation.info["orientation"] == "portrait"
    assert observation.info["rotation"] == 0
    assert phone.ran[-1] == "screencap"


def test_png_fallback_and_undecodable_screens(make_env: MakeEnv, phone: FakePhone) -> None:
    env = make_env()
    phone.broken_screencap = True
    env.reset()
    assert env.observe().info["capture"] == "png"
    assert "screencap -p" in phone.commands
    phone.broken_png = True
    with pytest.raises(DeviceError, match="unreadable screenshot") as caught:
        env.observe()
    assert caught.value.device == "emulator-5554"
    assert caught.value.command == "screencap -p 2>/dev/null"


def test_a_multi_display_warning_does_not_spoil_the_capture(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.several_displays = True
    env = make_env()
    assert env.reset().info["capture"] == "raw"
    assert "screencap 2>/dev/null" in phone.shell_log[-1]


def test_raw_only_capture_refuses_garbage(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.broken_screencap = True
    env = make_env(capture="raw")
    with pytest.raises(DeviceError, match="unreadable screenshot: raw screencap"):
        env.reset()
    assert "screencap -p" not in phone.commands


def test_rotation_and_override_size(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.override_size = (720, 1600)
    phone.rotation = 1
    phone.set_screen(Image.new("RGB", (2400, 1080), (10, 200, 10)))  # screencap is physical, turned
    env = make_env()
    observation = env.reset()
    assert observation.size == (1600, 720)  # the frame `input tap` uses
    assert observation.info["orientation"] == "landscape"
    assert observation.info["override_size"] == "720x1600"
    assert observation.info["capture_size"] == "2400x1080"
    phone.rotation = 0
    phone.set_screen(Image.new("RGB", (1080, 2400), (10, 200, 10)))
    assert env.observe().size == (720, 1600)
    assert env.describe()["rotation"] == 0


@pytest.mark.parametrize("rotation", [1, 3])
def test_captures_in_the_natural_orientation_are_turned_back(
    make_env: MakeEnv, phone: FakePhone, rotation: int
) -> None:
    phone.rotation = rotation
    phone.capture_follows_rotation = False
    screen = Image.new("RGB", (2400, 1080), (255, 255, 255))  # what the user sees, landscape
    ImageDraw.Draw(screen).rectangle((0, 0, 99, 99), fill=(0, 0, 255))  # top-left corner
    phone.set_screen(screen)
    env = make_env()
    observation = env.reset()
    assert observation.info["capture_size"] == "1080x2400"
    assert observation.size == (2400, 1080)
    assert observation.screenshot.getpixel((10, 10)) == (0, 0, 255)
    assert observation.screenshot.getpixel((2390, 1070)) == (255, 255, 255)


# -- actions -------------------------------------------------------------------------------------------------
def test_touch_actions_reach_the_device(env: AndroidEnv, phone: FakePhone) -> None:
    env.execute(Click(x=925, y=405))
    env.execute(Click(x=10, y=20, count=2))
    env.execute(LongPress(x=5, y=6, seconds=2.0))
    env.execute(Swipe(x=540, y=1800, x2=540, y2=600, seconds=0.4))
    env.execute(Drag(x=1, y=2, x2=300, y2=400, seconds=1.5))
    env.execute(Scroll(pixels=-5))
    env.execute(Scroll(pixels=300, x=100, y=1000))
    assert phone.inputs == [
        "input tap 925 405",
        "input tap 10 20",
        "input tap 10 20",
        "input swipe 5 6 5 6 2000",
        "input swipe 540 1800 540 600 400",
        "input draganddrop 1 2 300 400 1500",
        "input swipe 540 1800 540 600 300",
        "input swipe 100 850 100 1150 300",
    ]
    assert any("\ninput tap 10 20 && input tap 10 20\n" in line for line in phone.shell_log)


def test_drag_without_draganddrop_is_a_slow_swipe(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.draganddrop = False
    env = make_env()
    env.reset()
    env.execute(Drag(x=1, y=2, x2=3, y2=4, seconds=0.2))
    assert phone.inputs[-1] == "input swipe 1 2 3 4 1000"


def test_keys_buttons_waits_and_final_actions(env: AndroidEnv, phone: FakePhone) -> None:
    env.execute(Key(keys=("volume_up",)))
    env.execute(Key(keys=("KEYCODE_ENTER",)))
    env.execute(Key(keys=("67",)))
    env.execute(Key(keys=("ctrl", "a")))
    for button in ("back", "home", "menu", "enter"):
        env.execute(SystemButton(button=button))  # type: ignore[arg-type]
    started = time.monotonic()
    env.execute(Wait(seconds=0.2))
    assert time.monotonic() - started >= 0.2
    before = list(phone.commands)
    env.execute(Answer(text="42"))
    env.execute(Terminate(status="success"))
    assert phone.commands == before
    assert phone.inputs == [
        "input keyevent KEYCODE_VOLUME_UP",
        "input keyevent KEYCODE_ENTER",
        "input keyevent KEYCODE_DEL",
        "input keycombination KEYCODE_CTRL_LEFT KEYCODE_A",
        "input keyevent KEYCODE_BACK",
        "input keyevent KEYCODE_HOME",
        "input keyevent KEYCODE_MENU",
        "input keyevent KEYCODE_ENTER",
    ]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (Click(x=1, y=2, button="right"), "no right mouse button"),
        (Click(x=1, y=2, button="middle"), "no middle mouse button"),
        (Click(), "click needs a coordinate"),
        (MouseMove(x=1, y=2), "no mouse pointer"),
        (Drag(x2=3, y2=4), "drag needs a start coordinate"),
        (Key(keys=("hyperspace",)), "Unknown key 'hyperspace'"),
    ],
)
def test_phone_less_actions_are_model_errors(
    env: AndroidEnv, phone: FakePhone, action: object, message: str
) -> None:
    with pytest.raises(UnsupportedActionError, match=message):
        env.execute(action)  # type: ignore[arg-type]
    assert phone.inputs == []


def test_key_combinations_need_a_recent_android(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.sdk = 30
    env = make_env()
    env.reset()
    with pytest.raises(UnsupportedActionError, match="cannot press keys together"):
        env.execute(Key(keys=("ctrl", "c")))


def test_a_refused_input_command_is_a_device_error(env: AndroidEnv, phone: FakePhone) -> None:
    phone.handlers["input"] = lambda _phone, _argv: (b"Error: Injecting to another application requires\n", 1)
    with pytest.raises(DeviceError, match="refused the input command") as caught:
        env.execute(Click(x=1, y=2))
    assert caught.value.command == "input tap 1 2"


# -- text ----------------------------------------------------------------------------------------------------
def test_ascii_text_is_escaped_for_the_shell(env: AndroidEnv, phone: FakePhone) -> None:
    text = 'Tom\'s "café"-free list: eggs & milk; 50% off (2 <3) | *$HOME* `x` \\'
    text = text.replace("é", "e")
    env.execute(TypeText(text=text))
    assert phone.text == text
    assert phone.inputs[0].startswith("input text ")
    assert all(" " not in c.split(" ", 2)[2] for c in phone.inputs)  # spaces travel as %s


def test_multiline_text_uses_enter_in_one_round_trip(env: AndroidEnv, phone: FakePhone) -> None:
    env.execute(TypeText(text="first\nsecond"))
    assert phone.inputs == ["input text first", "input keyevent KEYCODE_ENTER", "input text second"]
    assert phone.text == "first\nsecond"
    assert "\ninput text first && input keyevent KEYCODE_ENTER && input text second\n" in phone.shell_log[-1]


def test_long_text_is_split_into_requests_old_adbd_accepts(env: AndroidEnv, phone: FakePhone) -> None:
    text = ("lorem ipsum dolor sit amet " * 400).strip()
    env.execute(TypeText(text=text))
    assert phone.text == text
    requests = [line for line in phone.shell_log if "input text" in line]
    assert len(requests) > 1
    assert all(len(line) < 4000 for line in requests)


def test_forced_routes_that_are_missing_are_device_errors(make_env: MakeEnv, phone: FakePhone) -> None:
    env = make_env(text_route="ime")
    env.reset()
    with pytest.raises(DeviceError, match="text_route='ime' cannot be used: ADBKeyboard is not installed"):
        env.execute(TypeText(text="abc"))
    assert phone.text == ""


def test_non_ascii_goes_through_adb_keyboard(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.adb_keyboard = True
    env = make_env()
    env.reset()
    env.execute(TypeText(text="你好, café 🎉"))
    assert phone.text == "你好, café 🎉"
    assert any(c.startswith("am broadcast -a ADB_INPUT_B64 --es msg ") for c in phone.commands)
    assert phone.ime == LATIN_IME  # the user's keyboard is back
    assert f"ime set {ADB_KEYBOARD_IME}" in phone.commands
    env.execute(TypeText(text="plain"))
    assert phone.inputs[-1] == "input text plain"  # ASCII stays on the fast route


def test_a_keyboard_installed_between_episodes_is_noticed(env: AndroidEnv, phone: FakePhone) -> None:
    with pytest.raises(TextInputError):
        env.execute(TypeText(text="ß"))
    phone.adb_keyboard = True
    env.reset()
    env.execute(TypeText(text="ß"))
    assert phone.text == "ß"


def test_non_ascii_through_the_clipboard(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.clipboard = True
    env = make_env()
    env.reset()
    env.execute(TypeText(text="Grüße aus Köln"))
    assert phone.text == "Grüße aus Köln"
    assert phone.inputs[-1] == "input keyevent KEYCODE_PASTE"


def test_a_keyboard_ime_set_refuses_is_never_trusted(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.adb_keyboard = True
    phone.adb_keyboard_selectable = False  # "Unknown input method ... cannot be selected", exit 0
    env = make_env()
    env.reset()
    with pytest.raises(TextInputError, match=r"ADBKeyboard could not be selected.*cannot be selected"):
        env.execute(TypeText(text="Grüße"))
    assert phone.text == ""
    assert not any(c.startswith("am broadcast") for c in phone.commands)  # nothing sent into the void
    phone.clipboard = True  # the next route takes over
    env.reset()
    env.execute(TypeText(text="Grüße"))
    assert phone.text == "Grüße"
    assert phone.ime == LATIN_IME


def test_a_keyboard_whose_selection_does_not_stick_is_not_used(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.adb_keyboard = True
    phone.clipboard = True
    # `ime set` claims success but the setting does not change
    phone.handlers["ime"] = lambda device, argv: (
        (f"Input method {argv[-1]} selected for user #0\n".encode(), 0)
        if argv[1] == "set"
        else FakePhone._cmd_ime(device, argv)
    )
    env = make_env()
    env.reset()
    env.execute(TypeText(text="日本"))
    assert phone.text == "日本"
    assert phone.inputs[-1] == "input keyevent KEYCODE_PASTE"
    assert not any(c.startswith("am broadcast") for c in phone.commands)


def test_forced_ime_route_that_cannot_be_selected_is_a_device_error(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    phone.adb_keyboard = True
    phone.adb_keyboard_selectable = False
    env = make_env(text_route="ime")
    env.reset()
    with pytest.raises(
        DeviceError, match="text_route='ime' cannot be used: ADBKeyboard could not be selected"
    ):
        env.execute(TypeText(text="ß"))
    assert phone.text == ""


def test_an_installed_but_disabled_adb_keyboard_is_enabled_and_used(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    phone.adb_keyboard = True
    phone.adb_keyboard_enabled = False  # installed, so only `ime list -a` shows it
    env = make_env()
    env.reset()
    env.execute(TypeText(text="你好"))
    assert phone.text == "你好"
    assert f"ime enable {ADB_KEYBOARD_IME}" in phone.commands
    assert phone.ime == LATIN_IME


def test_newlines_and_tabs_in_non_ascii_text_are_key_presses(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.adb_keyboard = True
    env = make_env()
    env.reset()
    env.execute(TypeText(text="Grüße\naus Köln\tß\n"))
    assert phone.text == "Grüße\naus Köln\tß\n"
    keys = [c for c in phone.inputs if c.startswith("input keyevent")]
    assert keys == [
        "input keyevent KEYCODE_ENTER",
        "input keyevent KEYCODE_TAB",
        "input keyevent KEYCODE_ENTER",
    ]
    broadcasts = [c.rsplit(" ", 1)[1] for c in phone.commands if c.startswith("am broadcast")]
    assert all("\n" not in base64.b64decode(b).decode() for b in broadcasts)

    clipboard_phone = FakePhone(serial="clip-1", clipboard=True)
    with FakeAdbServer([clipboard_phone]) as fake:
        clip_env = AndroidEnv(port=fake.port, timeout_s=5.0)
        clip_env.reset()
        clip_env.execute(TypeText(text="première\nligne"))
        assert clipboard_phone.text == "première\nligne"
        assert "input keyevent KEYCODE_ENTER" in clipboard_phone.inputs
        assert "\n" not in clipboard_phone.clip


def test_a_failed_keyboard_restore_does_not_hide_the_typing_error(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    phone.adb_keyboard = True

    def refuse_restore(device: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:] == ["set", LATIN_IME]:
            return f"Unknown input method {argv[-1]} cannot be selected for user #0\n".encode(), 0
        return FakePhone._cmd_ime(device, argv)

    phone.handlers["ime"] = refuse_restore
    phone.handlers["am"] = lambda device, argv: (b"Error: broadcast refused\n", 1)
    env = make_env()
    env.reset()
    with pytest.raises(DeviceError, match="ADBKeyboard did not take the text") as caught:
        env.execute(TypeText(text="ß"))
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "could not select the previous keyboard again" in notes
    assert LATIN_IME in notes

    assert phone.ime == ADB_KEYBOARD_IME  # left switched, as reported
    phone.ime = LATIN_IME
    del phone.handlers["am"]  # typing works; only the restore fails, and that is reported
    with pytest.raises(DeviceError, match="could not select the previous keyboard again") as restore:
        env.execute(TypeText(text="ß"))
    assert restore.value.command == f"ime set {LATIN_IME}"
    assert phone.text == "ß"


def test_a_clipboard_that_refuses_the_text_never_pastes_the_old_clip(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    phone.clipboard = True
    phone.clipboard_getter = False  # nothing to read back: the setter's own answer has to count
    phone.clipboard_refuses = True
    phone.clip = "old secret"
    env = make_env()
    env.reset()
    with pytest.raises(DeviceError, match="the clipboard refused the text"):
        env.execute(TypeText(text="café"))
    assert phone.text == ""
    assert "input keyevent KEYCODE_PASTE" not in phone.inputs


def test_non_ascii_without_a_route_is_refused(env: AndroidEnv, phone: FakePhone) -> None:
    with pytest.raises(TextInputError, match=r"cannot type .é.*ADBKeyboard"):
        env.execute(TypeText(text="café"))
    assert phone.text == ""  # nothing was half typed
    assert phone.inputs == []


def test_forced_input_route_refuses_non_ascii(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.adb_keyboard = True
    env = make_env(text_route="input")
    env.reset()
    with pytest.raises(TextInputError, match="ASCII"):
        env.execute(TypeText(text="日本"))
    assert phone.text == ""


# -- apps ----------------------------------------------------------------------------------------------------
def test_open_app_by_label_alias_and_package(env: AndroidEnv, phone: FakePhone) -> None:
    env.execute(OpenApp(app="Settings"))
    assert phone.ran[-1] == "am start -n com.android.settings/com.android.settings.Settings"
    assert phone.foreground == "com.android.settings"
    env.execute(OpenApp(app="Chrome"))
    assert phone.foreground == "com.android.chrome"
    env.execute(OpenApp(app="Files"))
    assert phone.foreground == "com.google.android.documentsui"
    env.execute(OpenApp(app="markor"))
    assert phone.foreground == "net.gsantner.markor"


def test_open_app_falls_back_to_monkey_on_old_devices(env: AndroidEnv, phone: FakePhone) -> None:
    phone.handlers["cmd"] = lambda _phone, _argv: (b"Unknown command: query-activities\n", 1)
    env.execute(OpenApp(app="com.android.chrome"))
    assert phone.ran[-1] == "monkey -p com.android.chrome -c android.intent.category.LAUNCHER 1"
    assert phone.foreground == "com.android.chrome"


def test_unknown_apps_name_close_matches_and_installs_are_noticed(env: AndroidEnv, phone: FakePhone) -> None:
    with pytest.raises(AppNotFoundError, match="Close matches: Settings"):
        env.execute(OpenApp(app="Setings app"))
    phone.apps["org.wikipedia"] = ("Wikipedia", ".main.MainActivity")
    env.execute(OpenApp(app="Wikipedia"))  # not in the cached list: the list is read again
    assert phone.foreground == "org.wikipedia"


def test_custom_aliases(make_env: MakeEnv, phone: FakePhone) -> None:
    env = make_env(app_aliases={"Browser": ["com.android.chrome"]})
    env.reset()
    env.execute(OpenApp(app="browser"))
    assert phone.foreground == "com.android.chrome"


# -- settling ------------------------------------------------------------------------------------------------
def test_settle_waits_for_an_animation_to_end(env: AndroidEnv, phone: FakePhone) -> None:
    frames = iter(range(1, 5))

    def animate(device: FakePhone, _argv: list[str]) -> tuple[bytes, int]:
        step = next(frames, None)
        image = device.screen.copy()
        if step is not None:
            ImageDraw.Draw(image).rectangle((0, 0, 1080, step * 400), fill=(step * 50, 0, 0))
            device.screen = image
        return device._cmd_screencap(["screencap"])

    phone.handlers["screencap"] = animate
    result = env.settle(timeout_s=3.0, interval_s=0.0)
    assert result.stable
    assert result.frames == 5  # four changing frames, then one equal to the last
    never = iter(int(i) for i in range(10**6))

    def flicker(device: FakePhone, _argv: list[str]) -> tuple[bytes, int]:
        shade = next(never) % 2 * 255
        device.screen = Image.new("RGB", (1080, 2400), (shade, shade, shade))
        return device._cmd_screencap(["screencap"])

    phone.handlers["screencap"] = flicker
    started = time.monotonic()
    assert not env.settle(timeout_s=0.3, interval_s=0.0).stable
    assert time.monotonic() - started < 2.0


# -- faults --------------------------------------------------------------------------------------------------
def test_a_vanished_device_is_retried_then_a_device_error(env: AndroidEnv, phone: FakePhone) -> None:
    phone.present = False
    before = len(phone.shell_log)
    with pytest.raises(DeviceError, match="device 'emulator-5554' not found") as caught:
        env.execute(Click(x=1, y=2))
    assert caught.value.device == "emulator-5554"
    assert caught.value.command == "input tap 1 2"
    assert len(phone.shell_log) == before


def test_a_device_that_comes_back_within_the_retries_is_used(make_env: MakeEnv, phone: FakePhone) -> None:
    from screenpilot.envs.android import RetryPolicy

    env = make_env(retry=RetryPolicy(attempts=4, first_wait_s=0.05, max_wait_s=0.1))
    env.reset()
    phone.present = False

    import threading

    threading.Timer(0.08, lambda: setattr(phone, "present", True)).start()
    env.execute(Click(x=7, y=8))
    assert phone.inputs == ["input tap 7 8"]


def test_a_hung_command_times_out_and_an_accepted_tap_is_not_repeated(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    env = make_env()
    env.reset()  # at the default timeout, so a loaded machine cannot turn the reset itself into a timeout
    env.device.timeout_s = 0.3
    screencaps_before = sum(line.startswith("screencap") for line in phone.shell_log)
    phone.hang = True
    started = time.monotonic()
    with pytest.raises(DeviceError, match="timed out") as caught:
        env.execute(Click(x=1, y=2))
    assert time.monotonic() - started < 3.0
    assert caught.value.device == "emulator-5554"
    taps = [line for line in phone.shell_log if "input tap" in line]
    assert len(taps) == 1  # accepted by the device: never sent twice
    with pytest.raises(DeviceError, match="timed out"):
        env.observe()
    screencaps = sum(line.startswith("screencap") for line in phone.shell_log) - screencaps_before
    assert screencaps == 2  # reads are retried


def test_a_device_lost_during_a_tap_is_reported_not_ignored(env: AndroidEnv, phone: FakePhone) -> None:
    phone.on_input = lambda device, _args: setattr(device, "present", False)
    with pytest.raises(DeviceError, match="connection dropped before the input command finished") as caught:
        env.execute(Click(x=1, y=2))
    assert caught.value.device == "emulator-5554"
    assert sum("input tap" in line for line in phone.shell_log) == 1  # not repeated


def _recording_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point adbutils at an ``adb`` that only records that it was run; returns the record file."""
    record = tmp_path / "adb-was-run"
    script = tmp_path / "adb"
    script.write_text(f'#!/bin/sh\necho "$@" >> {record}\nexit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(script))
    return record


def test_a_server_gone_mid_session_is_named_and_no_adb_server_is_started(
    make_env: MakeEnv, server: FakeAdbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _recording_adb(tmp_path, monkeypatch)
    env = make_env()
    env.reset()
    server.stop()
    with pytest.raises(
        DeviceError, match=f"cannot reach the ADB server at 127.0.0.1:{server.port}"
    ) as caught:
        env.execute(Click(x=1, y=2))
    assert caught.value.command == "input tap 1 2"  # the command as sent, without the exit-status line
    with pytest.raises(DeviceError, match=f"cannot reach the ADB server at 127.0.0.1:{server.port}"):
        env.push_file(record.parent / "adb", "/sdcard/adb")
    with pytest.raises(SetupError, match=f"cannot reach the ADB server at 127.0.0.1:{server.port}"):
        list_devices(port=server.port)
    assert not record.exists(), f"an adb server was started: {record.read_text()}"


def test_device_errors_name_the_command_not_the_exit_status_line(env: AndroidEnv, phone: FakePhone) -> None:
    phone.present = False
    with pytest.raises(DeviceError) as caught:
        env.shell("echo hello")
    assert caught.value.command == "echo hello"
    assert "__screenpilot_exit__" not in str(caught.value)


def test_missing_adbutils_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from screenpilot.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "adbutils", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'screenpilot\[android\]'"):
        AndroidEnv("emulator-5554")
