"""screenpilot: GUI agents and scripts on phones and desktops, grounded by Qwen2.5-VL.

``import screenpilot`` stays light: the names below are loaded the first time they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "Action",
    "ActionRefused",
    "Answer",
    "Click",
    "DeviceError",
    "Drag",
    "Environment",
    "EpisodeResult",
    "ExpectationFailed",
    "Key",
    "LongPress",
    "ModelBackendError",
    "ModelOutputError",
    "MouseMove",
    "NoAnswer",
    "OpenApp",
    "Point",
    "Policy",
    "ScreenpilotError",
    "Scroll",
    "Session",
    "Settings",
    "SettingsError",
    "SetupError",
    "Size",
    "Step",
    "StepRecord",
    "Swipe",
    "SystemButton",
    "TargetNotFound",
    "Terminate",
    "TypeText",
    "UnsupportedActionError",
    "Verdict",
    "Wait",
    "__version__",
    "connect",
]

if TYPE_CHECKING:
    from screenpilot.actions.coords import Point, Size
    from screenpilot.actions.types import (
        Action,
        Answer,
        Click,
        Drag,
        Key,
        LongPress,
        MouseMove,
        OpenApp,
        Scroll,
        Swipe,
        SystemButton,
        Terminate,
        TypeText,
        Wait,
    )
    from screenpilot.agent.loop import EpisodeResult, Step, StepRecord
    from screenpilot.agent.policy import Policy, Verdict
    from screenpilot.envs.base import Environment
    from screenpilot.errors import (
        ActionRefused,
        DeviceError,
        ExpectationFailed,
        ModelOutputError,
        NoAnswer,
        ScreenpilotError,
        SetupError,
        TargetNotFound,
        UnsupportedActionError,
    )
    from screenpilot.model.base import ModelBackendError
    from screenpilot.session import Session, connect
    from screenpilot.settings import Settings, SettingsError

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["connect", "Session"], "screenpilot.session"),
    **dict.fromkeys(["Settings", "SettingsError"], "screenpilot.settings"),
    **dict.fromkeys(["Point", "Size"], "screenpilot.actions.coords"),
    **dict.fromkeys(
        [
            "Action",
            "Answer",
            "Click",
            "Drag",
            "Key",
            "LongPress",
            "MouseMove",
            "OpenApp",
            "Scroll",
            "Swipe",
            "SystemButton",
            "Terminate",
            "TypeText",
            "Wait",
        ],
        "screenpilot.actions.types",
    ),
    **dict.fromkeys(["EpisodeResult", "Step", "StepRecord"], "screenpilot.agent.loop"),
    **dict.fromkeys(["Policy", "Verdict"], "screenpilot.agent.policy"),
    "Environment": "screenpilot.envs.base",
    **dict.fromkeys(
        [
            "ActionRefused",
            "DeviceError",
            "ExpectationFailed",
            "ModelOutputError",
            "NoAnswer",
            "ScreenpilotError",
            "SetupError",
            "TargetNotFound",
            "UnsupportedActionError",
        ],
        "screenpilot.errors",
    ),
    "ModelBackendError": "screenpilot.model.base",
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562), so the command line does not pay for the whole API."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'screenpilot' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
