"""A small Tk window for demos and tests: an entry, a Send button and a pad that reports clicks and scrolls.

Everything it receives is written as one JSON object per line (to ``--log FILE`` or stdout), so a test
can assert what really arrived: the exact text in the entry, each key press, each button press with its
screen position, double and triple clicks on the pad, wheel turns (vertical ``wheel``, horizontal ``hwheel``). Run it with ``python3 -m screenpilot.envs.desktop.demo_app``.

Layout (client area at ``+X+Y``, default ``+100+100``; with no window manager that is its screen position):
entry at (20, 20) size 360x36, Send button at (400, 20) size 160x36, pad at (20, 80) size 560x300.
``--layout moved`` puts the pad on top and the entry and button below it; ``--layout renamed`` labels the
button Submit. The ``ready`` event gives each widget's screen rectangle and the button's label.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

# Widget rectangles inside the window (x, y, width, height); tests derive screen positions from these.
ENTRY = (20, 20, 360, 36)
BUTTON = (400, 20, 160, 36)
PAD = (20, 80, 560, 300)
WINDOW = (600, 400)

Rect = tuple[int, int, int, int]
#: Layout variants (``--layout``): widget rectangles and the button's label. ``default`` is the layout above.
LAYOUTS: dict[str, tuple[Rect, Rect, Rect, str]] = {
    "default": (ENTRY, BUTTON, PAD, "Send"),
    "moved": ((20, 344, 360, 36), (400, 344, 160, 36), (20, 20, 560, 300), "Send"),
    "renamed": (ENTRY, BUTTON, PAD, "Submit"),
}

_MODIFIER_BITS = {"shift": 0x1, "ctrl": 0x4, "alt": 0x8, "super": 0x40}


def centre(rect: tuple[int, int, int, int], origin: tuple[int, int] = (100, 100)) -> tuple[int, int]:
    """Screen position of a widget's centre when the window's client area is at ``origin``."""
    x, y, w, h = rect
    return origin[0] + x + w // 2, origin[1] + y + h // 2


class DemoApp:
    def __init__(
        self,
        out: IO[str],
        *,
        geometry: str = "600x400+100+100",
        title: str = "screenpilot demo",
        layout: str = "default",
    ) -> None:
        import tkinter as tk

        entry, button, pad, label = LAYOUTS[layout]
        self.rects = {"entry": entry, "button": button, "pad": pad}
        self.label = label

        self.out = out
        self.root = tk.Tk()
        self.root.title(title)
        self.root.geometry(geometry)
        self.root.resizable(False, False)
        self.root.configure(background="#f4f4f4")
        font = ("DejaVu Sans", 14)

        self.text = tk.StringVar(master=self.root)
        self.entry = tk.Entry(self.root, textvariable=self.text, font=font, name="entry")
        self.entry.place(x=entry[0], y=entry[1], width=entry[2], height=entry[3])
        self.button = tk.Button(
            self.root, text=label, font=font, command=lambda: self._submit("button"), name="button"
        )
        self.button.place(x=button[0], y=button[1], width=button[2], height=button[3])
        self.pad = tk.Canvas(self.root, background="white", highlightthickness=0, name="pad")
        self.pad.place(x=pad[0], y=pad[1], width=pad[2], height=pad[3])
        self.pad.create_text(PAD[2] // 2, 20, text="click, drag or scroll here", font=("DejaVu Sans", 11))
        self.status = self.pad.create_text(PAD[2] // 2, PAD[3] - 20, text="", font=("DejaVu Sans", 12))
        self.wheel = 0
        self.hwheel = 0

        self.text.trace_add("write", lambda *_: self._log("text", text=self.text.get()))
        self.entry.bind("<Return>", lambda e: self._submit("return"))
        # A bind tag of our own, first on every widget, sees each event before Tk's class bindings (an
        # "all" binding would miss Tab, which Tk binds more specifically).
        for widget in (self.root, self.entry, self.button, self.pad):
            widget.bindtags(("screenpilot_log", *widget.bindtags()))
        self.root.bind_class("screenpilot_log", "<KeyPress>", self._on_key)
        self.root.bind_class("screenpilot_log", "<ButtonPress>", self._on_press)
        self.root.bind_class("screenpilot_log", "<ButtonRelease>", self._on_release)
        self.pad.bind("<Double-Button-1>", lambda e: self._log("double", x=e.x_root, y=e.y_root))
        self.pad.bind("<Triple-Button-1>", lambda e: self._log("triple", x=e.x_root, y=e.y_root))
        self.pad.bind("<MouseWheel>", self._on_wheel)  # Windows and macOS
        self.pad.bind("<Shift-MouseWheel>", self._on_hwheel)  # Windows and macOS: sideways
        self.root.after(50, self._ready)

    # -- events -----------------------------------------------------------------------------------------------
    def _log(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": round(time.time(), 3), **fields}, ensure_ascii=False)
        self.out.write(line + "\n")  # one write: a reader never sees a line without its end
        self.out.flush()

    def _ready(self) -> None:
        self.root.update_idletasks()
        self._log(
            "ready",
            x=self.root.winfo_rootx(),
            y=self.root.winfo_rooty(),
            width=self.root.winfo_width(),
            height=self.root.winfo_height(),
            widgets={
                name: [self.root.winfo_rootx() + x, self.root.winfo_rooty() + y, w, h]
                for name, (x, y, w, h) in self.rects.items()
            },
            label=self.label,
        )

    def _submit(self, via: str) -> None:
        value = self.text.get()
        self._log("submit", via=via, text=value)
        self.pad.itemconfigure(self.status, text=f"Sent: {value}")

    def _on_key(self, e: Any) -> None:
        mods = [name for name, bit in _MODIFIER_BITS.items() if int(e.state) & bit]
        self._log("key", keysym=e.keysym, char=e.char, modifiers=mods, widget=self._name(e.widget))

    def _on_press(self, e: Any) -> None:
        if e.num in (4, 5) and int(e.state) & _MODIFIER_BITS["shift"]:
            # Tk 8.6 on X11 delivers the horizontal wheel (buttons 6 left, 7 right) as Shift with 4 and 5.
            self._hwheel_step(1 if e.num == 4 else -1, e)
            return
        if e.num in (4, 5):  # X11 wheel
            self._wheel_step(1 if e.num == 4 else -1, e)
            return
        if e.num in (6, 7):  # X11 horizontal wheel, where Tk passes it on as it is
            self._hwheel_step(1 if e.num == 6 else -1, e)
            return
        self._log("press", button=e.num, x=e.x_root, y=e.y_root, widget=self._name(e.widget))
        if e.widget is self.pad:
            self.pad.create_oval(e.x - 4, e.y - 4, e.x + 4, e.y + 4, fill="#2a6fd0", outline="")

    def _on_release(self, e: Any) -> None:
        if e.num in (4, 5, 6, 7):
            return
        self._log("release", button=e.num, x=e.x_root, y=e.y_root, widget=self._name(e.widget))

    def _on_wheel(self, e: Any) -> None:
        self._wheel_step(1 if e.delta > 0 else -1, e)

    def _wheel_step(self, step: int, e: Any) -> None:
        self.wheel += step
        self._log("wheel", direction="up" if step > 0 else "down", x=e.x_root, y=e.y_root, total=self.wheel)
        self.pad.itemconfigure(self.status, text=f"scroll: {self.wheel}")

    def _on_hwheel(self, e: Any) -> str:
        self._hwheel_step(1 if e.delta > 0 else -1, e)
        return "break"  # not also a vertical turn

    def _hwheel_step(self, step: int, e: Any) -> None:
        self.hwheel += step
        self._log(
            "hwheel", direction="left" if step > 0 else "right", x=e.x_root, y=e.y_root, total=self.hwheel
        )
        self.pad.itemconfigure(self.status, text=f"sideways: {self.hwheel}")

    @staticmethod
    def _name(widget: Any) -> str:
        return str(widget).rsplit(".", 1)[-1] or "root"

    def run(self) -> None:
        self.root.mainloop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m screenpilot.envs.desktop.demo_app", description=__doc__)
    parser.add_argument("--log", help="append events (JSON lines) to this file instead of stdout")
    parser.add_argument("--geometry", default="600x400+100+100", help="Tk geometry (default: %(default)s)")
    parser.add_argument("--title", default="screenpilot demo")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="default", help="widget layout variant")
    args = parser.parse_args(argv)
    if args.log:
        with open(args.log, "a", encoding="utf-8", buffering=1) as out:
            DemoApp(out, geometry=args.geometry, title=args.title, layout=args.layout).run()
    else:
        DemoApp(sys.stdout, geometry=args.geometry, title=args.title, layout=args.layout).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
