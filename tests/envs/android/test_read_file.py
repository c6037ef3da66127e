"""Reading a file from the phone: missing is FileNotFoundError, decided by the path's mode (not by the wording
of the device's refusal); a folder is a DeviceError at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from screenpilot.envs.android import AndroidEnv
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone
from screenpilot.errors import DeviceError


def test_missing_file_is_file_not_found_and_a_folder_is_a_device_error(
    make_env: Callable[..., AndroidEnv], phone: FakePhone, server: FakeAdbServer
) -> None:
    env = make_env()
    phone.files["/sdcard/Download/a.txt"] = b"a"
    assert env.read_file("/sdcard/Download/a.txt") == b"a"
    with pytest.raises(FileNotFoundError, match=r"/sdcard/nothing\.txt"):
        env.read_file("/sdcard/nothing.txt")
    # The fake phone refuses a folder with "No such file or directory", as some adbd versions word it:
    # the mode the device reports for the path says it is there.
    asked = len(server.requests)
    with pytest.raises(DeviceError, match=r"^cannot read /sdcard/Download: it is not a regular file"):
        env.read_file("/sdcard/Download")
    # One read and one STAT, not retried: a folder stays a folder.
    assert sum(r == "sync:" for r in server.requests[asked:]) == 2
