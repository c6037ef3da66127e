"""A test model for MiniWoB++ that reads the page's DOM through selenium and answers as Qwen2.5-VL does
(computer_use tool calls in the model image's pixels). Test code: it checks the harness, not a model."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Sequence
from typing import Any

from screenpilot.envs.base import Environment
from screenpilot.model.base import Completion, Message, ModelBackend, Usage
from screenpilot.tasks.miniwob import MiniwobEnv
from screenpilot.tasks.suite import Task

# Where each element is, in CSS pixels of the viewport; pointer events are recorded with their fractional point.
_RECT_JS = """
var e = arguments[0];
var r = e.getBoundingClientRect();
return [r.left, r.top, r.width, r.height];
"""
_LISTEN_JS = """
if (!window.__landed) {
  window.__landed = [];
  document.addEventListener('pointerdown', function (e) { window.__landed.push([e.clientX, e.clientY]); }, true);
}
"""


class RecordingEnv(MiniwobEnv):
    """The MiniWoB++ sandbox, plus where each pointer press landed on the page (in the result's task_result)."""

    def task_result(self) -> dict[str, Any]:
        result = super().task_result()
        driver = self._browser.driver
        result["landed"] = driver.execute_script("return window.__landed || [];") if driver else []
        return result


class RecordingSource:
    """One :class:`RecordingEnv` per worker, kept where the test model can read its page."""

    def __init__(self) -> None:
        self.envs: dict[int, RecordingEnv] = {}
        self.built = 0

    def key(self, task: Task) -> Hashable:
        return "miniwob"

    def build(self, task: Task, worker: int) -> Environment:
        self.built += 1
        self.envs[worker] = RecordingEnv()
        return self.envs[worker]


def _quoted(utterance: str) -> str:
    found = re.search(r'"([^"]*)"', utterance)
    return found.group(1) if found else ""


def _by_text(driver: Any, css: str, text: str) -> Any:
    for element in driver.find_elements("css selector", css):
        if element.text.strip() == text and element.is_displayed():
            return element
    return None


_ORDINALS = {"1st": 0, "2nd": 1, "3rd": 2}


def plan(driver: Any, task: str, utterance: str) -> list[tuple[str, Any]]:
    """The actions that solve ``task`` as the page shows it now: ("click", element) or ("type", text)."""
    find = driver.find_element
    if task == "click-test":
        return [("click", find("css selector", "#subbtn"))]
    if task == "click-test-2":
        return [("click", _by_text(driver, "#area button", utterance.split()[-1].rstrip(".")))]
    if task == "click-button":
        return [("click", _by_text(driver, "#area button", _quoted(utterance)))]
    if task == "click-link":
        return [("click", _by_text(driver, "#area span.alink, #area a", _quoted(utterance)))]
    if task == "click-dialog":
        return [("click", find("css selector", "button.ui-dialog-titlebar-close"))]
    if task == "click-dialog-2":
        wanted = _quoted(utterance)
        if wanted.lower() == "x":
            return [("click", find("css selector", "button.ui-dialog-titlebar-close"))]
        return [("click", _by_text(driver, ".ui-dialog button", wanted))]
    if task == "focus-text":
        return [("click", find("css selector", "#tt"))]
    if task == "focus-text-2":
        index = next(i for word, i in _ORDINALS.items() if word in utterance)
        return [("click", driver.find_elements("css selector", "#area input")[index])]
    if task == "enter-text":
        box = find("css selector", "#tt")
        return [("click", box), ("type", _quoted(utterance)), ("click", find("css selector", "#subbtn"))]
    raise AssertionError(f"the test model has no plan for {task}")


class DomOracle:
    """Answers each step from the page's DOM: the next action of :func:`plan`, aimed at the element's centre.

    ``aims`` collects (task, seed, device point aimed at, element box in device pixels) for every click."""

    name = "dom-oracle"

    def __init__(self, env: MiniwobEnv, aims: list[dict[str, Any]]) -> None:
        self.env = env
        self.aims = aims
        self._todo: list[tuple[str, Any]] | None = None

    def begin_episode(self, task_id: str | None) -> None:
        self._todo = None

    def complete(self, messages: Sequence[Message], *, deadline: float | None = None) -> Completion:
        image = messages[-1].images[-1]
        driver = self.env._browser.driver
        page = self.env.task_result()
        if self._todo is None:
            driver.execute_script(_LISTEN_JS)
            self._todo = plan(driver, page["task"], page["utterance"])
        if not self._todo:
            return self._answer({"action": "terminate", "status": "success"})
        kind, what = self._todo.pop(0)
        if kind == "type":
            return self._answer({"action": "type", "text": what})
        zoom = self.env.zoom
        left, top, width, height = (v * zoom for v in driver.execute_script(_RECT_JS, what))
        aim = (left + width / 2, top + height / 2)
        screen = self.env.size
        model = (round(aim[0] * image.width / screen.width), round(aim[1] * image.height / screen.height))
        self.aims.append(
            {"task": page["task"], "seed": page["seed"], "aim": aim, "box": (left, top, width, height)}
        )
        return self._answer({"action": "left_click", "coordinate": list(model)})

    @staticmethod
    def _answer(arguments: dict[str, Any]) -> Completion:
        call = json.dumps({"name": "computer_use", "arguments": arguments})
        return Completion(f"<tool_call>\n{call}\n</tool_call>", Usage())

    def describe(self) -> dict[str, object]:
        return {"name": self.name}

    def close(self) -> None:
        """Nothing to release."""


class OracleSource:
    """A :class:`DomOracle` per episode, reading the page of the worker's environment."""

    def __init__(self, envs: RecordingSource) -> None:
        self.envs = envs
        self.aims: list[dict[str, Any]] = []

    def describe(self) -> dict[str, Any]:
        return {"name": "dom-oracle"}

    def episode_model(self, worker: int) -> ModelBackend:
        return DomOracle(self.envs.envs[worker], self.aims)

    def release(self, model: ModelBackend) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to release."""
