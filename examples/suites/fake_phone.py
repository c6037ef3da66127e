"""A fake phone that plays the example Android suite (android.yaml) offline.

It is the fake ADB server from ``screenpilot.envs.android.fake_server`` plus a little state the suite's checks
read back through ADB: the Wi-Fi setting (``svc wifi``, ``settings get global wifi_on``; a tap on the
Wi-Fi row turns it off), the resumed activity (``dumpsys activity activities``) and the UI text
(``uiautomator dump``, which shows "Battery saver" once "battery" was typed).

    python3 examples/suites/fake_phone.py            # serves until Ctrl-C, prints the variables to export
"""

from __future__ import annotations

import argparse
import signal
import sys
from xml.sax.saxutils import quoteattr

from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone

#: The Wi-Fi toggle's row on the fake screen, in device pixels (top, bottom).
WIFI_ROW = (540, 711)


def make_phone(serial: str = "emulator-5554") -> FakePhone:
    phone = FakePhone(serial=serial)
    settings = {"wifi_on": "1"}

    def svc(p: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:2] == ["wifi"] and argv[2:3] in (["enable"], ["disable"]):
            settings["wifi_on"] = "1" if argv[2] == "enable" else "0"
        return b"", 0

    def settings_cmd(p: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:3] == ["get", "global"] and len(argv) > 3:
            return (settings.get(argv[3], "null") + "\n").encode(), 0
        if argv[1:3] == ["put", "global"] and len(argv) > 4:
            settings[argv[3]] = argv[4]
            return b"", 0
        return FakePhone._cmd_settings(p, argv)

    def dumpsys(p: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        if argv[1:2] == ["activity"]:
            if p.foreground is None:
                return b"ACTIVITY MANAGER ACTIVITIES\n  mResumedActivity: null\n", 0
            line = f"  mResumedActivity: ActivityRecord{{1a2b u0 {p.foreground}/.Main t12}}\n"
            return ("ACTIVITY MANAGER ACTIVITIES\n" + line).encode(), 0
        return FakePhone._cmd_dumpsys(p, argv)

    def uiautomator(p: FakePhone, argv: list[str]) -> tuple[bytes, int]:
        texts = ["Settings", "Search settings"]
        if "battery" in p.text.lower():
            texts += ["Battery saver", "Battery usage"]
        nodes = "".join(f'<node text={quoteattr(t)} content-desc="" />' for t in texts)
        p.ui_xml = f"<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">{nodes}</hierarchy>"
        return FakePhone._cmd_uiautomator(p, argv)

    def on_input(p: FakePhone, args: list[str]) -> None:
        if args[0] == "tap" and WIFI_ROW[0] <= float(args[2]) <= WIFI_ROW[1]:
            settings["wifi_on"] = "0"

    phone.handlers.update(
        {"svc": svc, "settings": settings_cmd, "dumpsys": dumpsys, "uiautomator": uiautomator}
    )
    phone.on_input = on_input
    return phone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    args = parser.parse_args(argv)
    server = FakeAdbServer([make_phone()], port=args.port).start()
    for key, value in server.environ.items():
        print(f"export {key}={value}")
    print("# serving the fake phone emulator-5554; Ctrl-C to stop", file=sys.stderr)
    sys.stdout.flush()
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
