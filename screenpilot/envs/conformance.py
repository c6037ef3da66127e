"""The behaviour every environment must share, as a reusable check.

Each environment's tests call :func:`check_environment` with a factory for a fresh instance; it raises
``AssertionError`` naming the broken rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from screenpilot.actions.types import Action, Wait, action_kind
from screenpilot.envs.base import Environment, EnvironmentStateError, Observation
from screenpilot.errors import UnsupportedActionError

Outcome = Literal["done", "refused"]


def check_environment(
    factory: Callable[[], Environment],
    *,
    safe_actions: Sequence[Action] = (Wait(seconds=0),),
) -> Observation:
    """Run the shared conformance rules against fresh instances from ``factory``; return the first observation.

    ``safe_actions`` (device pixels) must be harmless on the environment under test.
    """
    env = factory()
    try:
        assert env.platform in ("mobile", "desktop"), (
            f"platform must be mobile or desktop, not {env.platform!r}"
        )
        assert isinstance(env.name, str) and env.name, "an environment needs a name"
        for use in (env.observe, lambda: env.execute(Wait(seconds=0))):
            try:
                use()
            except EnvironmentStateError:
                pass
            else:
                raise AssertionError("using an environment before reset() must raise EnvironmentStateError")

        first = env.reset()
        assert isinstance(first, Observation), "reset() must return an Observation"
        width, height = first.size
        assert width > 0 and height > 0, "the screenshot must not be empty"
        assert first.screenshot.mode in ("RGB", "RGBA", "L"), f"unexpected image mode {first.screenshot.mode}"
        assert first.screenshot.convert("RGB").getbbox() is not None, (
            "the first screenshot is entirely black: a failed capture must raise, not return black"
        )
        for action in safe_actions:
            env.execute(action)
        again = env.observe()
        assert again.size == first.size, (
            f"the screen size changed from {first.size} to {again.size} by itself"
        )
        info = env.describe()
        assert isinstance(info, dict) and "env" in info, "describe() must return a dict with an 'env' key"

        second = env.reset()
        assert second.size == first.size, "a second reset() must work and keep the screen size"
    finally:
        env.close()
    env.close()  # twice is safe
    try:
        env.observe()
    except EnvironmentStateError:
        pass
    else:
        raise AssertionError("observe() after close() must raise EnvironmentStateError")
    return first


def check_actions(env: Environment, actions: Sequence[Action]) -> dict[str, Outcome]:
    """Execute each action (device pixels) on a reset ``env``: each must be done, or refused with an
    :class:`~screenpilot.errors.UnsupportedActionError` whose message is one non-empty line the model can act
    on. Any other outcome raises ``AssertionError``. Returns each action's kind
    (:func:`~screenpilot.actions.types.action_kind`) and what happened to it."""
    outcomes: dict[str, Outcome] = {}
    for action in actions:
        kind = action_kind(action)
        try:
            env.execute(action)
        except UnsupportedActionError as exc:
            message = str(exc)
            assert message.strip() and "\n" not in message, (
                f"refusing {kind} needs a one-line message for the model, not {message!r}"
            )
            outcomes[kind] = "refused"
        except Exception as exc:
            raise AssertionError(
                f"{kind} must be done or refused as unsupported, not raise {type(exc).__name__}: {exc}"
            ) from exc
        else:
            outcomes[kind] = "done"
    return outcomes
