"""The clipboard, used to type text that per-key typing cannot (anything outside ASCII).

pyautogui's ``write`` silently drops non-ASCII characters, so such text is put on the clipboard and pasted,
and the user's clipboard is put back afterwards. On X11 this uses ``xclip`` aimed at one display (the
sandbox's, never the caller's by accident); elsewhere pyperclip.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Protocol

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


class Clipboard(Protocol):
    def save(self) -> ClipboardContent: ...

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
        try:
            proc.communicate(data, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, proc, grace_s=0.5)
            raise DeviceError(
                f"xclip did not take the clipboard within {self.timeout_s:g} s", device=self.display
            ) from None
        if proc.returncode != 0:
            raise DeviceError(f"xclip failed with status {proc.returncode}", device=self.display)
        # The parent exits only after the selection is owned, so the clipboard is ready here.

    def set_text(self, text: str) -> None:
        self._write(text.encode("utf-8"), "UTF8_STRING")

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
        from Xlib import X, display  # python-xlib comes with pyautogui on Linux

        conn = display.Display(self.display)
        try:
            atom = conn.get_atom("CLIPBOARD")
            conn.screen().root.set_selection_owner(atom, X.NONE, X.CurrentTime)  # type: ignore[no-untyped-call]
            conn.sync()
        finally:
            conn.close()

    def close(self, *, stop_daemons: bool = False) -> None:
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

    def get_text(self) -> str | None:
        return self._pyperclip.paste() or None

    def restore(self, content: ClipboardContent) -> None:
        self._pyperclip.copy(content.data.decode("utf-8") if content.target else "")

    def close(self, *, stop_daemons: bool = False) -> None:
        pass
