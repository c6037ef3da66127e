"""The OpenAI-compatible server backend against a scripted HTTP server on loopback."""

from __future__ import annotations

import base64
import io
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from screenpilot.actions.coords import Size
from screenpilot.actions.types import Click
from screenpilot.agent.agent import Agent
from screenpilot.agent.loop import Limits, run_episode
from screenpilot.envs.fake import FakeEnv
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import Message, ModelBackend, ModelBackendError
from screenpilot.model.openai_backend import (
    ContextTooLong,
    KeyRefused,
    ModelNotServed,
    OpenAIBackend,
    ServerError,
)
from screenpilot.model.qwen25vl import Qwen25VLDialect
from tests.model.openai_server import CONTEXT_TOO_LONG, Reply, ScriptedServer, error_body

pytest.importorskip("httpx")

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05}
SCREEN = Size(1080, 2400)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as s:
        yield s


def backend(server: ScriptedServer, **kwargs: object) -> OpenAIBackend:
    options: dict = {"served_model": "qwen", **FAST}
    options.update(kwargs)
    return OpenAIBackend(server.url, **options)


def prompt(goal: str = "Open the settings app") -> tuple[Qwen25VLDialect, list[Message]]:
    dialect = Qwen25VLDialect("mobile_use")
    space = dialect.coordinate_space(SCREEN)
    return dialect, dialect.messages(goal, Image.new("RGB", tuple(SCREEN), (200, 30, 30)), space, [])


def test_request_carries_the_dialects_exact_prompt_and_resized_png(server: ScriptedServer) -> None:
    dialect, messages = prompt()
    space = dialect.coordinate_space(SCREEN)
    model = backend(server, api_key="sk-test", max_tokens=99)
    try:
        completion = model.complete(messages)
    finally:
        model.close()
    (request,) = server.posts
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer sk-test"
    body = request.json
    assert body["model"] == "qwen" and body["temperature"] == 0.0 and body["max_tokens"] == 99
    assert "tools" not in body and "stream" not in body
    system, user = body["messages"]
    assert system == {"role": "system", "content": dialect.system_prompt(space)}
    assert user["role"] == "user"
    text, image = user["content"]
    assert text == {"type": "text", "text": dialect.user_text("Open the settings app", [])}
    assert image["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    png = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"][len(prefix) :])))
    assert png.format == "PNG" and png.size == (1092, 2408) == tuple(space.model)
    assert png.getpixel((500, 1200)) == (200, 30, 30)  # lossless
    assert completion.text == server.default_text
    assert completion.usage.prompt_tokens == server.tokens.prompt_tokens(body["messages"])
    assert completion.usage.output_tokens == 17
    assert completion.usage.total_s > 0


def test_served_model_defaults_to_the_first_listed(server: ScriptedServer) -> None:
    model = OpenAIBackend(server.url.removesuffix("/v1"), **FAST)  # a bare host:port gets /v1
    try:
        assert isinstance(model, ModelBackend)
        assert model.served_model is None and not server.requests  # construction does no I/O
        model.complete(prompt()[1])  # the first call asks the server what it serves
        assert model.served_model == "Qwen/Qwen2.5-VL-7B-Instruct"
        assert model.base_url == server.url
        described = model.describe()
    finally:
        model.close()
    assert server.requests[0].method == "GET" and server.requests[0].path == "/v1/models"
    assert server.posts[0].json["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert described["served_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert described["server_model"] == {
        "id": "Qwen/Qwen2.5-VL-7B-Instruct",
        "root": "Qwen/Qwen2.5-VL-7B-Instruct",
        "max_model_len": 32768,
    }
    assert "sk-" not in str(described)


def test_503_then_200_is_retried(server: ScriptedServer) -> None:
    server.script.extend([Reply(503, body='{"error": "loading"}'), Reply(200, text="ok")])
    model = backend(server)
    try:
        assert model.complete(prompt()[1]).text == "ok"
    finally:
        model.close()
    assert len(server.posts) == 2


def test_429_waits_what_retry_after_asks(server: ScriptedServer) -> None:
    server.script.extend(
        [Reply(429, body="slow down", headers={"Retry-After": "0.3"}), Reply(200, text="ok")]
    )
    model = backend(server)
    try:
        t0 = time.perf_counter()
        assert model.complete(prompt()[1]).text == "ok"
        waited = time.perf_counter() - t0
    finally:
        model.close()
    assert waited >= 0.3  # the exponential backoff alone would wait 0.01 s
    assert len(server.posts) == 2


def test_dropped_connection_is_retried(server: ScriptedServer) -> None:
    server.script.extend([Reply(drop=True), Reply(200, text="ok")])
    model = backend(server)
    try:
        assert model.complete(prompt()[1]).text == "ok"
    finally:
        model.close()


def test_400_is_not_retried_and_quotes_the_server(server: ScriptedServer) -> None:
    server.script.append(Reply(400, body='{"error": {"message": "max_tokens is too large: 99999"}}'))
    model = backend(server)
    try:
        with pytest.raises(ServerError, match=r"HTTP 400.*max_tokens is too large") as info:
            model.complete(prompt()[1])
    finally:
        model.close()
    assert info.value.status == 400
    assert isinstance(info.value, ModelBackendError)  # the loop ends the episode as model_error
    assert len(server.posts) == 1


def test_server_errors_stop_after_the_configured_attempts(server: ScriptedServer) -> None:
    server.script.extend([Reply(500, body="boom")] * 5)
    model = backend(server, attempts=3)
    try:
        with pytest.raises(ServerError, match=r"after 3 attempt\(s\): HTTP 500: boom"):
            model.complete(prompt()[1])
    finally:
        model.close()
    assert len(server.posts) == 3


def test_connection_refused_is_retried_then_a_backend_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIBackend(f"http://127.0.0.1:{port}/v1", served_model="qwen", attempts=3, **FAST)
    try:
        t0 = time.perf_counter()
        with pytest.raises(ModelBackendError, match=r"after 3 attempt\(s\): ConnectError"):
            model.complete(prompt()[1])
        assert time.perf_counter() - t0 < 5
    finally:
        model.close()


def test_unreachable_server_without_a_served_model_fails_the_first_call() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = OpenAIBackend(f"http://127.0.0.1:{port}/v1", attempts=2, **FAST)
    try:
        with pytest.raises(ModelBackendError, match=r"nothing answers at .*start the model server"):
            model.complete(prompt()[1])
    finally:
        model.close()


def test_timeout_is_retried(server: ScriptedServer) -> None:
    server.script.extend([Reply(200, text="late", delay_s=0.5), Reply(200, text="ok")])
    model = backend(server, request_timeout_s=0.2)
    try:
        assert model.complete(prompt()[1]).text == "ok"
    finally:
        model.close()


def test_answer_that_is_not_json_is_a_backend_error(server: ScriptedServer) -> None:
    server.script.append(Reply(200, body="<html>proxy error</html>"))
    model = backend(server)
    try:
        with pytest.raises(ServerError, match=r"not JSON.*proxy error"):
            model.complete(prompt()[1])
    finally:
        model.close()


def test_streaming_measures_time_to_first_token(server: ScriptedServer) -> None:
    text = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    server.script.append(Reply(200, text=text, stream=True))
    model = backend(server, stream=True)
    try:
        completion = model.complete(prompt()[1])
    finally:
        model.close()
    assert completion.text == text
    assert server.posts[0].json["stream"] is True
    assert completion.usage.prompt_tokens == 99
    ttft = completion.usage.time_to_first_token_s
    assert ttft is not None and 0 < ttft <= completion.usage.total_s


def test_unknown_option_and_bad_url_are_setup_errors(server: ScriptedServer) -> None:
    with pytest.raises(SetupError, match="unknown server backend option"):
        backend(server, top_k=3)
    with pytest.raises(SetupError, match="http://HOST:PORT/v1"):
        OpenAIBackend("localhost:8000", served_model="qwen")


def test_episode_through_the_server_taps_the_mapped_point(server: ScriptedServer) -> None:
    click = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1204]}}\n</tool_call>'
    done = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    server.script.extend([Reply(200, text=click), Reply(200, text=done)])
    env = FakeEnv(SCREEN)
    model = backend(server)
    try:
        episode = run_episode(
            env, Agent(model, Qwen25VLDialect("mobile_use")), "Tap the middle", limits=Limits(max_steps=4)
        )
        records = [step.record for step in episode]
    finally:
        model.close()
    assert episode.result is not None and episode.result.reason == "terminated"
    assert env.executed == [Click(x=540, y=1200)]  # 546/1092*1080, 1204/2408*2400
    assert records[0].usage[0].prompt_tokens == server.tokens.prompt_tokens(server.posts[0].json["messages"])
    # The second prompt carries the first call as history.
    assert "Step 1: " in server.posts[1].json["messages"][1]["content"][0]["text"]


def test_retry_within_a_step_sends_the_bad_answer_and_the_error_as_text(server: ScriptedServer) -> None:
    good = '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}}\n</tool_call>'
    server.script.extend([Reply(200, text="I think I should tap."), Reply(200, text=good)])
    model = backend(server)
    try:
        env = FakeEnv(SCREEN)
        agent = Agent(model, Qwen25VLDialect("mobile_use"), max_retries=1)
        episode = run_episode(env, agent, "Finish", limits=Limits(max_steps=2))
        list(episode)
    finally:
        model.close()
    assert episode.result is not None and episode.result.reason == "terminated"
    first, second = (p.json["messages"] for p in server.posts)
    assert second[:2] == first
    assert second[2] == {"role": "assistant", "content": "I think I should tap."}
    assert second[3]["role"] == "user" and isinstance(second[3]["content"], str)
    assert "No function call found" in second[3]["content"]


def test_missing_httpx_names_the_server_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # what `import httpx` sees when it is not installed
    with pytest.raises(MissingExtraError, match=r"screenpilot\[server\]"):
        OpenAIBackend("http://127.0.0.1:8000/v1", served_model="qwen")


# -- servers as users meet them -------------------------------------------------------------------------------

KEY = "sk-secret-4f1c9d"
CALL = '{"action": "click", "coordinate": [546, 1204]}'
CALL_TEXT = f'<tool_call>\n{{"name": "mobile_use", "arguments": {CALL}}}\n</tool_call>'


def refusal(server: ScriptedServer, caplog: pytest.LogCaptureFixture, **kwargs: object) -> ServerError:
    """The error one completion ends with; it is one line, and no record or log holds the key."""
    model = backend(server, **kwargs)
    try:
        with caplog.at_level("DEBUG"), pytest.raises(ServerError) as info:
            model.complete(prompt()[1])
        described = str(model.describe())
    finally:
        model.close()
    message = str(info.value)
    assert "\n" not in message
    for text in (message, repr(info.value), described, caplog.text):
        assert KEY not in text
    return info.value


def test_a_refused_key_is_named_and_never_repeated(caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(api_key="sk-the-right-one") as server:
        error = refusal(server, caplog, api_key=KEY)
    assert isinstance(error, KeyRefused) and error.status == 401
    assert "the API key was refused (pass --api-key or set $OPENAI_API_KEY)" in str(error)
    assert "Incorrect API key provided: ***" in str(error)  # the server's words, the key masked
    assert len(server.posts) == 1  # not retried


def test_a_model_the_server_does_not_serve_says_which_to_pass(caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(strict_model=True) as server:
        error = refusal(server, caplog, served_model="Qwen/Qwen2.5-VL-72B")
    assert isinstance(error, ModelNotServed) and error.status == 404
    assert "does not serve 'Qwen/Qwen2.5-VL-72B'" in str(error)
    assert "--served-model" in str(error)
    assert len(server.posts) == 1


def test_a_server_without_the_chat_route_asks_for_the_v1_url(caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer(chat_route=False) as server:
        error = refusal(server, caplog)
    assert type(error) is ServerError and error.status == 404
    assert f"POST {server.url}/chat/completions answered HTTP 404 (Not Found)" in str(error)
    assert "OpenAI-compatible server's /v1 URL" in str(error)


def test_a_prompt_over_the_context_length_is_its_own_error(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.append(Reply(400, body=CONTEXT_TOO_LONG))
    error = refusal(server, caplog)
    assert isinstance(error, ContextTooLong) and error.status == 400
    assert "maximum context length is 32768 tokens" in str(error)
    assert "--keep-images" in str(error) and "--max-model-len" in str(error)
    assert len(server.posts) == 1


def test_a_500_then_success_is_one_answer_in_two_tries(server: ScriptedServer) -> None:
    server.script.extend([Reply(500, body=error_body("CUDA out of memory", 500)), Reply(200, text="ok")])
    model = backend(server)
    try:
        completion = model.complete(prompt()[1])
    finally:
        model.close()
    assert (completion.text, completion.usage.tries) == ("ok", 2)


def test_server_errors_never_quote_the_key(server: ScriptedServer, caplog: pytest.LogCaptureFixture) -> None:
    echo = error_body(f"upstream rejected Bearer {KEY}", 502)
    server.script.extend([Reply(502, body=echo), Reply(502, body=echo)])
    error = refusal(server, caplog, api_key=KEY, attempts=2)
    assert "after 2 attempt(s): HTTP 502: upstream rejected Bearer ***" in str(error)
    assert "try 2 of 2" in caplog.text


def test_tool_calls_instead_of_text_become_the_text_the_template_renders(server: ScriptedServer) -> None:
    """A server with a tool parser turned on (vLLM ``--enable-auto-tool-choice``) moves the call out of the
    text; it is put back as the chat template writes an assistant's calls, so the dialect reads it."""
    function = {"name": "mobile_use", "arguments": CALL}
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": function}],
    }
    server.script.append(Reply(message=message))
    server.script.append(Reply(message={**message, "content": "Thought: the button."}))
    model = backend(server)
    dialect, messages = prompt()
    try:
        bare, with_thought = model.complete(messages).text, model.complete(messages).text
    finally:
        model.close()
    assert bare == CALL_TEXT
    assert with_thought == "Thought: the button.\n" + CALL_TEXT
    (parsed,) = dialect.parse(bare, dialect.coordinate_space(SCREEN))
    assert parsed.device == Click(x=540, y=1200)


def test_streamed_tool_calls_are_put_back_too(server: ScriptedServer) -> None:
    server.script.append(Reply(text="Thought: t.", stream=True, stream_calls=(("mobile_use", CALL),)))
    model = backend(server, stream=True)
    try:
        text = model.complete(prompt()[1]).text
    finally:
        model.close()
    assert text == "Thought: t.\n" + CALL_TEXT


def test_content_null_without_calls_is_a_one_line_error(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    message = {"role": "assistant", "content": None, "reasoning_content": "I should tap"}
    server.script.append(Reply(message=message))
    error = refusal(server, caplog)
    assert type(error) is ServerError
    assert "no text (content null" in str(error) and "reasoning_content" in str(error)


def test_ctrl_c_during_a_retry_wait_stops_at_once(server: ScriptedServer) -> None:
    server.script.extend([Reply(503, body="loading")] * 3)
    model = backend(server, backoff_s=30.0, backoff_max_s=30.0)
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    try:
        t0 = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            model.complete(prompt()[1])
        assert time.perf_counter() - t0 < 5
    finally:
        timer.cancel()
        model.close()
    assert len(server.posts) == 1


def test_a_slow_server_is_bounded_by_attempts_and_timeout(server: ScriptedServer) -> None:
    server.script.extend([Reply(200, text="late", delay_s=1.0)] * 3)
    model = backend(server, request_timeout_s=0.2, attempts=3)
    try:
        t0 = time.perf_counter()
        with pytest.raises(
            ServerError, match=r"^POST \S+ failed after 3 attempt\(s\): no answer within 0\.2 s"
        ):
            model.complete(prompt()[1])
        assert time.perf_counter() - t0 < 1.5
    finally:
        model.close()


def test_more_images_than_the_server_takes_says_which_flag(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    said = (
        "At most 1 image(s) may be provided in one request. You can set `--limit-mm-per-prompt` to increase "
        "this limit if this model supports it."
    )
    server.script.append(Reply(400, body=error_body(said, 400)))
    error = refusal(server, caplog)
    assert type(error) is ServerError and error.status == 400
    assert "At most 1 image(s)" in str(error) and "lower --keep-images" in str(error)
    assert len(server.posts) == 1


def test_a_password_in_the_url_goes_as_basic_auth_and_is_never_quoted(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.url.replace("http://", "http://ops:pa%40ss-9f3e@")
    server.script.append(Reply(404, body=error_body("no such route", 404)))
    model = OpenAIBackend(url, served_model="qwen", attempts=1, **FAST)
    try:
        with caplog.at_level("DEBUG"), pytest.raises(ServerError) as info:
            model.complete(prompt()[1])
        shown = [str(info.value), model.name, str(model.describe()), caplog.text]
    finally:
        model.close()
    assert model.base_url == server.url
    for text in shown:
        assert "pa%40ss" not in text and "pa@ss" not in text
    sent = server.posts[0].headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"ops:pa@ss-9f3e").decode()


def test_content_that_is_not_text_is_an_unexpected_shape(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script.append(Reply(message={"role": "assistant", "content": [{"type": "text", "text": "hi"}]}))
    error = refusal(server, caplog)
    assert str(error).startswith("unexpected answer shape from ")
