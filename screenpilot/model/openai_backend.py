"""A model behind an OpenAI-compatible chat completions server (vLLM, SGLang, llama.cpp, ...).

The tools are already rendered into the system text by the dialect, exactly as the model was trained to
see them; no ``tools`` array is sent (servers drop it for Qwen2.5-VL, whose chat template has no tools
section). The screenshot goes as a lossless PNG data URL at the size the dialect resized it to, so the
server's own resize (same factor, limits at least as wide) is a no-op.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import Completion, ImagePart, Message, ModelBackendError, TextPart, Usage

_OPTIONS = frozenset(
    {
        "attempts",
        "backoff_s",
        "backoff_max_s",
        "retry_after_max_s",
        "stream",
        "stop",
        "extra_body",
        "temperature",
    }
)
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_EXCERPT = 300


class _Transient(Exception):
    """A failure worth another try; carries the server's Retry-After, if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(ModelBackendError):
    """The server answered with an error that retrying will not fix (4xx), or stayed unreachable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def image_data_url(image: Image.Image) -> str:
    """A PNG data URL of ``image`` as is: lossless, no resize (the dialect sized it)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the chat completions shape; parts keep their order (text, then the screenshot)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if all(isinstance(p, TextPart) for p in message.content):
            text = "".join(p.text for p in message.content if isinstance(p, TextPart))
            out.append({"role": message.role, "content": text})
            continue
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(part.image)}})
            else:
                parts.append({"type": "text", "text": part.text})
        out.append({"role": message.role, "content": parts})
    return out


class OpenAIBackend:
    """Chat completions over HTTP with bounded, backed-off retries of transient failures.

    Retried: connection errors, timeouts, 408/425/429 and 5xx (waiting what ``Retry-After`` asks, up to
    ``retry_after_max_s``). Other 4xx answers are not retried: they raise :class:`ServerError` quoting the
    server. Options: ``attempts`` (5), ``backoff_s`` (first wait, 1.0), ``backoff_max_s`` (30),
    ``retry_after_max_s`` (60), ``stream`` (False; True measures time to first token), ``stop`` (list of
    strings), ``temperature`` (0), ``extra_body`` (merged into each request, e.g. vLLM sampling extras).
    """

    def __init__(
        self,
        base_url: str,
        *,
        served_model: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 256,
        timeout: float = 120.0,
        **options: Any,
    ) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise SetupError(
                f"unknown server backend option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(_OPTIONS))}"
            )
        try:
            import httpx
        except ImportError as exc:
            raise MissingExtraError("server", "httpx", "an OpenAI-compatible server model") from exc
        self._httpx = httpx
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SetupError(f"server URL must look like http://HOST:PORT/v1, got {base_url!r}")
        self.base_url = base_url.rstrip("/") if parts.path.strip("/") else base_url.rstrip("/") + "/v1"
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.attempts = int(options.get("attempts", 5))
        if self.attempts < 1:
            raise SetupError("attempts must be at least 1")
        self.backoff_s = float(options.get("backoff_s", 1.0))
        self.backoff_max_s = float(options.get("backoff_max_s", 30.0))
        self.retry_after_max_s = float(options.get("retry_after_max_s", 60.0))
        self.stream = bool(options.get("stream", False))
        self.stop: list[str] | None = list(options["stop"]) if options.get("stop") else None
        self.temperature = float(options.get("temperature", 0.0))
        self.extra_body: dict[str, Any] = dict(options.get("extra_body") or {})
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._server_model: dict[str, Any] = {}
        try:
            self.served_model = served_model or self._first_served_model()
        except BaseException:
            self._client.close()
            raise
        self.name = f"{self.served_model}@{self.base_url}"

    # -- HTTP -------------------------------------------------------------------------------------------------
    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max_s)
        return float(backoff)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call with retries; returns the parsed JSON body (or the open response when streaming)."""
        url = self.base_url + path
        try:
            for attempt in self._retrying():
                with attempt:
                    return self._once(method, url, body)
        except _Transient as exc:
            raise ServerError(f"{method} {url} failed after {self.attempts} attempt(s): {exc}") from exc
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: dict[str, Any] | None) -> Any:
        httpx = self._httpx
        try:
            response = self._client.request(method, url, json=body)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # connection refused or reset, DNS, protocol errors
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        self._check_status(response, method, url)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{method} {url} answered {response.status_code} with a body that is not JSON: "
                f"{_excerpt(response.text)!r}",
                status=response.status_code,
            ) from exc

    def _check_status(self, response: Any, method: str, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        text = _excerpt(response.text)
        if status in _TRANSIENT_STATUS or status >= 500:
            raise _Transient(f"HTTP {status}: {text}", _retry_after(response.headers.get("retry-after")))
        raise ServerError(f"{method} {url} was refused with HTTP {status}: {text}", status=status)

    def _first_served_model(self) -> str:
        try:
            listing = self._request("GET", "/models")
        except ServerError as exc:
            raise SetupError(
                f"could not list the models of {self.base_url} (pass --served-model?): {exc}"
            ) from exc
        models = listing.get("data") if isinstance(listing, dict) else None
        if not models or not isinstance(models[0], dict) or not isinstance(models[0].get("id"), str):
            raise SetupError(f"{self.base_url}/models lists no model: {_excerpt(json.dumps(listing))}")
        self._server_model = {k: models[0][k] for k in ("id", "root", "max_model_len") if k in models[0]}
        return str(models[0]["id"])

    # -- the ModelBackend protocol -----------------------------------------------------------------------------
    def begin_episode(self, task_id: str | None) -> None:
        pass

    def request_body(self, messages: Sequence[Message]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": chat_messages(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.stop:
            body["stop"] = self.stop
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.extra_body)
        return body

    def complete(self, messages: Sequence[Message]) -> Completion:
        t0 = time.perf_counter()
        body = self.request_body(messages)
        if self.stream:
            return self._complete_streaming(body, t0)
        answer = self._request("POST", "/chat/completions", body)
        try:
            text = answer["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ServerError(
                f"unexpected answer shape from {self.base_url}: {_excerpt(json.dumps(answer))}"
            ) from exc
        usage = answer.get("usage") or {}
        return Completion(
            str(text),
            Usage(
                prompt_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_s=time.perf_counter() - t0,
            ),
        )

    def _complete_streaming(self, body: dict[str, Any], t0: float) -> Completion:
        url = self.base_url + "/chat/completions"
        chunks: list[str] = []
        state: dict[str, Any] = {"first": None, "usage": {}}

        def attempt() -> None:
            chunks.clear()
            try:
                with self._client.stream("POST", url, json=body) as response:
                    if response.status_code >= 400:
                        response.read()
                    self._check_status(response, "POST", url)
                    for event in _sse_events(response.iter_lines()):
                        for choice in event.get("choices") or ():
                            piece = (choice.get("delta") or {}).get("content")
                            if piece:
                                if state["first"] is None:
                                    state["first"] = time.perf_counter()
                                chunks.append(piece)
                        if event.get("usage"):
                            state["usage"] = event["usage"]
            except self._httpx.TimeoutException as exc:
                raise _Transient(f"timed out after {self.timeout:g} s") from exc
            except self._httpx.TransportError as exc:
                if chunks:  # part of the answer arrived: do not silently restart it
                    raise ServerError(f"POST {url}: the stream broke off ({type(exc).__name__})") from exc
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc

        try:
            for retry in self._retrying():
                with retry:
                    attempt()
        except _Transient as exc:
            raise ServerError(f"POST {url} failed after {self.attempts} attempt(s): {exc}") from exc
        usage = state["usage"]
        return Completion(
            "".join(chunks),
            Usage(
                prompt_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                time_to_first_token_s=None if state["first"] is None else state["first"] - t0,
                total_s=time.perf_counter() - t0,
            ),
        )

    def describe(self) -> dict[str, object]:
        return {
            "backend": "openai",
            "base_url": self.base_url,
            "served_model": self.served_model,
            "server_model": self._server_model or None,
            "decoding": {
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                "stop": self.stop,
                "stream": self.stream,
                "extra_body": self.extra_body or None,
            },
            "image": "PNG data URL at the dialect's resized size",
            "timeout_s": self.timeout,
            "retries": {
                "attempts": self.attempts,
                "backoff_s": self.backoff_s,
                "backoff_max_s": self.backoff_max_s,
                "retry_after_max_s": self.retry_after_max_s,
            },
        }

    def close(self) -> None:
        self._client.close()


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """JSON events of a server-sent-events stream, up to ``data: [DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise ServerError(f"the stream sent an event that is not JSON: {_excerpt(data)!r}") from exc
        if isinstance(event, dict):
            if "error" in event:
                raise ServerError(
                    f"the server reported an error mid-stream: {_excerpt(json.dumps(event['error']))}"
                )
            yield event
