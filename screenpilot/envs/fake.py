"""An in-memory environment: a drawable screen that records every action it is given.

It is the loop's test double and lets ``screenpilot run --env fake`` show the whole pipeline without a
device. Each executed action leaves a mark on the screen (unless ``static``), so screens change as they
would on a device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from PIL import Image, ImageDraw

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Action, action_kind
from screenpilot.envs.base import Environment, Observation, Platform
from screenpilot.errors import UnsupportedActionError

_DEFAULT_SIZE = Size(1080, 2400)


class FakeEnv(Environment):
    name: ClassVar[str] = "fake"
    platform: ClassVar[Platform] = "mobile"

    def __init__(
        self,
        size: Size = _DEFAULT_SIZE,
        *,
        platform: Platform = "mobile",
        static: bool = False,
        unsupported: Iterable[str] = (),
    ) -> None:
        """``unsupported`` names action kinds to refuse, as an environment that cannot do them would: an
        action name (``open_app``) or a finer kind of :func:`~screenpilot.actions.types.action_kind`
        (``triple_click``, ``hscroll``)."""
        self.size = Size(*size)
        self.platform = platform  # type: ignore[misc]
        self.static = static
        self.unsupported = frozenset(unsupported)
        self.executed: list[Action] = []
        self.resets = 0
        self._screen = self._blank()

    def _blank(self) -> Image.Image:
        image = Image.new("RGB", self.size, (245, 245, 245))
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, self.size.width - 1, max(1, self.size.height // 20)), fill=(40, 90, 160))
        return image

    def _reset(self) -> None:
        self.resets += 1
        self.executed.clear()
        self._screen = self._blank()

    def _observe(self) -> Observation:
        return Observation(self._screen.copy(), info={"fake": True})

    def _execute(self, action: Action) -> None:
        kind = action_kind(action)
        if action.action in self.unsupported or kind in self.unsupported:
            raise UnsupportedActionError(f"The fake environment cannot do action={kind}.")
        self.executed.append(action)
        if self.static:
            return
        n = len(self.executed)
        draw = ImageDraw.Draw(self._screen)
        x = getattr(action, "x", None)
        y = getattr(action, "y", None)
        if x is None or y is None:
            x, y = (n * 37) % self.size.width, (n * 53) % self.size.height
        r = max(4, self.size.width // 40)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=((n * 50) % 256, 120, 200 - (n * 30) % 200))

    def describe(self) -> dict[str, Any]:
        return {"env": self.name, "size": str(self.size), "platform": self.platform}
