"""The fake server speaks the real protocol: adbutils and the stock adb client work against it unchanged."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import adbutils
import pytest

from screenpilot.envs.android import AndroidEnv, list_devices
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone, decode_input_text


def test_adbutils_lists_runs_shell_and_moves_files(server: FakeAdbServer, phone: FakePhone) -> None:
    client = adbutils.AdbClient(host=server.host, port=server.port)
    assert client.server_version() == 41
    assert [(d.serial, d.state) for d in client.list()] == [("emulator-5554", "device")]
    assert client.list(extended=True)[0].tags["model"] == "Pixel_7"
    device = client.device("emulator-5554")
    assert device.shell("input tap 10 20; echo done") == "done"
    assert device.shell2("false").returncode == 1
    device.sync.push(b"payload", "/data/local/tmp/p.bin")
    assert device.sync.read_bytes("/data/local/tmp/p.bin") == b"payload"
    device.sync.push(b"x", "/data/local/tmp/sub/q.txt")
    listed = {(f.path, f.size) for f in device.sync.list("/data/local/tmp")}
    assert listed == {("p.bin", 7), ("sub", 4096)}
    assert device.get_features() == "cmd"  # no shell_v2: clients stay on the plain shell protocol
    assert phone.inputs == ["input tap 10 20"]
    assert device.screenshot(error_ok=False).size == (1080, 2400)


def test_several_devices_and_missing_ones(phone: FakePhone) -> None:
    other = FakePhone(serial="R58M123", state="unauthorized")
    with FakeAdbServer([phone, other]) as fake:
        client = adbutils.AdbClient(host=fake.host, port=fake.port)
        assert {(d.serial, d.state) for d in client.list()} == {
            ("emulator-5554", "device"),
            ("R58M123", "unauthorized"),
        }
        with pytest.raises(adbutils.AdbError, match="not found"):
            client.device("nope").shell("true")
        phone.present = False
        assert [d.serial for d in client.list()] == ["R58M123"]


@pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed")
def test_stock_adb_client_works_against_the_fake(server: FakeAdbServer, phone: FakePhone) -> None:
    def adb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["adb", "-P", str(server.port), *args], capture_output=True, text=True, timeout=20, check=False
        )

    listed = adb("devices")
    assert listed.returncode == 0
    assert "emulator-5554\tdevice" in listed.stdout
    assert adb("shell", "input", "tap", "1", "2").returncode == 0
    assert adb("-s", "emulator-5554", "shell", "wm size").stdout.strip() == "Physical size: 1080x2400"
    assert phone.inputs == ["input tap 1 2"]
    # the stock client asked for the version first and a transport, as it does with a real server
    assert server.requests[0] == "host:version"
    assert any(r.startswith("host:tport:") for r in server.requests)


def test_input_text_decoding_follows_android() -> None:
    assert decode_input_text("a%sb") == "a b"
    assert decode_input_text("%%s") == "% "
    assert decode_input_text("50%") == "50%"


@pytest.mark.skipif(shutil.which("adb") is None, reason="the adb client is not installed")
def test_the_command_line_fake_serves_phones_in_the_states_asked_for() -> None:
    module = "screenpilot.envs.android.fake_server"
    command = [sys.executable, "-m", module, "--serial", "A1", "--serial", "B2=unauthorized", "--screen-off"]
    served = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert served.stdout is not None
        port = served.stdout.readline().strip().removeprefix("export ANDROID_ADB_SERVER_PORT=")
        listed = list_devices(port=int(port))
        assert [(d.serial, d.state, d.model) for d in listed] == [
            ("A1", "device", "Pixel_7"),
            ("B2", "unauthorized", None),
        ]
        refused = subprocess.run(
            ["adb", "-P", port, "-s", "B2", "shell", "true"], capture_output=True, text=True, timeout=20
        )
        assert refused.returncode != 0
        assert "device unauthorized." in refused.stderr
        assert "check for a confirmation dialog on your device" in refused.stderr  # adb's own words
        env = AndroidEnv("A1", port=int(port))
        assert env.reset().info["screen_woken"] is True
        env.close()
    finally:
        served.send_signal(signal.SIGTERM)
        log = served.communicate(timeout=20)[0]
    assert "A1: input keyevent KEYCODE_WAKEUP" in log.splitlines()
