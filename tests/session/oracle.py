"""An OpenAI-compatible loopback server that answers like a model that can see the demo app.

It knows what is really on the screen from the demo app's own event log: the ``ready`` event gives each
widget's screen rectangle and the button's label, ``submit`` events what the app showed after a send. It
answers the Qwen2.5-VL prompts screenpilot sends (grounding, questions, agent steps) in the native tool-call
format, in the model's pixels (read from the prompt's stated resolution), and counts every call. Prompt tokens
are counted as a server with the model's default pixel limits would; a request without an image (the server
backend's one-off text token count) is answered with nothing and not counted.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.model.openai_server import TokenCounter

MODEL_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
#: A target the oracle "sees" beyond the screen's edge (a model pointing off screen).
OFF_SCREEN = "the widget past the edge"


def _texts(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


class Oracle:
    """Serves ``/v1/models`` and ``/v1/chat/completions``; ``prompts`` holds each completion's user text."""

    def __init__(self, log: Path, device: tuple[int, int] = (1280, 800)) -> None:
        self.log = log
        self.device = device
        self.prompts: list[str] = []
        oracle = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                messages = body["messages"]
                seen = any(isinstance(m["content"], list) for m in messages)  # an image came with it
                text = oracle.answer(messages) if seen else ""
                prompt_tokens = TokenCounter().prompt_tokens(messages)
                self._send(
                    {
                        "id": "oracle",
                        "object": "chat.completion",
                        "model": MODEL_ID,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": 20,
                            "total_tokens": prompt_tokens + 20,
                        },
                    }
                )

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> Oracle:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def calls(self) -> int:
        return len(self.prompts)

    # -- what the app shows -----------------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        # Only lines a newline ends are complete: the app may be writing its last one right now.
        lines = self.log.read_text(encoding="utf-8").split("\n")[:-1] if self.log.exists() else []
        return [json.loads(line) for line in lines if line.strip()]

    def screen(self) -> dict[str, Any]:
        readies = [e for e in self.events() if e["event"] == "ready"]
        return readies[-1] if readies else {"widgets": {}, "label": ""}

    def find(self, words: str) -> tuple[int, int] | None:
        """The device centre of the widget ``words`` names, as a model would read it off the screen."""
        screen = self.screen()
        words = words.lower()
        name = None
        if screen["label"].lower() in words or words in ("the button", "button"):
            name = "button"
        elif any(w in words for w in ("field", "entry", "text box")):
            name = "entry"
        elif "pad" in words:
            name = "pad"
        if name is None:
            return None
        x, y, w, h = screen["widgets"][name]
        return x + w // 2, y + h // 2

    # -- answers ----------------------------------------------------------------------------------------------
    def answer(self, messages: list[dict[str, Any]]) -> str:
        system = _texts(messages[0]["content"])
        user = _texts(next(m for m in messages if m["role"] == "user")["content"])  # retries add turns
        self.prompts.append(user)
        tool = "mobile_use" if '"name": "mobile_use"' in system else "computer_use"
        size = re.search(r"The screen's resolution is (\d+)x(\d+)", system)
        assert size is not None, system
        model = (int(size.group(1)), int(size.group(2)))
        query = user.split("The user query:  ", 1)[1].split("\n", 1)[0]
        if query.startswith("Click "):
            return self._ground(tool, model, query.removeprefix("Click ").split(". Answer with", 1)[0])
        if query.startswith("Answer this question about the screen"):
            return self._call(tool, action="answer", text=self._reply(query.split(": ", 1)[1]))
        history = user.split("(You have done the following operation on the current device): ", 1)[1]
        if history.strip():
            return self._call(tool, action="terminate", status="success")
        return self._ground(tool, model, query)

    def _ground(self, tool: str, model: tuple[int, int], target: str) -> str:
        if OFF_SCREEN in target:
            return self._call(tool, action="left_click", coordinate=[model[0] + 40, model[1] + 40])
        point = self.find(target)
        if point is None:
            return self._call(tool, action="terminate", status="failure")
        scaled = [round(point[0] * model[0] / self.device[0]), round(point[1] * model[1] / self.device[1])]
        return self._call(tool, action="left_click" if tool == "computer_use" else "click", coordinate=scaled)

    def _reply(self, question: str) -> str:
        if question.startswith("Is this true of the screen: "):
            wanted = re.search(r"'Sent: ([^']*)'", question)
            sent = {e["text"] for e in self.events() if e["event"] == "submit"}
            return "yes" if wanted and wanted.group(1) in sent else "no"
        if "button" in question.lower():
            return self.screen()["label"]
        return "I cannot tell"

    @staticmethod
    def _call(tool: str, **arguments: Any) -> str:
        return "<tool_call>\n" + json.dumps({"name": tool, "arguments": arguments}) + "\n</tool_call>"
