"""A fake ADB server per test, and an AndroidEnv pointed at it with fast retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from screenpilot.envs.android import AndroidEnv, RetryPolicy
from screenpilot.envs.android.fake_server import FakeAdbServer, FakePhone

FAST_RETRY = RetryPolicy(attempts=2, first_wait_s=0.01, max_wait_s=0.02)


@pytest.fixture
def phone() -> FakePhone:
    return FakePhone(serial="emulator-5554")


@pytest.fixture
def server(phone: FakePhone) -> Iterator[FakeAdbServer]:
    with FakeAdbServer([phone]) as fake:
        yield fake


@pytest.fixture
def make_env(server: FakeAdbServer) -> Iterator[Callable[..., AndroidEnv]]:
    made: list[AndroidEnv] = []

    def make(**options: object) -> AndroidEnv:
        options.setdefault("retry", FAST_RETRY)
        options.setdefault("timeout_s", 5.0)
        options.setdefault("ime_switch_wait_s", 0.0)
        env = AndroidEnv(port=server.port, **options)  # type: ignore[arg-type]
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def env(make_env: Callable[..., AndroidEnv]) -> AndroidEnv:
    environment = make_env()
    environment.reset()
    return environment
