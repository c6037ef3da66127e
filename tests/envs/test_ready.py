"""``Environment.ready``: reset and not closed since. ``connect()`` keeps a given environment that is ready (its
screen and app as the caller left them) and resets one that is not."""

from __future__ import annotations

from pathlib import Path

import screenpilot
from screenpilot.envs.fake import FakeEnv
from screenpilot.model.replay import ReplayModel


def test_ready_follows_reset_and_close() -> None:
    env = FakeEnv()
    assert not env.ready
    env.reset()
    assert env.ready
    env.close()
    assert not env.ready


def _connect(env: FakeEnv, out: Path) -> None:
    session = screenpilot.connect(env, model=ReplayModel([]), out=out, cache=False, quiet=True, settle=False)
    session.close()


def test_connect_resets_a_given_environment_only_when_it_is_not_ready(tmp_path: Path) -> None:
    fresh = FakeEnv()
    _connect(fresh, tmp_path / "fresh")
    assert fresh.resets == 1
    prepared = FakeEnv()
    prepared.reset()
    _connect(prepared, tmp_path / "prepared")
    assert prepared.resets == 1  # kept as the caller left it
