"""Well-formed model answers for loop tests."""

from __future__ import annotations

import json


def call(action: str, **args: object) -> str:
    """A well-formed mobile_use answer."""
    return (
        "<tool_call>\n"
        + json.dumps({"name": "mobile_use", "arguments": {"action": action, **args}})
        + "\n</tool_call>"
    )
