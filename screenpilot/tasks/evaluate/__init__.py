"""Offline evaluation on recorded screens, no device: grounding (ScreenSpot-style) and next-step prediction
(AndroidControl-style).

The model is asked exactly as the agent asks it (the dialect's system prompt and image size) and its answer is
parsed by the same parser, so these numbers measure the format the agent runs on. Unparsable answers are
misses, and counted.

The parts: :mod:`.data` reads and checks examples, :mod:`.run` asks them (a few at a time, resumable through
the :mod:`.journal`), :mod:`.grounding` and :mod:`.steps` are the two evaluations, :mod:`.matching` says whether
a predicted step is right, :mod:`.report` holds the numbers and tables they share.
"""

from screenpilot.tasks.evaluate.data import Box, action_point, inside
from screenpilot.tasks.evaluate.grounding import (
    GROUNDING_FORMATS,
    evaluate_grounding,
    format_grounding,
    grounding_format,
    grounding_messages,
)
from screenpilot.tasks.evaluate.journal import Journal
from screenpilot.tasks.evaluate.matching import (
    ANDROIDCONTROL_RULES,
    CLICK_TOLERANCE,
    MatchRules,
    StepMatch,
    match_step,
    swipe_direction,
)
from screenpilot.tasks.evaluate.report import PUBLISHED, published_line
from screenpilot.tasks.evaluate.run import RUN_WIDE_FAILURES
from screenpilot.tasks.evaluate.steps import STEP_FORMATS, evaluate_steps, format_steps, steps_format

__all__ = [
    "ANDROIDCONTROL_RULES",
    "CLICK_TOLERANCE",
    "GROUNDING_FORMATS",
    "PUBLISHED",
    "RUN_WIDE_FAILURES",
    "STEP_FORMATS",
    "Box",
    "Journal",
    "MatchRules",
    "StepMatch",
    "action_point",
    "evaluate_grounding",
    "evaluate_steps",
    "format_grounding",
    "format_steps",
    "grounding_format",
    "grounding_messages",
    "inside",
    "match_step",
    "published_line",
    "steps_format",
    "swipe_direction",
]
