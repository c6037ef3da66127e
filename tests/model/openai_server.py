"""A scripted OpenAI-compatible server on loopback (stdlib only), for testing the server backend.

Each POST to ``/v1/chat/completions`` takes the next scripted :class:`Reply` (or a plain completion of
``default_text`` when the script is empty) and every request is kept, parsed, for the test to inspect.

A completion's ``usage.prompt_tokens`` is counted as a Qwen-family server counts it (:class:`TokenCounter`):
each image resized with ``smart_resize`` at the server's own factor and pixel limits, so a server whose limits
are narrower than the client's reports fewer image tokens than the image it was sent has.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from screenpilot.actions.coords import QWEN_FACTOR, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, smart_resize


@dataclass(frozen=True)
class Reply:
    status: int = 200
    text: str = ""
    body: str | None = None
    """Raw body; when None, a chat completion answering ``text``."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    stream: bool = False
    """Answer as server-sent events, one per character group of ``text``, then usage and [DONE]."""
    chunk_delay_s: float = 0.0
    """Pause before each streamed event (a slow server)."""
    drop: bool = False
    """Close the connection without answering."""
    message: dict[str, Any] | None = None
    """The completion's ``choices[0].message`` as is (``content: null``, ``tool_calls``), instead of ``text``."""
    stream_calls: tuple[tuple[str, str], ...] = ()
    """Streamed ``tool_calls`` deltas (name, JSON arguments), sent after the text, as vLLM's tool parsers do."""


def completion(
    text: str,
    prompt_tokens: int = 1234,
    completion_tokens: int = 17,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message = message if message is not None else {"role": "assistant", "content": text}
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "qwen",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def error_body(message: str, status: int, kind: str = "BadRequestError") -> str:
    """An error as vLLM and SGLang write it (``{"error": {"message", "type", "param", "code"}}``)."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}})


#: What a vLLM server answers for a prompt over its ``--max-model-len``.
CONTEXT_TOO_LONG = error_body(
    "This model's maximum context length is 32768 tokens. However, you requested 40000 tokens "
    "(39744 in the messages, 256 in the completion). Please reduce the length of the messages or completion.",
    400,
)


@dataclass(frozen=True)
class TokenCounter:
    """Counts a chat request's prompt tokens the way a server with these image settings would: each message
    3 tokens of role markers plus one per word of its text; each image 2 markers (``<|vision_start|>``,
    ``<|vision_end|>``) plus one ``<|image_pad|>`` per ``factor``×``factor`` block of the image as the server
    resizes it (``smart_resize`` with its ``min_pixels``/``max_pixels``)."""

    factor: int = QWEN_FACTOR
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS

    def image_tokens(self, width: int, height: int) -> int:
        """The image pad tokens of a ``width``×``height`` image after this server's resize."""
        h, w = smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return (h // self.factor) * (w // self.factor)

    def prompt_tokens(self, messages: list[dict[str, Any]]) -> int:
        """The prompt tokens of a chat completions ``messages`` list."""
        total = 1
        for message in messages:
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            total += 3
            for part in parts:
                if part.get("type") == "image_url":
                    total += 2 + self.image_tokens(*_data_url_size(part["image_url"]["url"]))
                else:
                    total += len(str(part.get("text", "")).split())
        return total


def _data_url_size(url: str) -> tuple[int, int]:
    """The (width, height) of a base64 image data URL."""
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _call_events(calls: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Streamed ``tool_calls`` deltas: each call's name first, then its arguments in two pieces."""
    events: list[dict[str, Any]] = []
    for index, (name, arguments) in enumerate(calls):
        half = len(arguments) // 2
        first = {"index": index, "id": f"call-{index}", "type": "function", "function": {"name": name}}
        events.append({"choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})
        for piece in (arguments[:half], arguments[half:]):
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            events.append({"choices": [{"index": 0, "delta": delta}]})
    return events


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout under test) is no error of the server's."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


class ScriptedServer:
    def __init__(
        self,
        models: tuple[str, ...] = ("Qwen/Qwen2.5-VL-7B-Instruct",),
        *,
        api_key: str | None = None,
        tokens: TokenCounter | None = None,
        strict_model: bool = False,
        chat_route: bool = True,
    ) -> None:
        self.models = models
        self.api_key = api_key
        """When set, every request is answered 401 unless this Bearer token comes with it; the refusal quotes
        the key it was given, as some servers do."""
        self.strict_model = strict_model
        """When set, a completion for a model not in ``models`` is answered 404 as vLLM does."""
        self.chat_route = chat_route
        """When unset, ``POST /v1/chat/completions`` is answered 404 (a server without that route)."""
        self.tokens = tokens or TokenCounter()
        """How completions count their prompt tokens (by default a server with the model's default limits)."""
        self.script: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.default_text = (
            '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "wait", "time": 1}}\n</tool_call>'
        )
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self, body: Any) -> None:
                server.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))

            def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _refused_key(self) -> bool:
                given = self.headers.get("Authorization", "")
                if not server.api_key or given == f"Bearer {server.api_key}":
                    return False
                shown = given.removeprefix("Bearer ") or "none"
                self._send(
                    401, error_body(f"Incorrect API key provided: {shown}", 401, "AuthenticationError")
                )
                return True

            def _refused_request(self, payload: Any) -> bool:
                if self._refused_key():
                    return True
                if not server.chat_route or self.path != "/v1/chat/completions":
                    self._send(404, json.dumps({"detail": "Not Found"}))
                    return True
                model = payload.get("model") if isinstance(payload, dict) else None
                if server.strict_model and model not in server.models:
                    self._send(404, error_body(f"The model `{model}` does not exist.", 404, "NotFoundError"))
                    return True
                return False

            def do_GET(self) -> None:
                self._record(None)
                if self._refused_key():
                    pass
                elif self.path == "/v1/models":
                    data = [
                        {"id": m, "object": "model", "root": m, "max_model_len": 32768} for m in server.models
                    ]
                    self._send(200, json.dumps({"object": "list", "data": data}))
                else:
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                payload = json.loads(raw) if raw else None
                self._record(payload)
                if self._refused_request(payload):
                    return
                reply = server.script.popleft() if server.script else Reply(text=server.default_text)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.stream and reply.status == 200:
                    self._stream(reply.text, reply.chunk_delay_s, reply.stream_calls)
                    return
                if reply.body is not None:
                    body = reply.body
                else:
                    messages = payload.get("messages") if isinstance(payload, dict) else None
                    counted = server.tokens.prompt_tokens(messages if isinstance(messages, list) else [])
                    body = json.dumps(completion(reply.text, counted, message=reply.message))
                self._send(reply.status, body, reply.headers)

            def _stream(self, text: str, chunk_delay_s: float, calls: tuple[tuple[str, str], ...]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
                events = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
                events += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
                events += _call_events(calls)
                events.append(
                    {"choices": [], "usage": {"prompt_tokens": 99, "completion_tokens": len(pieces)}}
                )
                try:
                    for event in events:
                        time.sleep(chunk_delay_s)
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):  # the client stopped listening
                    pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]
