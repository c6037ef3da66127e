"""A model behind an OpenAI-compatible chat completions server (vLLM, SGLang, llama.cpp, ...).

The tools are already rendered into the system text by the dialect, exactly as the model was trained to
see them; no ``tools`` array is sent (servers drop it for Qwen2.5-VL, whose chat template has no tools
section). The screenshot goes as a lossless PNG data URL at the size the dialect resized it to, so the
server's own resize (same factor, limits at least as wide) is a no-op. A backend told what the dialect expects
(:meth:`OpenAIBackend.expect_image_tokens`) checks that on the first call with each image size, from the
server's own token counts, and refuses a server that resized the image anyway.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from PIL import Image
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from screenpilot.actions.coords import Size
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import (
    CHECK_TIMEOUT_S,
    Completion,
    DeadlineExceeded,
    ImagePart,
    Message,
    ModelBackendError,
    TextPart,
    Usage,
    run_bounded,
    seconds_left,
)
from screenpilot.model.dialect import SupportsImageTokens
from screenpilot.model.spec import redact_url
from screenpilot.model.tool_arguments import tool_call_block

log = logging.getLogger("screenpilot.model")
T = TypeVar("T")

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
#: Tokens the Qwen-family chat templates put around each image: ``<|vision_start|>`` and ``<|vision_end|>``.
IMAGE_MARKER_TOKENS = 2


class _Transient(Exception):
    """A failure worth another try; carries the server's Retry-After, if it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _ImageCheck:
    """What the image token check knows: the dialect's expectation, the image sizes already checked, and the
    refusal once there is one (every later call repeats it without asking the server again)."""

    def __init__(self) -> None:
        self.dialect: SupportsImageTokens | None = None
        self.checked: set[tuple[int, int]] = set()
        self.refusal: str | None = None
        self.lock = threading.Lock()


class ServerError(ModelBackendError):
    """The server answered with an error that retrying will not fix (4xx), or stayed unreachable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KeyRefused(ServerError):
    """HTTP 401/403: the server wants an API key, or refused the one given."""


class ModelNotServed(ServerError):
    """The server does not serve the model the request names."""


class ContextTooLong(ServerError):
    """The prompt, images included, does not fit the server's context length."""


#: How vLLM, SGLang, llama.cpp and TGI say that a prompt is over the context length.
_CONTEXT_WORDS = re.compile(
    r"context length|context size|context window|exceed_context_size|maximum context|input is too long|"
    r"prompt is too long|too many (?:input )?tokens|longer than the model",
    re.I,
)
#: How vLLM says that a request holds more images than ``--limit-mm-per-prompt`` allows.
_IMAGE_LIMIT = re.compile(r"at most \d+ image|limit-mm-per-prompt", re.I)
_UNKNOWN_MODEL = re.compile(r"model\b.*\b(?:does not exist|not found|not served|unknown)", re.I)


def _error_message(body: str) -> str:
    """The server's own words from an error body: ``error.message`` (OpenAI, vLLM, SGLang, llama.cpp), a
    string ``error``, ``message`` or ``detail`` (FastAPI), else the body itself."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str):
                return value
    return body


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

    Construction does no I/O. :meth:`check` asks ``GET /models`` once, with a short timeout, and picks the
    served model (the first listed unless ``served_model`` names one the server must list); without a
    ``served_model``, the first :meth:`complete` runs it when nobody did.

    Retried: connection errors, timeouts, 408/425/429 and 5xx (waiting what ``Retry-After`` asks, up to
    ``retry_after_max_s``), each retry logged as a warning on the ``screenpilot.model`` logger. Other 4xx
    answers are not retried: they raise :class:`ServerError` quoting the server. ``request_timeout_s`` bounds
    each request; a call's ``deadline`` bounds the call, retries included. Options: ``attempts`` (5),
    ``backoff_s`` (first wait, 1.0), ``backoff_max_s`` (30), ``retry_after_max_s`` (60), ``stream`` (False;
    True measures time to first token), ``stop`` (list of strings), ``temperature`` (0), ``extra_body``
    (merged into each request, e.g. vLLM sampling extras).
    """

    def __init__(
        self,
        base_url: str,
        *,
        served_model: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 256,
        request_timeout_s: float = 120.0,
        **options: Any,
    ) -> None:
        _check_options(options)
        if not request_timeout_s > 0:
            raise SetupError(f"the request timeout must be positive, got {request_timeout_s:g} s")
        try:
            import httpx
        except ImportError as exc:
            raise MissingExtraError("server", "httpx", "an OpenAI-compatible server model") from exc
        self._httpx = httpx
        self.base_url, credentials = _split_credentials(_base_url(base_url))
        """The server's address, without any ``user:password@`` (sent as Basic auth instead), so that the name,
        errors and logs that quote it never hold a password."""
        self.max_tokens = max_tokens
        self.request_timeout_s = float(request_timeout_s)
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
        self._api_key_given = bool(api_key)
        self._secret = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        auth = httpx.BasicAuth(*credentials) if credentials and not api_key else None
        self._client = httpx.Client(timeout=self.request_timeout_s, headers=headers, auth=auth)
        self._server_model: dict[str, Any] = {}
        self.served_model: str | None = served_model
        self._checked = False
        self.name = f"{served_model}@{self.base_url}" if served_model else self.base_url
        self._images = _ImageCheck()

    # -- the start-up check -----------------------------------------------------------------------------------
    def check(self, timeout_s: float = CHECK_TIMEOUT_S) -> None:
        """One ``GET /models`` within ``timeout_s``: SetupError saying what to do when the server is down,
        refuses us, or does not serve ``served_model``. Picks the served model when none was named."""
        models = run_bounded(
            lambda: self._list_models(timeout_s), timeout_s + 0.25, f"{self.base_url}/models"
        )
        ids = [str(m["id"]) for m in models]
        if self.served_model is None:
            chosen = models[0]
        elif self.served_model in ids:
            chosen = models[ids.index(self.served_model)]
        else:
            raise SetupError(
                f"{self.base_url} does not serve {self.served_model!r}; it serves: {', '.join(ids)} "
                "(pass one of these with --served-model)"
            )
        self.served_model = str(chosen["id"])
        self._server_model = {k: chosen[k] for k in ("id", "root", "max_model_len") if k in chosen}
        self.name = f"{self.served_model}@{self.base_url}"
        self._checked = True

    def _list_models(self, timeout_s: float) -> list[dict[str, Any]]:
        httpx = self._httpx
        url = self.base_url + "/models"
        try:
            response = self._client.get(url, timeout=timeout_s)
        except httpx.ConnectError as exc:
            raise SetupError(
                f"nothing answers at {self.base_url} ({_first_line(exc)}): start the model server there, "
                "or pass the URL it listens on"
            ) from exc
        except httpx.TimeoutException as exc:
            raise SetupError(
                f"{url} did not answer within {timeout_s:g} s: is the server still starting, or is the URL right?"
            ) from exc
        except httpx.HTTPError as exc:
            raise SetupError(f"could not reach {url}: {_first_line(exc)}") from exc
        return self._models_from(response, url)

    def _models_from(self, response: Any, url: str) -> list[dict[str, Any]]:
        status = response.status_code
        if status in (401, 403):
            what = "the API key was refused" if self._api_key_given else "it wants an API key"
            raise SetupError(f"{url} answered HTTP {status}: {what} (pass --api-key or set $OPENAI_API_KEY)")
        if status >= 400:
            raise SetupError(
                f"{url} answered HTTP {status} ({self._quote(response.text)}): is this an OpenAI-compatible "
                "server's /v1 URL?"
            )
        try:
            listing = response.json()
        except ValueError:
            listing = None
        models = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(models, list) or not models:
            raise SetupError(f"{url} lists no model: {self._quote(response.text)}")
        if not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
            raise SetupError(f"{url} lists models without ids: {self._quote(response.text)}")
        return models

    def _ensure_checked(self, deadline: float | None) -> None:
        """Pick the served model on first use when neither the caller nor :meth:`check` did."""
        if self._checked or self.served_model is not None:
            return
        left = seconds_left(deadline)
        try:
            self.check(min(self.request_timeout_s, left) if left is not None else self.request_timeout_s)
        except SetupError as exc:
            raise ServerError(str(exc)) from exc

    # -- HTTP with retries ------------------------------------------------------------------------------------
    def _wait_s(self, tries: int, exc: _Transient) -> float:
        if exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max_s)
        return min(self.backoff_s * 2 ** (tries - 1), self.backoff_max_s)

    def _timeout_for(self, deadline: float | None, what: str, tries: int) -> float:
        left = seconds_left(deadline)
        if left is None:
            return self.request_timeout_s
        if left <= 0:
            raise DeadlineExceeded(f"{what}: the time budget ran out before try {tries} could be sent")
        return min(self.request_timeout_s, left)

    def _retrying(self, what: str, once: Callable[[float], T], deadline: float | None) -> tuple[T, int]:
        """``once(timeout)`` until it stops raising _Transient (tenacity): at most ``attempts`` tries, waiting
        the backoff (or what Retry-After asks) between them, never past ``deadline``. Ctrl-C in a wait stops
        at once."""
        tries = 0

        def attempt() -> T:
            nonlocal tries
            tries += 1
            return once(self._timeout_for(deadline, what, tries))

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if state.attempt_number >= self.attempts or not isinstance(exc, _Transient):
                return 0.0  # no next try: the stop condition ends it
            seconds = self._wait_s(state.attempt_number, exc)
            left = seconds_left(deadline)
            if left is not None and seconds >= left:
                raise DeadlineExceeded(
                    f"{what} failed ({exc}) and the time budget leaves no room for try {state.attempt_number + 1}"
                ) from exc
            log.warning(
                "%s: %s; try %d of %d in %.1f s", what, exc, state.attempt_number + 1, self.attempts, seconds
            )
            return seconds

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            return retrying(attempt), tries
        except _Transient as exc:
            raise ServerError(f"{what} failed after {tries} attempt(s): {exc}") from exc

    def _request(
        self, method: str, path: str, body: dict[str, Any], deadline: float | None
    ) -> tuple[Any, int]:
        """One call with retries: the parsed JSON body and how many tries it took."""
        url = self.base_url + path
        return self._retrying(
            f"{method} {url}", lambda timeout: self._once(method, url, body, timeout), deadline
        )

    def _once(self, method: str, url: str, body: dict[str, Any], timeout: float) -> Any:
        httpx = self._httpx
        try:
            response = self._client.request(method, url, json=body, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise _Transient(f"no answer within {timeout:.3g} s ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:  # connection refused or reset, DNS, protocol errors
            raise _Transient(f"{type(exc).__name__}: {self._quote(str(exc))}") from exc
        self._check_status(response, method, url)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{method} {url} answered {response.status_code} with a body that is not JSON: "
                f"{self._quote(response.text)!r}",
                status=response.status_code,
            ) from exc

    def _quote(self, text: str) -> str:
        """Server text fit for an error or a log line: one line, bounded, the API key masked."""
        if self._secret:
            text = text.replace(self._secret, "***")
        return _excerpt(text)

    def _check_status(self, response: Any, method: str, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        said = self._quote(_error_message(response.text))
        if status in _TRANSIENT_STATUS or status >= 500:
            raise _Transient(f"HTTP {status}: {said}", _retry_after(response.headers.get("retry-after")))
        raise self._refusal(f"{method} {url} answered HTTP {status}", status, said)

    def _refusal(self, where: str, status: int, said: str) -> ServerError:
        """The typed error for a 4xx answer, with what to do about it."""
        if status in (401, 403):
            what = "the API key was refused" if self._api_key_given else "it wants an API key"
            return KeyRefused(
                f"{where}: {what} (pass --api-key or set $OPENAI_API_KEY); it says: {said}", status=status
            )
        if _CONTEXT_WORDS.search(said):
            return ContextTooLong(
                f"{where}: the prompt is over the model's context length ({said}); keep fewer screenshots "
                "(--keep-images), lower --max-pixels, or serve a longer context (vLLM --max-model-len)",
                status=status,
            )
        if _IMAGE_LIMIT.search(said):
            return ServerError(
                f"{where}: it takes fewer images per prompt than were sent ({said}); start it with "
                "--limit-mm-per-prompt allowing one image more than --keep-images (vLLM), or lower --keep-images",
                status=status,
            )
        model = self.served_model
        if status in (400, 404) and (_UNKNOWN_MODEL.search(said) or (model and f"`{model}`" in said)):
            return ModelNotServed(
                f"{where}: it does not serve {model!r} ({said}); pass a model it lists at "
                f"{self.base_url}/models with --served-model",
                status=status,
            )
        if status in (404, 405):
            return ServerError(
                f"{where} ({said}): is {self.base_url} an OpenAI-compatible server's /v1 URL?", status=status
            )
        return ServerError(f"{where}: {said}", status=status)

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

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        """The server's answer; ``deadline`` (``time.monotonic()``) bounds every try and every wait. With
        :meth:`expect_image_tokens`, the first call with each image size also checks the server's image token
        count (SetupError when it resized the image; every later call repeats it without asking)."""
        if self._images.refusal is not None:
            raise SetupError(self._images.refusal)
        completion = self._complete(messages, deadline)
        if self._images.dialect is not None:
            self._check_new_images(messages, completion.usage.prompt_tokens, deadline)
        return completion

    def _complete(self, messages: Sequence[Message], deadline: float | None) -> Completion:
        t0 = time.perf_counter()
        self._ensure_checked(deadline)
        body = self.request_body(messages)
        if self.stream:
            return self._complete_streaming(body, t0, deadline)
        answer, tries = self._request("POST", "/chat/completions", body, deadline)
        try:
            choice = answer["choices"][0]
            message = choice["message"]
            text = answer_text(message.get("content"), message.get("tool_calls"))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise ServerError(
                f"unexpected answer shape from {self.base_url}: {self._quote(json.dumps(answer))}"
            ) from exc
        if text is None:
            raise ServerError(self._no_text(message, choice.get("finish_reason")))
        usage = answer.get("usage") or {}
        return Completion(
            text,
            Usage(
                prompt_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                total_s=time.perf_counter() - t0,
                tries=tries,
            ),
        )

    def _complete_streaming(self, body: dict[str, Any], t0: float, deadline: float | None) -> Completion:
        url = self.base_url + "/chat/completions"
        chunks: list[str] = []
        state: dict[str, Any] = {"first": None, "usage": {}, "calls": {}}

        def attempt(timeout: float) -> None:
            chunks.clear()
            state["calls"] = {}
            try:
                with self._client.stream("POST", url, json=body, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                    self._check_status(response, "POST", url)
                    for event in _sse_events(response.iter_lines(), self._quote):
                        _take_event(event, chunks, state)
                        if deadline is not None and time.monotonic() >= deadline:
                            raise DeadlineExceeded(f"POST {url}: the time budget ran out mid-answer")
            except self._httpx.TimeoutException as exc:
                raise _Transient(f"no answer within {timeout:.3g} s") from exc
            except self._httpx.TransportError as exc:
                if chunks:  # part of the answer arrived: do not silently restart it
                    raise ServerError(f"POST {url}: the stream broke off ({type(exc).__name__})") from exc
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc

        _, tries = self._retrying(f"POST {url}", attempt, deadline)
        usage = state["usage"]
        calls = [{"function": call} for _, call in sorted(state["calls"].items())]
        return Completion(
            answer_text("".join(chunks), calls) or "",
            Usage(
                prompt_tokens=usage.get("prompt_tokens"),
                output_tokens=usage.get("completion_tokens"),
                time_to_first_token_s=None if state["first"] is None else state["first"] - t0,
                total_s=time.perf_counter() - t0,
                tries=tries,
            ),
        )

    # -- the image token check -------------------------------------------------------------------------------
    def expect_image_tokens(self, dialect: SupportsImageTokens) -> None:
        """From now on, the first call with each new image size checks that the server counted the image tokens
        ``dialect`` expects for it (:meth:`check_image_tokens`), so a server whose resize is not a no-op is
        refused at the first step instead of shifting every click."""
        self._images.dialect = dialect

    def check_image_tokens(
        self,
        messages: Sequence[Message],
        prompt_tokens: int,
        expected: int,
        *,
        deadline: float | None = None,
    ) -> bool:
        """Compare the image tokens the server counted in ``messages`` (``prompt_tokens`` in all) with
        ``expected``, the ``<|image_pad|>`` tokens of their images. The text tokens are the server's own count of
        the same messages without their images (one more request, one output token), so no tokenizer is
        needed here. SetupError when they differ; False when the server reports no count to compare."""
        sizes = [p.image.size for m in messages for p in m.content if isinstance(p, ImagePart)]
        text_tokens = self._text_tokens(messages, deadline)
        if text_tokens is None:
            return False
        counted = prompt_tokens - text_tokens - IMAGE_MARKER_TOKENS * len(sizes)
        if counted != expected:
            raise SetupError(
                f"the server resized the image: expected {expected} image tokens for {_images_text(sizes)}, "
                f"it counted {counted}; {self._serve_hint()} so its resize is a no-op"
            )
        return True

    def _text_tokens(self, messages: Sequence[Message], deadline: float | None) -> int | None:
        """The server's prompt token count for ``messages`` without their images (None when it gives none)."""
        text_only = [
            Message(m.role, tuple(p for p in m.content if isinstance(p, TextPart))) for m in messages
        ]
        body: dict[str, Any] = {
            "model": self.served_model,
            "messages": chat_messages(text_only),
            "temperature": self.temperature,
            "max_tokens": 1,
            **self.extra_body,
        }
        body.pop("stream", None)
        answer, _ = self._request("POST", "/chat/completions", body, deadline)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return tokens if isinstance(tokens, int) else None

    def _no_text(self, message: dict[str, Any], finish_reason: object) -> str:
        """Why an answer without text is refused, and what to change on the server."""
        hint = ""
        if message.get("reasoning_content") or message.get("reasoning"):
            hint = "; it put the answer in reasoning_content: serve the model without a reasoning parser"
        return (
            f"{self.base_url} answered with no text (content null, no tool_calls, finish_reason "
            f"{finish_reason!r}){hint}"
        )

    def _serve_hint(self) -> str:
        dialect = self._images.dialect
        if dialect is None:
            return "give the server pixel limits at least as wide as the dialect's"
        limits = json.dumps({"min_pixels": dialect.min_pixels, "max_pixels": dialect.max_pixels})
        return (
            f"serve the model with --mm-processor-kwargs '{limits}' (vLLM; the same limits on other servers)"
        )

    def _check_new_images(
        self, messages: Sequence[Message], prompt_tokens: int | None, deadline: float | None
    ) -> None:
        """Run :meth:`check_image_tokens` when ``messages`` hold an image size not checked yet (once per size,
        one worker at a time); a refusal is kept and repeated."""
        state = self._images
        sizes = {p.image.size for m in messages for p in m.content if isinstance(p, ImagePart)}
        with state.lock:
            if state.refusal is not None:
                raise SetupError(state.refusal)
            if not sizes - state.checked or state.dialect is None:
                return
            expected = sum(
                state.dialect.image_tokens(Size(*p.image.size))
                for m in messages
                for p in m.content
                if isinstance(p, ImagePart)
            )
            try:
                checked = prompt_tokens is not None and self.check_image_tokens(
                    messages, prompt_tokens, expected, deadline=deadline
                )
            except SetupError as exc:
                state.refusal = str(exc)
                raise
            if not checked:
                log.warning(
                    "%s reports no prompt token count: cannot check that it keeps the image size",
                    self.base_url,
                )
            state.checked |= sizes

    def describe(self) -> dict[str, object]:
        return {
            "backend": "openai",
            "base_url": redact_url(self.base_url),
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
            "request_timeout_s": self.request_timeout_s,
            "retries": {
                "attempts": self.attempts,
                "backoff_s": self.backoff_s,
                "backoff_max_s": self.backoff_max_s,
                "retry_after_max_s": self.retry_after_max_s,
            },
        }

    def close(self) -> None:
        self._client.close()


def _check_options(options: dict[str, Any]) -> None:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise SetupError(
            f"unknown server backend option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(_OPTIONS))}"
        )


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its ``user:password@``, and those credentials (None when it has none)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=netloc)), (unquote(parts.username), unquote(parts.password or ""))


def _base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, ``/v1`` added to a bare ``http://HOST:PORT``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SetupError(f"server URL must look like http://HOST:PORT/v1, got {base_url!r}")
    return base_url.rstrip("/") if parts.path.strip("/") else base_url.rstrip("/") + "/v1"


def _images_text(sizes: Sequence[tuple[int, int]]) -> str:
    """``a 1092x2408 image`` or ``2 images (1092x2408, 1092x2408)``."""
    shown = [f"{w}x{h}" for w, h in sizes]
    return f"a {shown[0]} image" if len(shown) == 1 else f"{len(shown)} images ({', '.join(shown)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def answer_text(content: str | None, tool_calls: Sequence[dict[str, Any]] | None) -> str | None:
    """The answer as the model wrote it: ``content``, then each call a server's tool parser took out of it
    (vLLM ``--enable-auto-tool-choice``), put back as the Qwen chat templates write an assistant's calls
    (``<tool_call>`` blocks after a newline). None when there is neither text nor a call."""
    if content is not None and not isinstance(content, str):
        raise ValueError(f"content is a {type(content).__name__}, not text")
    blocks = []
    for call in tool_calls or ():
        function = call["function"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):  # else kept as written: the dialect says what is wrong
                arguments = json.loads(arguments)
        blocks.append(tool_call_block(str(function.get("name")), arguments))
    if not blocks:
        return content
    return (content + "\n" if content else "") + "\n".join(blocks)


def _take_event(event: dict[str, Any], chunks: list[str], state: dict[str, Any]) -> None:
    """Add one streamed event's text to ``chunks`` and its tool-call pieces to ``state["calls"]``; note the
    first token's time and the usage."""
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        piece = delta.get("content")
        if (piece or delta.get("tool_calls")) and state["first"] is None:
            state["first"] = time.perf_counter()
        if piece:
            chunks.append(piece)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            kept = state["calls"].setdefault(call.get("index", 0), {"name": "", "arguments": ""})
            kept["name"] += function.get("name") or ""
            kept["arguments"] += function.get("arguments") or ""
    if event.get("usage"):
        state["usage"] = event["usage"]


def _sse_events(lines: Iterator[str], quote: Callable[[str], str]) -> Iterator[dict[str, Any]]:
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
            raise ServerError(f"the stream sent an event that is not JSON: {quote(data)!r}") from exc
        if isinstance(event, dict):
            if "error" in event:
                raise ServerError(
                    f"the server reported an error mid-stream: {quote(json.dumps(event['error']))}"
                )
            yield event
