"""The root of screenpilot's error types.

Errors are split by who is at fault, never by message text:

* :class:`ModelOutputError` and its kin are the model's mistakes. The agent sends their message back to the
  model as feedback (within a budget), so the message is written for the model to read.
* :class:`DeviceError` and :class:`SetupError` are failures of the world around the agent: they carry
  context and end the episode cleanly, with everything recorded so far kept.
"""

from __future__ import annotations


class ScreenpilotError(Exception):
    """Base of every error screenpilot raises on purpose."""


class ModelOutputError(ScreenpilotError):
    """The model's answer cannot be turned into an action; the message is feedback for the model."""


class SetupError(ScreenpilotError):
    """Configuration or installation problem found before the episode starts (bad flags, missing extra)."""


class DeviceError(ScreenpilotError):
    """The device failed (gone, timed out, refused a command). Carries what was being attempted."""

    def __init__(self, message: str, *, device: str | None = None, command: str | None = None) -> None:
        self.device = device
        self.command = command
        parts = [message]
        if device:
            parts.append(f"device={device}")
        if command:
            parts.append(f"command={command!r}")
        super().__init__("; ".join(parts))


class UnsupportedActionError(ModelOutputError):
    """The environment cannot perform this kind of action (e.g. ``open_app`` on a desktop)."""


class MissingExtraError(SetupError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, package: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the '{package}' package: pip install 'screenpilot[{extra}]'")
        self.extra = extra
        self.package = package


class TargetNotFound(ScreenpilotError):
    """A script asked for something the model could not find on the screen (it said so, pointed off screen
    or never gave a usable point). ``screenshot`` is the saved screen it looked at."""

    def __init__(self, message: str, *, target: str, screenshot: str | None = None) -> None:
        super().__init__(message + (f" (screenshot: {screenshot})" if screenshot else ""))
        self.target = target
        self.screenshot = screenshot


class ExpectationFailed(ScreenpilotError):
    """A condition a script expected did not come true in time. ``answer`` is the model's last word on it and
    ``screenshot`` the last screen it looked at."""

    def __init__(
        self, message: str, *, condition: str, answer: str | None = None, screenshot: str | None = None
    ) -> None:
        super().__init__(message + (f" (screenshot: {screenshot})" if screenshot else ""))
        self.condition = condition
        self.answer = answer
        self.screenshot = screenshot


class ActionRefused(ScreenpilotError):
    """The policy refused (``refuse``) or stopped (``abort``) an action a script asked for; ``kind`` says
    which. After ``abort`` the session takes no more actions."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class NoAnswer(ScreenpilotError):
    """The model gave no usable answer to a script's question; ``screenshot`` is the screen it was asked
    about."""

    def __init__(self, message: str, *, screenshot: str | None = None) -> None:
        super().__init__(message + (f" (screenshot: {screenshot})" if screenshot else ""))
        self.screenshot = screenshot
