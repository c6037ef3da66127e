"""Scripting screenpilot from Python: :func:`connect` opens a :class:`Session`."""

from screenpilot.session.connecting import connect
from screenpilot.session.session import Session, Target

__all__ = ["Session", "Target", "connect"]
