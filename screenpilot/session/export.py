"""``screenpilot export``: a recorded run as a readable Python script that repeats it.

The script has one :meth:`Replay.do <screenpilot.session.replay.Replay.do>` call per executed action, with the
recorded device point, the name of its anchor and, as a comment, the step's reasoning or conclusion. The anchors
(and each step's recorded call, summary and screenshot) live in a sidecar file next to the script,
``flow.anchors.json`` for ``flow.py``, so the script stays readable. How the script behaves is the replay's:
see :mod:`screenpilot.session.replay`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from screenpilot.actions.types import Action
from screenpilot.errors import SetupError
from screenpilot.session.replay import (
    ANCHORS_SUFFIX,
    RecordedAction,
    Recording,
    action_source,
    write_recording,
)

#: The most characters of a step's note kept in the script's comment.
MAX_NOTE = 300

_HEADER = '''"""Repeats the run recorded in {run}.

Goal: {goal}

Written by `screenpilot export`. Each action is done at its recorded point, in device pixels.
An action with an anchor (a patch of its recorded screenshot, kept in the file ANCHORS) is done
only once its anchor is found on the screen now, and follows it if it moved: while the screen
matches the recording, nothing here asks the model. When an anchor is not found, the agent
takes over: it gets GOAL and the steps done so far, works until its episode ends, and the
replay ends with it (the recorded actions after that one are not done). flow.finish() raises
ReplayFailed when the agent did not succeed.
"""

from pathlib import Path

import screenpilot
from screenpilot import {names}
from screenpilot.session.replay import Replay

GOAL = {goal_value!r}
#: The model the agent uses if it has to take over (a spec as for --model).
MODEL = {model!r}
ANCHORS = Path(__file__).with_name({anchors!r})

with screenpilot.connect({env!r}, model=MODEL, cache=False, name=GOAL{options}) as s:
    flow = Replay(s, ANCHORS)
'''

_FOOTER = """    flow.finish()
"""


def anchors_path(script: Path) -> Path:
    """The sidecar of ``script``: ``flow.py`` -> ``flow.anchors.json``."""
    return script.with_name(script.stem + ANCHORS_SUFFIX)


def script_text(
    recording: Recording, actions: list[RecordedAction], *, script: Path, options: dict[str, Any]
) -> str:
    """The source of the script; ``options`` are the settings it connects with (``env`` and ``model`` among
    them, every other one passed to :func:`screenpilot.connect` by name)."""
    rest = {k: v for k, v in options.items() if k not in ("env", "model")}
    names = sorted({type(a.action).__name__ for a in actions})
    head = _HEADER.format(
        run=_doc(recording.run),
        goal=_doc(recording.goal),
        goal_value=recording.goal,
        anchors=anchors_path(script).name,
        names=", ".join(names),
        model=options.get("model"),
        env=options.get("env"),
        options="".join(f", {k}={v!r}" for k, v in rest.items()),
    )
    return head + "".join(_lines(recording, actions)) + _FOOTER


def _lines(recording: Recording, actions: list[RecordedAction]) -> list[str]:
    lines: list[str] = []
    last = None
    for done in actions:
        if done.step != last:
            last = done.step
            lines.append(_comment(done.step, recording))
        if done.unanchored:
            lines.append(f"    # no anchor, done unchecked: {_one_line(done.unanchored)}\n")
        lines.append(f"    flow.do({_call(done.step, done.action, done.anchor)})\n")
    return lines


def _call(step: int, action: Action, anchor: str | None) -> str:
    return f"{step}, {action_source(action)}" + (f", anchor={anchor!r}" if anchor else "")


def _comment(step: int, recording: Recording) -> str:
    recorded = recording.steps.get(step)
    note = recorded.summary if recorded else None
    if recorded and not note and not any(c.startswith("{") for c in recorded.calls):
        note = "; ".join(recorded.calls)  # a script's verbs (an agent's calls are JSON: left out)
    text = f"    # step {step}"
    return text + (f": {_one_line(note)}\n" if note else "\n")


def _doc(text: str) -> str:
    """``text`` on one line, safe inside a triple-quoted docstring."""
    return " ".join(text.split()).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_NOTE else flat[: MAX_NOTE - 1] + "…"


def write_export(
    recording: Recording,
    actions: list[RecordedAction],
    script: Path,
    options: dict[str, Any],
    *,
    force: bool = False,
) -> Path:
    """Write the script and its anchors file; returns the anchors file. An existing script is not
    overwritten without ``force`` (it may hold edits)."""
    sidecar = anchors_path(script)
    if script.suffix != ".py":
        raise SetupError(f"-o {script}: the script's name must end in .py")
    if not force and (script.exists() or sidecar.exists()):
        raise SetupError(f"{script} or {sidecar.name} already exists; choose another -o or add --force")
    text = script_text(recording, actions, script=script, options=options)
    write_recording(recording, sidecar)
    tmp = script.with_name(script.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, script)
    except OSError as exc:
        raise SetupError(f"cannot write {script}: {exc.strerror or exc}") from None
    return sidecar
