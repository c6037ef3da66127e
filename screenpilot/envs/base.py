"""The environment contract: ``reset / observe / execute / close``, in device pixels.

Subclasses implement the underscored hooks; the public methods enforce the life cycle (reset before use,
nothing after close, close safe twice) so every environment behaves the same at its edges.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, runtime_checkable

from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Action
from screenpilot.errors import ScreenpilotError

Platform = Literal["mobile", "desktop"]


@dataclass(frozen=True)
class Observation:
    """What the agent sees: a screenshot in device pixels, plus facts the environment knows about the screen."""

    screenshot: Image.Image
    time: float = field(default_factory=time.time)
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> Size:
        return Size(*self.screenshot.size)


class EnvironmentStateError(ScreenpilotError, RuntimeError):
    """The environment was used out of order (before ``reset`` or after ``close``)."""


class Environment(ABC):
    """A screen the agent can look at and act on."""

    #: Which tool family the model should be given for this environment.
    platform: ClassVar[Platform]
    #: Short name used in records (``android``, ``desktop``, ``sandbox``, ``fake``).
    name: ClassVar[str]

    _ready: bool = False
    _closed: bool = False

    # -- life cycle -------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether ``reset()`` has run and ``close()`` has not since: the environment can be used as it is
        (a caller given one may keep its state instead of resetting it)."""
        return self._ready and not self._closed

    def reset(self) -> Observation:
        """Prepare the environment for an episode and return the first observation."""
        self._check_open()
        self._reset()
        self._ready = True
        return self.observe()

    def observe(self) -> Observation:
        self._check_ready()
        return self._observe()

    def execute(self, action: Action) -> None:
        """Perform ``action`` (device pixels). Raises
        :class:`~screenpilot.errors.UnsupportedActionError` for actions this environment cannot do."""
        self._check_ready()
        self._execute(action)

    def close(self) -> None:
        """Release the device or display. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._ready = False
        self._close()

    def describe(self) -> dict[str, Any]:
        """Device properties for run manifests."""
        return {"env": self.name}

    def __enter__(self) -> Environment:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EnvironmentStateError(f"the {self.name} environment is closed")

    def _check_ready(self) -> None:
        self._check_open()
        if not self._ready:
            raise EnvironmentStateError(f"call reset() on the {self.name} environment before using it")

    # -- hooks ------------------------------------------------------------------------------------------------
    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _observe(self) -> Observation: ...

    @abstractmethod
    def _execute(self, action: Action) -> None: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        pass


# -- optional capabilities, used by task setup and success checks --------------------------------------------


class ShellResult(NamedTuple):
    output: str
    exit_code: int | None
    """None where the transport cannot report it."""


@runtime_checkable
class SupportsShell(Protocol):
    """Runs a shell command where the environment lives (on the phone for Android, locally for desktops)."""

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult: ...


@runtime_checkable
class SupportsFiles(Protocol):
    """Moves files to and from the environment's file system."""

    def push_file(self, local: Path, remote: str) -> None: ...

    def read_file(self, remote: str) -> bytes:
        """The file's bytes. Raises :class:`FileNotFoundError` when nothing is at ``remote``, and
        :class:`~screenpilot.errors.DeviceError` for anything else that keeps it from being read (a folder, a
        file it may not read, a device that does not answer): callers tell "missing" by type alone."""
        ...


@runtime_checkable
class SupportsScreenText(Protocol):
    """The text visible on screen, read from the real UI (e.g. Android's UI hierarchy dump)."""

    def screen_text(self) -> str: ...
