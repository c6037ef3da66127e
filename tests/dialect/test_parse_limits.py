"""The parser on hostile text: it only ever raises ModelOutputError, only runs clearly called actions,
checks the function name on every path, does work linear in the answer's length and rounds points once."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from screenpilot.actions.coords import CoordinateSpace, Size
from screenpilot.actions.parse import MAX_CALLS, MAX_OUTPUT_CHARS, MAX_TEXT_CHARS, extract_tool_calls
from screenpilot.actions.types import (
    MAX_SCROLL_PIXELS,
    Click,
    Scroll,
    SystemButton,
    Terminate,
    action_to_dict,
)
from screenpilot.agent.agent import Agent
from screenpilot.envs.base import Observation
from screenpilot.errors import ModelOutputError
from screenpilot.model.qwen25vl import Qwen25VLDialect
from screenpilot.model.replay import ReplayModel

MOBILE = Qwen25VLDialect("mobile_use", answer_action=True)
PHONE = MOBILE.coordinate_space(Size(1080, 2400))


def call(arguments: dict[str, object], name: str = "mobile_use") -> str:
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def tagged(*calls: str) -> str:
    return "".join(f"<tool_call>\n{c}\n</tool_call>\n" for c in calls)


def device_actions(
    text: str, dialect: Qwen25VLDialect = MOBILE, space: CoordinateSpace = PHONE
) -> list[object]:
    return [action_to_dict(p.device) for p in dialect.parse(text, space)]


# -- 1. nothing but ModelOutputError ------------------------------------------------------------------------
DEEP = [
    "[" * 1000,
    "{" * 1000,
    '{"a": ' * 1000,
    "[" * 1000 + "]" * 1000,
    tagged('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": ' + "[" * 1000),
    tagged(
        '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": '
        + "[" * 900
        + "]" * 900
        + "}}"
    ),
    tagged(call({"action": "click", "coordinate": [1, 2]}).replace("[1, 2]", "[" * 500 + "1" + "]" * 500)),
    tagged(json.dumps({"name": "mobile_use", "arguments": "[" * 990 + "]" * 990})),
    tagged(
        json.dumps(
            {"name": "mobile_use", "arguments": '{"action": "type", "text": ' + "[" * 900 + "]" * 900 + "}"}
        )
    ),
    "<tool_call>{'name': 'mobile_use', 'arguments': {'action': 'click', 'coordinate': "
    + "(" * 300
    + ")" * 300
    + "}}",
    "<think>" * 2000,
    "<thinking>" + "{" * 1000,
]


@pytest.mark.parametrize("text", DEEP, ids=range(len(DEEP)))
def test_deep_nesting_is_a_model_output_error(text):
    with pytest.raises(ModelOutputError):
        MOBILE.parse(text, PHONE)


ODD_VALUES = [
    "{'name': 'mobile_use', 'arguments': {'action': b'click'}}",  # bytes from a Python literal
    "{'name': 'mobile_use', 'arguments': {'action': 'click', 'coordinate': {1, 2}}}",  # a set
    "{'name': 'mobile_use', 'arguments': {'action': 'click', 'coordinate': [1j, 2]}}",  # a complex number
    "{'name': 'mobile_use', 'arguments': {(1, 2): 'click'}}",  # a tuple key
    '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1' + "0" * 400 + ", 2]}}",
    '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1' + "0" * 5000 + ", 2]}}",
    '{"name": "mobile_use", "arguments": {"action": "wait", "time": 1e999}}',
    '{"name": "mobile_use", "arguments": {"action": "wait", "time": NaN}}',
    '{"name": "mobile_use", "arguments": {"action": "long_press", "coordinate": [1, 2], "time": "9'
    + "9" * 400
    + '"}}',
    '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": "1e999, 5"}}',
    '{"name": ["mobile_use"], "arguments": {"action": "click", "coordinate": [1, 2]}}',
    '{"name": "mobile_use", "arguments": 5}',
]


@pytest.mark.parametrize("text", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_odd_values_are_model_output_errors(text):
    with pytest.raises(ModelOutputError):
        MOBILE.parse(tagged(text), PHONE)


def test_odd_values_on_desktop_are_model_output_errors():
    desktop = Qwen25VLDialect("computer_use")
    screen = desktop.coordinate_space(Size(2560, 1440))
    for args in (
        '{"action": "scroll", "pixels": 1e999}',
        '{"action": "scroll", "pixels": "9' + "9" * 400 + '"}',
    ):
        with pytest.raises(ModelOutputError):
            desktop.parse(tagged(f'{{"name": "computer_use", "arguments": {args}}}'), screen)


PIECES = [
    "<tool_call>", "</tool_call>", "⚗", "📐", "<thinking>", "</thinking>", "<think>", "</think>", "<conclusion>",
    "</conclusion>", "{", "}", "[", "]", "(", ")", '"', "'", "\\", "\n", " ", ":", ",", "```json", "```",
    '"name"', '"mobile_use"', '"computer_use"', '"arguments"', '"parameters"', '"action"', '"click"',
    '"terminate"', '"status"', '"success"', '"coordinate"', "[1, 2]", "[5000, 1]", '"text"', '"type"', "'action'",
    "'click'", "True", "null", "NaN", "1e999", "-7", "0.5", "I'll", "x", "é", "\x00",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_any_text_gives_actions_or_a_model_output_error(pieces):
    text = "".join(pieces)
    try:
        parsed = MOBILE.parse(text, PHONE)
    except ModelOutputError:
        return
    for p in parsed:  # whatever was accepted is usable downstream
        json.loads(p.call)
        action_to_dict(p.device)


def test_scroll_amounts_are_bounded():
    desktop = Qwen25VLDialect("computer_use")
    screen = desktop.coordinate_space(Size(2560, 1440))

    def scroll(pixels: str) -> str:
        return tagged(f'{{"name": "computer_use", "arguments": {{"action": "scroll", "pixels": {pixels}}}}}')

    assert [p.device for p in desktop.parse(scroll(str(-MAX_SCROLL_PIXELS)), screen)] == [
        Scroll(pixels=-MAX_SCROLL_PIXELS)
    ]
    for pixels in ("1e300", str(MAX_SCROLL_PIXELS + 1)):  # 1e300 wheel clicks would never finish
        with pytest.raises(ModelOutputError, match=f"less than or equal to {MAX_SCROLL_PIXELS}"):
            desktop.parse(scroll(pixels), screen)


# -- 2. only clearly called actions -----------------------------------------------------------------------------
PROSE = [
    'I will not do {"action": "terminate", "status": "success"} yet',
    'I will not do {"name": "mobile_use", "arguments": {"action": "terminate", "status": "success"}} yet.',
    "Maybe {'action': 'terminate', 'status': 'success'} later, once the page loads.",
    'The task is not done: {"action": "terminate", "status": "success"} would be wrong.',
    'Sending {"action": "terminate", "status": "success"} now would be premature; I should look first.',
]


@pytest.mark.parametrize("text", PROSE, ids=range(len(PROSE)))
def test_actions_quoted_in_prose_are_not_executed(text):
    with pytest.raises(ModelOutputError, match="not executed"):
        MOBILE.parse(text, PHONE)


def test_a_quote_after_the_call_block_is_not_executed():
    text = tagged(call({"action": "click", "coordinate": [100, 200]}))
    text += 'Next I might do {"action": "terminate", "status": "success"} if the list is empty.'
    assert device_actions(text) == [{"action": "click", "x": 99, "y": 199, "button": "left", "count": 1}]


@pytest.mark.parametrize(
    "text",
    [
        '{"action": "terminate", "status": "success"}',
        'The list is complete.\n{"action": "terminate", "status": "success"}\n',
        '```json\n{"action": "terminate", "status": "success"}\n```',
        "<tool_call>\nDone: {'action': 'terminate', 'status': 'success'}\n</tool_call>",
        'Done. {"action": "terminate", "status": "success"}</tool_call>',
    ],
)
def test_clearly_called_bare_arguments_still_run(text):
    assert device_actions(text) == [{"action": "terminate", "status": "success"}]


# -- 3. the function name is checked on every path ----------------------------------------------------------------
WRONG_NAME = [
    '{"name": "computer_use", "parameters": {"action": "click", "coordinate": [1, 2]}}',
    '{"name": "computer_use", "arguments": {"action": "click", "coordinate": [1, 2]}}',
    "{'name': 'computer_use', 'arguments': {'action': 'click', 'coordinate': [1, 2]}}",
    "{'name': 'computer_use', 'parameters': {'action': 'click', 'coordinate': [1, 2]}}",
    '{"name": "computer_use", "arguments": "{\\"action\\": \\"click\\", \\"coordinate\\": [1, 2]}"}',
    '{"name": "computer_use", "arguments": {"action": "click", "coordinate": [1, 2]}',  # unbalanced
    '{"name": "computer_use", "arguments": {"action": "click", "coordinate": [1, 2]}, }',  # trailing comma
    '{"name": "computer_use", "arguments": {"action": "click", "coordinate": [1, 2]}, "id": true}',
]


@pytest.mark.parametrize("text", WRONG_NAME, ids=range(len(WRONG_NAME)))
def test_another_tools_call_is_never_run(text):
    with pytest.raises(ModelOutputError):
        MOBILE.parse(tagged(text), PHONE)
    with pytest.raises(ModelOutputError):
        MOBILE.parse(text, PHONE)


def test_parameters_is_read_as_arguments_under_the_offered_name():
    text = tagged('{"name": "mobile_use", "parameters": {"action": "click", "coordinate": [100, 200]}}')
    (parsed,) = MOBILE.parse(text, PHONE)
    assert parsed.model == Click(x=100, y=200)
    assert json.loads(parsed.call) == {
        "name": "mobile_use",
        "arguments": {"action": "click", "coordinate": [100, 200]},
    }


def test_arguments_and_parameters_together_are_refused():
    text = (
        '{"name": "mobile_use", "arguments": {"action": "terminate", "status": "failure"}, "parameters": {}}'
    )
    with pytest.raises(ModelOutputError, match="both"):
        MOBILE.parse(tagged(text), PHONE)


# -- 4. linear, bounded work ----------------------------------------------------------------------------------------
def count_lines(parse: Callable[[], object]) -> int:
    """Python lines executed by ``parse`` (its own and everything it calls): a count of work, not a time."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        parse()
    except ModelOutputError:
        pass
    finally:
        sys.settrace(previous)
    return count


HEAVY: dict[str, Callable[[int], str]] = {
    "braces": lambda n: "{" * n,
    "keys": lambda n: '{"a": ' * n,
    "call prefixes": lambda n: '{"name": "mobile_use", "arguments": ' * n,
    "brackets": lambda n: "<tool_call>" + "[" * n,
    "quotes": lambda n: "{'" * n,
    "spaced quotes": lambda n: "{" + "        '" * n,
    "pairs": lambda n: "{}" * n,
    "prose braces": lambda n: "I see { here, don't I? " * (n // 8),
    "openers": lambda n: "<tool_call>{" * (n // 4),
    "thinking": lambda n: "<think>" * (n // 2),
    "escapes": lambda n: '{"a": "' + "\\" * n,
    "calls on lines": lambda n: '{"action": "wait"}\n' * (n // 8),
    "blank lines": lambda n: (" " * 50 + "{}") * (n // 20),
}


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_work_grows_linearly(name):
    make = HEAVY[name]
    small = count_lines(lambda: MOBILE.parse(make(1500), PHONE))
    large = count_lines(lambda: MOBILE.parse(make(3000), PHONE))
    assert large <= 2.3 * small + 2000, (small, large)


def test_text_over_the_cap_is_refused_with_its_length():
    text = tagged(call({"action": "terminate", "status": "success"})) + " " * MAX_OUTPUT_CHARS
    with pytest.raises(ModelOutputError, match=f"{len(text)} characters.*{MAX_OUTPUT_CHARS}"):
        MOBILE.parse(text, PHONE)
    assert extract_tool_calls(text[:MAX_OUTPUT_CHARS])


def test_too_many_calls_are_refused():
    one = call({"action": "wait", "time": 1})
    assert len(MOBILE.parse(tagged(*[one] * MAX_CALLS), PHONE)) == MAX_CALLS
    with pytest.raises(ModelOutputError, match=f"at most {MAX_CALLS}"):
        MOBILE.parse(tagged(*[one] * (MAX_CALLS + 1)), PHONE)


# -- 5. text arguments are capped ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["answer", "type"])
def test_text_arguments_are_capped(kind):
    ok = "é" * MAX_TEXT_CHARS
    (parsed,) = MOBILE.parse(tagged(call({"action": kind, "text": ok})), PHONE)
    assert action_to_dict(parsed.device)["text"] == ok
    with pytest.raises(ModelOutputError, match=f"{MAX_TEXT_CHARS + 1} characters.*{MAX_TEXT_CHARS}"):
        MOBILE.parse(tagged(call({"action": kind, "text": ok + "x"})), PHONE)


def test_a_ten_megabyte_answer_is_refused():
    with pytest.raises(ModelOutputError, match="characters"):
        MOBILE.parse(tagged(call({"action": "answer", "text": "x" * 10_000_000})), PHONE)


# -- 6. points are rounded once ----------------------------------------------------------------------------------------
def test_float_points_are_rounded_once():
    # 100.6 * 1080 / 1092 = 99.49 -> 99; rounding 100.6 to 101 first gave 101 * 1080 / 1092 = 99.89 -> 100.
    (parsed,) = MOBILE.parse(tagged(call({"action": "click", "coordinate": [100.6, 500.6]})), PHONE)
    assert (parsed.device.x, parsed.device.y) == PHONE.to_device(100.6, 500.6) == (99, 499)
    assert (parsed.model.x, parsed.model.y) == (101, 501)


def test_swipe_ends_are_rounded_once():
    args = {"action": "swipe", "coordinate": [100.6, 500.6], "coordinate2": ["100.6", "2407.5"]}
    (parsed,) = MOBILE.parse(tagged(call(args)), PHONE)
    assert action_to_dict(parsed.device) == {
        "action": "swipe", "x": 99, "y": 499, "x2": 99, "y2": 2399, "seconds": 0.3,
    }  # fmt: skip


def test_terminate_is_not_invented():
    assert [
        p.model for p in MOBILE.parse(tagged(call({"action": "terminate", "status": "failure"})), PHONE)
    ] == [Terminate(status="failure")]


# -- through the agent: a hostile answer is feedback for the model, kept with the step ----------------------------------
@pytest.mark.parametrize(
    "hostile",
    [
        tagged('{"name": "mobile_use", "arguments": {"action": "click", "coordinate": ' + "[" * 1000),
        'I will not do {"action": "terminate", "status": "success"} yet',
        tagged(call({"action": "answer", "text": "x" * 10_000_000})),
    ],
    ids=["brackets", "quoted terminate", "10 MB answer"],
)
def test_the_agent_sends_a_hostile_answer_back_and_keeps_it(hostile):
    answers = [(None, hostile), (None, tagged(call({"action": "system_button", "button": "Back"})))]
    agent = Agent(ReplayModel(answers), MOBILE, max_retries=1)
    decision = agent.decide("Go back", Observation(Image.new("RGB", (1080, 2400))), [])
    assert [p.device for p in decision.actions] == [SystemButton(button="back")]
    first = decision.attempts[0]
    assert first.output == hostile and first.error
    assert len(first.error) < 400
