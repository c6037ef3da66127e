"""Desktop environments: the user's own X11/macOS/Windows desktop, and a private Xvfb sandbox.

Importing this package needs no display and no desktop extras; pyautogui and mss are imported when an
environment is first reset.
"""

from screenpilot.envs.desktop.env import DesktopEnv, FailSafeError, PointOutsideScreenError
from screenpilot.envs.desktop.keys import UnknownKeyError
from screenpilot.envs.desktop.sandbox import SandboxEnv

__all__ = ["DesktopEnv", "FailSafeError", "PointOutsideScreenError", "SandboxEnv", "UnknownKeyError"]
