"""Python success checks for the sandbox example suite: read what the demo app really received."""

from __future__ import annotations

import json
from typing import Any

from screenpilot.tasks.checks import CheckContext

LOG = "/tmp/screenpilot-demo$DISPLAY.jsonl"


def events(ctx: CheckContext) -> list[dict[str, Any]]:
    """The app's events since it last started (its latest ``ready`` line)."""
    result = ctx.shell(f"cat {LOG}")
    found: list[dict[str, Any]] = []
    for line in result.output.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event.get("event") == "ready":
            found = []
        found.append(event)
    return found


def saw_event(ctx: CheckContext, event: str) -> tuple[bool, str]:
    seen = [e["event"] for e in events(ctx)]
    return event in seen, f"events since start: {', '.join(seen) or 'none'}"


def wheel_turned(ctx: CheckContext, direction: str) -> tuple[bool, str]:
    turns = [e for e in events(ctx) if e.get("event") == "wheel"]
    matching = [e for e in turns if e.get("direction") == direction]
    return bool(matching), f"{len(matching)} of {len(turns)} wheel steps went {direction}"
