"""What a user sees when the phone, the ADB server or another run gets in the way: one line, the right type."""

from __future__ import annotations

import _thread
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from screenpilot.actions.types import Click, Key, TypeText
from screenpilot.agent.record import load_run
from screenpilot.cli.main import main
from screenpilot.envs.android import AndroidEnv, list_devices
from screenpilot.envs.android.claim import claim_path
from screenpilot.envs.android.device import DeviceListing
from screenpilot.envs.android.fake_server import LATIN_IME, FakeAdbServer, FakePhone
from screenpilot.errors import DeviceError, SetupError

MakeEnv = Callable[..., AndroidEnv]
TERMINATE = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
TAP = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1204]}}\n</tool_call>'


def _replies(tmp_path: Path, *outputs: str) -> Path:
    path = tmp_path / "replies.jsonl"
    path.write_text("".join(json.dumps({"output": o}) + "\n" for o in outputs), encoding="utf-8")
    return path


def test_a_bad_server_port_in_the_environment_is_one_line(tmp_path: Path) -> None:
    # adbutils reads the variable when it is first imported: a fresh process shows what a user sees
    replies = _replies(tmp_path, TERMINATE)
    environ = {**os.environ, "ANDROID_ADB_SERVER_PORT": "abc"}
    command = [
        sys.executable,
        "-m",
        "screenpilot",
        "run",
        "x",
        "--env",
        "android",
        "--model",
        f"replay:{replies}",
    ]
    done = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert (
        "ANDROID_ADB_SERVER_PORT must be a port number (1-65535), got 'abc'" in done.stderr.splitlines()[-1]
    )


@pytest.mark.parametrize("port", ["99999", "-5", "0"])
def test_out_of_range_ports_are_refused(port: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", port)
    with pytest.raises(SetupError, match=f"1-65535\\), got '{port}'"):
        AndroidEnv()
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT")
    with pytest.raises(SetupError, match="port must be 1-65535, got 70000"):
        AndroidEnv(port=70000)


@pytest.mark.parametrize(
    ("state", "hint"),
    [
        ("unauthorized", "accept the USB debugging prompt on the phone"),
        ("offline", "reconnect it (or `adb reconnect offline`)"),
    ],
)
def test_a_device_that_is_not_ready_says_what_to_do(
    state: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    phone = FakePhone(serial="R58M123", state=state)
    with FakeAdbServer([phone]) as fake:
        # adb knows no model for a device it may not talk to
        assert list_devices(port=fake.port) == [DeviceListing("R58M123", state, None)]
        with pytest.raises(
            SetupError, match=rf"no Android device is ready \(adb devices: R58M123 \[{state}\]\); "
        ) as caught:
            AndroidEnv(port=fake.port)
        assert hint in str(caught.value)
        assert "start an emulator" not in str(caught.value)
        with pytest.raises(SetupError) as chosen:
            AndroidEnv("R58M123", port=fake.port)
        assert str(chosen.value).startswith(f"Android device 'R58M123' is {state}; {hint}")


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("offline", "device offline; reconnect it"),
        ("unauthorized", "device unauthorized; accept the USB debugging prompt on the phone"),
    ],
)
def test_a_device_that_goes_offline_or_unauthorized_mid_run_is_one_line(
    state: str, said: str, env: AndroidEnv, phone: FakePhone
) -> None:
    phone.state = state
    with pytest.raises(DeviceError) as caught:
        env.observe()
    message = str(caught.value)
    assert "\n" not in message
    assert f"the Android device failed (2 tries): {said}" in message
    assert "command='screencap 2>/dev/null'" in message


def test_a_slow_screencap_times_out_and_says_how_long_it_waited(env: AndroidEnv, phone: FakePhone) -> None:
    env.device.timeout_s = 0.2
    phone.hang = True
    with pytest.raises(
        DeviceError, match=r"failed \(2 tries\): timed out: no output in 0.2 s; device=emulator-5554"
    ):
        env.observe()


def test_a_slow_but_answering_screencap_is_waited_for_once(env: AndroidEnv, phone: FakePhone) -> None:
    env.device.timeout_s = 2.0
    phone.screencap_delay_s = 0.4
    before = phone.commands.count("screencap")
    assert env.observe().size == (1080, 2400)
    assert phone.commands.count("screencap") == before + 1  # not given up on and asked again
    settled = env.settle(timeout_s=0.5)  # bounded even when each frame takes longer than the timeout allows
    assert settled.frames >= 1


def test_describe_before_reset_names_the_screen(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.physical_size = (720, 1600)
    described = make_env().describe()
    assert (described["model"], described["screen_size"]) == ("Pixel_7", "720x1600")


# -- one run per phone -----------------------------------------------------------------------------------------
def test_a_phone_is_claimed_until_the_last_environment_of_the_process_closes(
    make_env: MakeEnv, phone: FakePhone, server: FakeAdbServer
) -> None:
    first, second = make_env(), make_env()  # one process: its environments share the claim
    first.close()
    refused = _try_to_claim(server.port)
    assert f"'emulator-5554' is in use by another screenpilot run (pid {os.getpid()}, since" in refused
    second.close()
    second.close()  # twice is safe and releases nothing more
    assert _try_to_claim(server.port) == "claimed"
    make_env(exclusive=False)  # a script that only looks may share the phone on purpose
    assert _try_to_claim(server.port) == "claimed"


def test_an_environment_dropped_without_close_frees_the_phone(
    server: FakeAdbServer, phone: FakePhone
) -> None:
    env = AndroidEnv(port=server.port)
    path = claim_path(server.host, server.port, phone.serial)
    assert path.exists()
    del env
    gc.collect()
    assert not path.exists()
    assert _try_to_claim(server.port) == "claimed"


def _try_to_claim(port: int) -> str:
    script = (
        "import sys\nfrom screenpilot.envs.android import AndroidEnv, DeviceBusyError\n"
        "try:\n    AndroidEnv(port=int(sys.argv[1]))\n    print('claimed')\n"
        "except DeviceBusyError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(port)], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


def test_another_process_holding_the_phone_stops_a_cli_run_before_anything_is_recorded(
    server: FakeAdbServer,
    phone: FakePhone,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(server.port))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_PHONE, str(server.port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        replies = _replies(tmp_path, TAP, TERMINATE)
        status = main(
            ["run", "x", "--env", "android", "--model", f"replay:{replies}", "--out", str(tmp_path / "run")]
        )
    finally:
        holder.kill()
        holder.wait()
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"'emulator-5554' is in use by another screenpilot run (pid {holder.pid}, since" in error
    assert phone.inputs == []
    # the holder is gone (killed, not closed): the phone is free again
    status = main(
        ["run", "x", "--env", "android", "--model", f"replay:{replies}", "--out", str(tmp_path / "run2")]
    )
    assert status == 0
    assert phone.inputs == ["input tap 540 1200"]
    assert load_run(tmp_path / "run2").result is not None


_HOLD_THE_PHONE = """
import sys, time
from screenpilot.envs.android import AndroidEnv
env = AndroidEnv(port=int(sys.argv[1]))
print("holding", flush=True)
time.sleep(60)
"""


# -- a screen that went off -------------------------------------------------------------------------------------
def test_a_dark_screen_is_woken_and_the_observation_says_so(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.awake = False
    env = make_env()
    first = env.reset()
    assert first.screenshot.getbbox() is not None  # the real screen, not the black frame of a dark one
    assert first.info["screen_woken"] is True
    assert phone.awake and phone.inputs == ["input keyevent KEYCODE_WAKEUP"]
    powers = phone.commands.count("dumpsys power")
    assert "screen_woken" not in env.observe().info
    assert phone.commands.count("dumpsys power") == powers  # a lit screen costs no power query
    phone.awake = False  # the screen timeout ran out while the model was thinking
    env.execute(Click(x=5, y=6))  # lost on the dark screen, as on a phone
    assert env.observe().info["screen_woken"] is True
    assert phone.inputs[-2:] == ["input tap 5 6", "input keyevent KEYCODE_WAKEUP"]


def test_a_black_but_lit_screen_is_shown_as_it_is(env: AndroidEnv, phone: FakePhone) -> None:
    phone.set_screen(Image.new("RGB", (1080, 2400)))
    seen = env.observe()
    assert seen.screenshot.getbbox() is None and "screen_woken" not in seen.info
    assert phone.inputs == []
    env.settle(timeout_s=1.0)
    env.observe()
    assert phone.commands.count("dumpsys power") == 1  # a dark-themed app is not asked about every frame
    env.execute(Key(keys=["power"]))  # the model turned the screen off
    assert not phone.awake
    assert env.observe().info["screen_woken"] is True
    assert phone.inputs == ["input keyevent KEYCODE_POWER", "input keyevent KEYCODE_WAKEUP"]


def test_a_screen_that_will_not_turn_on_is_a_device_error(make_env: MakeEnv, phone: FakePhone) -> None:
    env = make_env(wake_timeout_s=0.2)
    env.reset()
    phone.awake, phone.stays_dark = False, True
    with pytest.raises(
        DeviceError, match=r"the screen is off and did not turn on within 0.2 s; device=emulator-5554"
    ):
        env.observe()


def test_a_claim_file_that_cannot_be_opened_is_one_line(
    make_env: MakeEnv, server: FakeAdbServer, phone: FakePhone
) -> None:
    path = claim_path(server.host, server.port, phone.serial)
    path.mkdir()
    try:
        with pytest.raises(
            SetupError, match=rf"cannot claim Android device 'emulator-5554': {path}: .*; remove"
        ):
            make_env()
        assert make_env(exclusive=False).reset().size == (1080, 2400)
    finally:
        path.rmdir()
    env = make_env()
    assert path.stat().st_mode & 0o777 == 0o666  # another user's run may take the claim after this one
    assert path.read_text(encoding="utf-8").startswith(f"pid {os.getpid()}, since ")
    env.close()
    assert not path.exists()  # no lock files pile up in the temp folder


def test_an_always_on_display_is_a_screen_that_is_off(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.awake, phone.always_on_display = False, True
    seen = make_env().reset()
    assert seen.info["screen_woken"] is True
    assert seen.screenshot.getpixel((540, 1500)) == (225, 230, 235)  # a list row of the real screen


def test_a_dark_lock_screen_is_shown_once_the_screen_is_on(make_env: MakeEnv, phone: FakePhone) -> None:
    phone.set_screen(Image.new("RGB", (1080, 2400), (10, 10, 10)))
    phone.awake = False
    seen = make_env(wake_timeout_s=5.0).reset()
    assert seen.info["screen_woken"] is True and phone.awake
    assert seen.screenshot.getpixel((540, 1200)) == (10, 10, 10)


def test_ctrl_c_while_typing_through_adb_keyboard_gives_the_user_their_keyboard_back(
    make_env: MakeEnv, phone: FakePhone
) -> None:
    phone.adb_keyboard = True

    def broadcast_then_ctrl_c(p: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        _thread.interrupt_main()  # what Ctrl-C does, while the phone is still answering
        return FakePhone._cmd_am(p, argv)

    env = make_env()
    env.reset()
    phone.handlers["am"] = broadcast_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        env.execute(TypeText(text="café\ncafé"))
        time.sleep(5)  # the interrupt lands at the latest here
    assert phone.text == "café"  # stopped where the user pressed Ctrl-C
    assert phone.ime == LATIN_IME
    assert phone.ran[-2:] == [f"ime set {LATIN_IME}", "settings get secure default_input_method"]
