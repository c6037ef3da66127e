"""The clipboard, used to type text that per-key typing cannot (anything outside ASCII).

pyautogui's ``write`` silently drops non-ASCII characters, so such text is put on the clipboard and pasted,
and the user's clipboard is put back afterwards. On X11 this uses ``xclip`` aimed at one display (the
sandbox's, never the caller's by accident); elsewhere pyperclip.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from screenpilot.envs.desktop.processes import group_alive, new_group_kwargs, stop_group
from screenpilot.errors import DeviceError, MissingExtraError, SetupError

# Targets worth saving, best first: text in UTF-8, then images, then other text forms.
_PREFERRED_TARGETS = (
    "UTF8_STRING",
    "text/plain;charset=utf-8",
    "image/png",
    "STRING",
    "text/plain",
    "TEXT",
)


@dataclass(frozen=True)
class ClipboardContent:
    """A saved clipboard: one target (format) and its bytes; ``None`` target means the clipboard was empty."""

    target: str | None
    data: bytes = b""


class PasteOffer(Protocol):
    """Text put on the clipboard for one paste."""

    def wait(self, timeout_s: float) -> bool | None:
        """Wait until an app has fetched the text: True when it did, False when none did in time, None when
        this clipboard cannot tell."""
        ...

    def close(self) -> None: ...


class Clipboard(Protocol):
    def save(self) -> ClipboardContent: ...

    def offer_text(self, text: str) -> PasteOffer: ...

    def set_text(self, text: str) -> None: ...

    def get_text(self) -> str | None: ...

    def restore(self, content: ClipboardContent) -> None: ...

    def close(self, *, stop_daemons: bool = False) -> None: ...


class XClipboard:
    """The CLIPBOARD selection of one X display, through ``xclip``.

    ``xclip -i`` forks a daemon that owns the selection until someone else takes it; the daemon inherits
    stdout and stderr, so both go to DEVNULL (a pipe would make the caller wait for the daemon forever).
    Each daemon is left in its own process group; ``close(stop_daemons=True)`` stops them (the sandbox
    does; on a real desktop the daemon holding the user's restored clipboard must live on).
    """

    def __init__(self, display: str, *, timeout_s: float = 5.0) -> None:
        if shutil.which("xclip") is None:
            raise SetupError("typing non-ASCII text on X11 needs xclip (Debian/Ubuntu: apt install xclip)")
        self.display = display
        self.timeout_s = timeout_s
        self._groups: set[int] = set()
        self._conn: Any = None
        self._atom = 0

    def _base(self) -> list[str]:
        return ["xclip", "-display", self.display, "-selection", "clipboard"]

    def _read(self, target: str) -> bytes | None:
        try:
            proc = subprocess.run(
                [*self._base(), "-o", "-t", target],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise DeviceError(
                f"reading the clipboard timed out after {self.timeout_s:g} s", device=self.display
            ) from None
        return proc.stdout if proc.returncode == 0 else None

    def targets(self) -> list[str]:
        """The formats the clipboard's owner offers; empty when nobody owns it."""
        out = self._read("TARGETS")
        return out.decode("latin-1").split() if out else []

    def save(self) -> ClipboardContent:
        offered = self.targets()
        choices = [t for t in _PREFERRED_TARGETS if t in offered]
        choices += [t for t in offered if "/" in t and t not in choices]
        for target in choices:
            data = self._read(target)
            if data is not None:
                return ClipboardContent(target, data)
        return ClipboardContent(None)

    def _write(self, data: bytes, target: str) -> None:
        proc = subprocess.Popen(
            [*self._base(), "-i", "-t", target],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **new_group_kwargs(),
        )
        self._groups = {g for g in self._groups if group_alive(g)} | {proc.pid}
        previous = self._owner()
        try:
            proc.communicate(data, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, proc, grace_s=0.5)
            raise DeviceError(
                f"xclip did not take the clipboard within {self.timeout_s:g} s", device=self.display
            ) from None
        if proc.returncode != 0:
            raise DeviceError(f"xclip failed with status {proc.returncode}", device=self.display)
        # xclip's parent exits right after asking for the selection, but the request may still sit in the
        # daemon's output buffer: wait until the server has really handed the selection over.
        deadline = time.monotonic() + self.timeout_s
        while self._owner() == previous:
            if time.monotonic() > deadline:
                raise DeviceError("xclip did not take the clipboard", device=self.display)
            time.sleep(0.002)

    def _owner(self) -> int:
        """The window id owning the clipboard (0 for none), over a connection kept for this purpose."""
        if self._conn is None:
            from Xlib import display  # python-xlib comes with pyautogui on Linux

            self._conn = display.Display(self.display)
            self._atom = self._conn.get_atom("CLIPBOARD")
        owner = self._conn.get_selection_owner(self._atom)
        return int(owner.id) if hasattr(owner, "id") else int(owner)

    def set_text(self, text: str) -> None:
        self._write(text.encode("utf-8"), "UTF8_STRING")

    def offer_text(self, text: str) -> PasteOffer:
        data = text.encode("utf-8")
        if len(data) > _MAX_OFFER_BYTES:  # beyond one X request: let xclip do the incremental transfer
            self.set_text(text)
            return _UnknownDelivery()
        return SelectionOffer(self.display, data)

    def get_text(self) -> str | None:
        data = self._read("UTF8_STRING")
        return data.decode("utf-8", errors="replace") if data is not None else None

    def restore(self, content: ClipboardContent) -> None:
        if content.target is not None:
            self._write(content.data, content.target)
            return
        self._clear()

    def _clear(self) -> None:
        """Give up ownership so the clipboard is empty again, as it was (not an empty string)."""
        from Xlib import X
        from Xlib.protocol import request

        self._owner()  # opens the connection
        request.SetSelectionOwner(
            display=self._conn.display, window=X.NONE, selection=self._atom, time=X.CurrentTime
        )
        self._conn.sync()

    def close(self, *, stop_daemons: bool = False) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        groups, self._groups = self._groups, set()
        for pgid in groups:
            if stop_daemons and group_alive(pgid):
                stop_group(pgid, grace_s=0.5)


class PyperclipClipboard:
    """macOS and Windows: text only (a saved image cannot be put back, so it is refused up front)."""

    def __init__(self) -> None:
        try:
            import pyperclip
        except ImportError as exc:
            raise MissingExtraError("desktop", "pyperclip", "typing non-ASCII text") from exc
        self._pyperclip = pyperclip

    def save(self) -> ClipboardContent:
        text = self._pyperclip.paste()
        return ClipboardContent("text", text.encode("utf-8")) if text else ClipboardContent(None)

    def set_text(self, text: str) -> None:
        self._pyperclip.copy(text)

    def offer_text(self, text: str) -> PasteOffer:
        self.set_text(text)
        return _UnknownDelivery()

    def get_text(self) -> str | None:
        return self._pyperclip.paste() or None

    def restore(self, content: ClipboardContent) -> None:
        self._pyperclip.copy(content.data.decode("utf-8") if content.target else "")

    def close(self, *, stop_daemons: bool = False) -> None:
        pass


class _UnknownDelivery:
    def wait(self, timeout_s: float) -> bool | None:
        return None

    def close(self) -> None:
        pass


#: Text up to this size is served in one X request (the core protocol's limit is 256 KiB).
_MAX_OFFER_BYTES = 200_000


class SelectionOffer:
    """Owns the CLIPBOARD selection on a connection of its own and serves one text, reporting each delivery.

    An app fetches pasted text from the selection owner some time after the paste keys; serving it ourselves
    (rather than through an ``xclip`` daemon) tells exactly when that happened, so the user's clipboard is
    put back right after the app has the text, neither too early (the app would paste the old content) nor
    after a guessed delay.
    """

    def __init__(self, display_name: str, data: bytes) -> None:
        from Xlib import X, Xatom, display

        self._X = X
        self._conn = display.Display(display_name)
        self.data = data
        atom = self._conn.get_atom
        self._clipboard = atom("CLIPBOARD")
        self._targets = atom("TARGETS")
        self._text_targets = {
            atom("UTF8_STRING"),
            atom("text/plain;charset=utf-8"),
            atom("TEXT"),
            atom("text/plain"),
            Xatom.STRING,
        }
        self._atom_type = Xatom.ATOM
        self._string = Xatom.STRING
        self._window = self._conn.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
        self._window.set_selection_owner(self._clipboard, X.CurrentTime)
        self._conn.sync()
        if self._conn.get_selection_owner(self._clipboard) != self._window:
            self._conn.close()
            raise DeviceError("could not take the clipboard to paste text", device=display_name)
        self.delivered = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="screenpilot-clipboard", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        X = self._X
        try:
            while not self._done.is_set():
                if not self._conn.pending_events():
                    select.select([self._conn.fileno()], [], [], 0.02)
                    continue
                event = self._conn.next_event()
                if event.type == X.SelectionClear:
                    return  # someone else (the restore) owns the clipboard now
                if event.type == X.SelectionRequest:
                    self._answer(event)
        except Exception:  # the display went away: nothing left to serve
            return
        finally:
            self._done.set()

    def _answer(self, request: Any) -> None:
        from Xlib.protocol import event as xevent

        X = self._X
        prop = request.property if request.property != X.NONE else request.target
        if request.target == self._targets:
            offered = [self._targets, *sorted(self._text_targets)]
            request.requestor.change_property(prop, self._atom_type, 32, offered)
        elif request.target in self._text_targets:
            # STRING is Latin-1 by definition; every other text target here is UTF-8.
            data = self._latin1() if request.target == self._string else self.data
            request.requestor.change_property(prop, request.target, 8, data)
        else:
            prop = X.NONE
        reply = xevent.SelectionNotify(
            time=request.time,
            requestor=request.requestor,
            selection=request.selection,
            target=request.target,
            property=prop,
        )
        request.requestor.send_event(reply, event_mask=0)
        # A round trip, not just a flush: once the server has handled the reply, keys sent after the
        # delivery is reported (a Return after pasted text) reach the app after the text.
        self._conn.sync()
        if prop != X.NONE and request.target != self._targets:
            self.delivered.set()

    def _latin1(self) -> bytes:
        return self.data.decode("utf-8").encode("latin-1", errors="replace")

    def wait(self, timeout_s: float) -> bool | None:
        return self.delivered.wait(timeout_s)

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=1.0)
        with contextlib.suppress(Exception):
            self._conn.close()
