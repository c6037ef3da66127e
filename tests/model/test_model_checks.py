"""The start-up check, honest retries and deadlines of the server backend, against real loopback sockets."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import SetupError
from screenpilot.model.base import DeadlineExceeded, Message, SupportsCheck
from screenpilot.model.openai_backend import OpenAIBackend, ServerError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from tests.model.openai_server import Reply, ScriptedServer

pytest.importorskip("httpx")

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05}
SCREEN = Size(1080, 2400)


def messages() -> list[Message]:
    dialect = Qwen25VLDialect("mobile_use")
    space = dialect.coordinate_space(SCREEN)
    return dialect.messages("Open settings", Image.new("RGB", tuple(SCREEN), (9, 9, 9)), space, [])


def refused_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts connections (the kernel's backlog does) and never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(models=("qwen-a", "qwen-b")) as s:
        yield s


# -- the start-up check -------------------------------------------------------------------------------------
def test_check_on_a_dead_url_says_to_start_the_server() -> None:
    url = refused_url()
    model = OpenAIBackend(url, served_model="qwen")  # construction does no I/O
    assert isinstance(model, SupportsCheck)
    try:
        with pytest.raises(SetupError) as caught:
            model.check(timeout_s=2.0)
    finally:
        model.close()
    message = str(caught.value)
    assert message.startswith(f"nothing answers at {url} ")
    assert "start the model server there" in message and "\n" not in message


def test_check_on_a_silent_server_fails_within_its_timeout(silent_url: str) -> None:
    model = OpenAIBackend(silent_url)
    try:
        with pytest.raises(SetupError, match=r"did not answer within 0\.3 s: is the server still starting"):
            model.check(timeout_s=0.3)
    finally:
        model.close()


def test_check_refuses_a_served_model_the_server_does_not_list(server: ScriptedServer) -> None:
    model = OpenAIBackend(server.url, served_model="qwen-c")
    try:
        with pytest.raises(
            SetupError, match=r"does not serve 'qwen-c'; it serves: qwen-a, qwen-b \(pass one"
        ):
            model.check()
    finally:
        model.close()
    assert not server.posts


def test_check_picks_the_named_or_the_first_served_model(server: ScriptedServer) -> None:
    named = OpenAIBackend(server.url, served_model="qwen-b")
    first = OpenAIBackend(server.url)
    try:
        named.check()
        first.check()
        assert (named.served_model, first.served_model) == ("qwen-b", "qwen-a")
        assert named.name == f"qwen-b@{server.url}"
        assert named.describe()["server_model"] == {"id": "qwen-b", "root": "qwen-b", "max_model_len": 32768}
    finally:
        named.close()
        first.close()


def test_check_on_a_url_that_is_not_an_openai_server(server: ScriptedServer) -> None:
    model = OpenAIBackend(server.url.removesuffix("/v1") + "/api")
    try:
        with pytest.raises(SetupError, match=r"answered HTTP 404 .*OpenAI-compatible server's /v1 URL"):
            model.check()
    finally:
        model.close()


def test_check_says_when_the_server_wants_an_api_key_or_refuses_it() -> None:
    with ScriptedServer(api_key="sk-right") as keyed:
        missing = OpenAIBackend(keyed.url)
        wrong = OpenAIBackend(keyed.url, api_key="sk-wrong")
        right = OpenAIBackend(keyed.url, api_key="sk-right")
        try:
            with pytest.raises(SetupError, match=r"HTTP 401: it wants an API key \(pass --api-key"):
                missing.check()
            with pytest.raises(SetupError, match=r"HTTP 401: the API key was refused \(pass --api-key"):
                wrong.check()
            right.check()
        finally:
            for model in (missing, wrong, right):
                model.close()
    assert right.served_model == "Qwen/Qwen2.5-VL-7B-Instruct"


# -- retries say so, and count -------------------------------------------------------------------------------
def test_a_retried_call_logs_each_retry_and_counts_its_tries(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.extend([Reply(503, text="busy"), Reply(502, text="gateway"), Reply(200, text="ok")])
    model = OpenAIBackend(server.url, served_model="qwen-a", backoff_s=0.05, backoff_max_s=0.1)
    try:
        with caplog.at_level(logging.WARNING, logger="screenpilot.model"):
            completion = model.complete(messages())
    finally:
        model.close()
    assert completion.text == "ok" and completion.tries == 3
    assert completion.total_s >= 0.05 + 0.1  # the waits between tries are part of the call
    lines = [r.getMessage() for r in caplog.records if r.name == "screenpilot.model"]
    assert len(lines) == 2
    assert "HTTP 503" in lines[0] and "try 2 of 5 in 0.1 s" in lines[0]
    assert "HTTP 502" in lines[1] and "try 3 of 5 in 0.1 s" in lines[1]


def test_a_call_that_fails_after_retries_counts_its_time_in_the_decision(server: ScriptedServer) -> None:
    server.script.extend([Reply(503, text="busy")] * 3)
    model = OpenAIBackend(server.url, served_model="qwen-a", attempts=3, backoff_s=0.1, backoff_max_s=0.2)
    agent = Agent(model, Qwen25VLDialect("mobile_use"))
    try:
        observation = FakeEnv(SCREEN).reset()
        decision = agent.decide("Open settings", observation, [])
    finally:
        model.close()
    assert decision.backend_error and "after 3 attempt(s)" in decision.backend_error
    assert decision.model_s >= 0.1 + 0.2  # not 0.00 s: the retries' waits were spent on the model


# -- timeouts and deadlines ----------------------------------------------------------------------------------
def test_request_timeout_is_a_setting_and_each_try_is_bounded_by_it(silent_url: str) -> None:
    model = OpenAIBackend(silent_url, served_model="qwen", request_timeout_s=0.2, attempts=2, **FAST)
    try:
        with pytest.raises(ServerError, match=r"after 2 attempt\(s\): no answer within 0\.2 s"):
            model.complete(messages())
        assert model.describe()["request_timeout_s"] == 0.2
    finally:
        model.close()


def test_a_deadline_bounds_a_call_to_a_silent_server_retries_included(silent_url: str) -> None:
    model = OpenAIBackend(silent_url, served_model="qwen")  # 120 s per request, 5 attempts
    try:
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.[0-9]+ s.*no room for try 2"):
            model.complete(messages(), deadline=t0 + 0.5)
    finally:
        model.close()


def test_a_deadline_already_past_sends_nothing(server: ScriptedServer) -> None:
    model = OpenAIBackend(server.url, served_model="qwen-a")
    try:
        with pytest.raises(DeadlineExceeded, match=r"ran out before try 1 could be sent"):
            model.complete(messages(), deadline=time.monotonic() - 1)
    finally:
        model.close()
    assert not server.posts


def test_a_deadline_stops_a_stream_that_never_ends(server: ScriptedServer) -> None:
    server.script.append(Reply(200, text="x" * 500, stream=True, chunk_delay_s=0.05))  # 100 events, 5 s
    model = OpenAIBackend(server.url, served_model="qwen-a", stream=True)
    try:
        with pytest.raises(DeadlineExceeded, match=r"ran out mid-answer"):
            model.complete(messages(), deadline=time.monotonic() + 0.3)
    finally:
        model.close()


def test_the_episode_time_budget_bounds_a_step_on_a_silent_server(silent_url: str) -> None:
    model = OpenAIBackend(silent_url, served_model="qwen")  # 120 s per request, 5 attempts
    agent = Agent(model, Qwen25VLDialect("mobile_use"))
    try:
        episode = run_episode(FakeEnv(SCREEN), agent, "Open settings", limits=Limits(max_seconds=0.5))
        steps = list(episode)
    finally:
        model.close()
    assert episode.result is not None and episode.result.reason == "time_budget"
    assert episode.result.error == "time budget of 0.5 s used up"
    assert len(steps) == 1 and steps[0].record.failed  # the step that waited is recorded, with its wait
    assert steps[0].record.timings.model_s > 0
