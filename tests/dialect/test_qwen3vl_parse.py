"""Reading Qwen3-VL answers: relative points to device pixels, the new actions, the malformed forms seen in
the wild, and clear refusals of what cannot be mapped."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.types import (
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)
from screenpilot.errors import ModelOutputError, SetupError
from screenpilot.model.qwen3vl import Qwen3VLDialect, read_thought

PHONE = Qwen3VLDialect("mobile_use")
DESK = Qwen3VLDialect("computer_use")

COOKBOOK_MOBILE = (
    "Thought: To search for Musk in X, I need to click on the search bar at the top of the screen. This will "
    "allow me to type in the search query.\n"
    'Action: "I tapped on the search bar to begin searching for Musk."\n'
    "<tool_call>\n"
    '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [447, 81]}}\n'
    "</tool_call>"
)


def call(tool: str, args: str) -> str:
    return f'<tool_call>\n{{"name": "{tool}", "arguments": {args}}}\n</tool_call>'


def one(dialect: Qwen3VLDialect, text: str, screen: Size) -> tuple[object, object]:
    parsed = dialect.parse(text, dialect.coordinate_space(screen))
    assert len(parsed) == 1
    return parsed[0].model, parsed[0].device


@pytest.mark.parametrize(
    ("dialect", "point", "screen", "device"),
    [
        (DESK, (183, 524), Size(2560, 1440), (468, 755)),
        (DESK, (183, 524), Size(1920, 1080), (351, 566)),
        (PHONE, (447, 81), Size(1440, 3120), (644, 253)),
        (PHONE, (447, 81), Size(1080, 2400), (483, 195)),
    ],
)
def test_the_worked_examples_of_the_reference(
    dialect: Qwen3VLDialect, point: tuple[int, int], screen: Size, device: tuple[int, int]
) -> None:
    kind = "click" if dialect is PHONE else "left_click"
    _, action = one(
        dialect, call(dialect.tool, f'{{"action": "{kind}", "coordinate": [{point[0]}, {point[1]}]}}'), screen
    )
    assert action == Click(x=device[0], y=device[1])


def test_the_cookbook_answer_its_thought_and_its_action_line() -> None:
    model, device = one(PHONE, COOKBOOK_MOBILE, Size(1440, 3120))
    assert model == Click(x=447, y=81)
    assert device == Click(x=644, y=253)
    assert PHONE.summary(COOKBOOK_MOBILE) == "I tapped on the search bar to begin searching for Musk."
    assert read_thought(COOKBOOK_MOBILE).startswith("To search for Musk in X")  # type: ignore[union-attr]


def test_swipe_maps_both_points() -> None:
    args = '{"action": "swipe", "coordinate": [500, 750], "coordinate2": [500, 250]}'
    _, action = one(PHONE, call("mobile_use", args), Size(1080, 2400))
    assert action == Swipe(x=541, y=1802, x2=541, y2=601)


@pytest.mark.parametrize(
    ("args", "action"),
    [
        ('{"action": "type", "text": "Musk"}', TypeText(text="Musk")),
        ('{"action": "answer", "text": "42%"}', Answer(text="42%")),
        ('{"action": "system_button", "button": "Back"}', SystemButton(button="back")),
        ('{"action": "long_press", "coordinate": [0, 0], "time": 2}', LongPress(x=0, y=0, seconds=2)),
        ('{"action": "wait", "time": 2}', Wait(seconds=2)),
        ('{"action": "terminate", "status": "success"}', Terminate(status="success")),
    ],
)
def test_every_phone_action(args: str, action: object) -> None:
    assert one(PHONE, call("mobile_use", args), Size(1080, 2400))[1] == action


@pytest.mark.parametrize(
    ("args", "action"),
    [
        ('{"action": "triple_click", "coordinate": [500, 500]}', Click(x=960, y=540, count=3)),
        ('{"action": "double_click", "coordinate": [500, 500]}', Click(x=960, y=540, count=2)),
        ('{"action": "right_click", "coordinate": [500, 500]}', Click(x=960, y=540, button="right")),
        ('{"action": "middle_click"}', Click(button="middle")),
        ('{"action": "left_click"}', Click()),  # no point: at the pointer, as harnesses do
        ('{"action": "scroll", "pixels": -5}', Scroll(pixels=-5)),
        ('{"action": "scroll", "pixels": "3", "coordinate": [0, 1000]}', Scroll(pixels=3, x=0, y=1079)),
        # hscroll: positive taken as right, which is negative in screenpilot's horizontal convention
        ('{"action": "hscroll", "pixels": 5}', Scroll(pixels=-5, axis="horizontal")),
        ('{"action": "hscroll", "pixels": -300}', Scroll(pixels=300, axis="horizontal")),
        ('{"action": "left_click_drag", "coordinate": [250, 250]}', Drag(x2=480, y2=270)),
        ('{"action": "key", "keys": ["ctrl", "c"]}', Key(keys=("ctrl", "c"))),
        ('{"action": "key", "keys": "ctrl+c"}', Key(keys=("ctrl", "c"))),
        # a string of names with spaces, as UI-TARS writes hotkeys: no key is called "ctrl c"
        ('{"action": "key", "keys": "ctrl c"}', Key(keys=("ctrl", "c"))),
        ('{"action": "key", "keys": ["ctrl shift t"]}', Key(keys=("ctrl", "shift", "t"))),
        ('{"action": "key", "keys": "+"}', Key(keys=("+",))),
        ('{"action": "key", "keys": "ctrl++"}', Key(keys=("ctrl", "+"))),
        ('{"action": "key", "keys": ["keys=[\'ctrl\', \'c\']"]}', Key(keys=("ctrl", "c"))),
        ('{"action": "key", "keys": "[\'alt\', \'tab\']"}', Key(keys=("alt", "tab"))),
        ('{"action": "answer", "text": "yes"}', Answer(text="yes")),
        ('{"action": "wait", "time": 1.5}', Wait(seconds=1.5)),
    ],
)
def test_every_desktop_action(args: str, action: object) -> None:
    assert one(DESK, call("computer_use", args), Size(1920, 1080))[1] == action


@pytest.mark.parametrize("keys", ['"ctrl+"', '"ctrl + shift +"', '["alt+"]'])
def test_a_key_string_ending_in_a_separator_is_refused(keys: str) -> None:
    with pytest.raises(ModelOutputError, match="ends with '\\+' and no key after it"):
        DESK.parse(
            call("computer_use", f'{{"action": "key", "keys": {keys}}}'),
            DESK.coordinate_space(Size(1920, 1080)),
        )


@pytest.mark.parametrize(
    "text",
    [
        # missing closing tag
        '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [447, 81]}}',
        # spaces instead of newlines inside the tags
        '<tool_call> {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [447, 81]}} </tool_call>',
        # code fence
        '```json\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [447, 81]}}\n```',
        # bare object, numbers as strings and floats
        '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": ["447", 81.0]}}',
        # a Thinking model's reasoning, with a call inside it that must not count
        'I could {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [1, 1]}}\n</think>\n'
        + COOKBOOK_MOBILE,
    ],
)
def test_malformed_forms_the_model_writes(text: str) -> None:
    assert one(PHONE, text, Size(1440, 3120))[1] == Click(x=644, y=253)


def test_a_phone_answer_uses_only_its_first_call() -> None:
    text = COOKBOOK_MOBILE + "\n" + call("mobile_use", '{"action": "terminate", "status": "success"}')
    assert one(PHONE, text, Size(1440, 3120))[1] == Click(x=644, y=253)


def test_the_grid_edge_is_the_screen_edge() -> None:
    _, action = one(
        DESK, call("computer_use", '{"action": "left_click", "coordinate": [1000, 1000]}'), Size(1920, 1080)
    )
    assert action == Click(x=1919, y=1079)
    model, action = one(
        PHONE, call("mobile_use", '{"action": "click", "coordinate": [999, 0]}'), Size(1080, 2400)
    )
    assert (model, action) == (Click(x=998, y=0), Click(x=1079, y=0))


@pytest.mark.parametrize(
    ("dialect", "text", "message"),
    [
        (PHONE, call("mobile_use", '{"action": "click", "coordinate": [1200, 81]}'), "within 0..999"),
        (DESK, call("computer_use", '{"action": "left_click", "coordinate": [1002, 5]}'), "within 0..1000"),
        (PHONE, call("mobile_use", '{"action": "click"}'), "requires `coordinate`"),
        (PHONE, call("mobile_use", '{"action": "open", "text": "X"}'), 'Unknown action "open"'),
        (PHONE, call("mobile_use", '{"action": "key", "text": "home"}'), 'Unknown action "key"'),
        (DESK, call("computer_use", '{"action": "click", "coordinate": [1, 2]}'), 'Unknown action "click"'),
        (DESK, call("mobile_use", '{"action": "left_click"}'), "only function is 'computer_use'"),
        (DESK, call("computer_use", '{"action": "hscroll"}'), "requires `pixels`"),
        (DESK, call("computer_use", '{"action": "key", "keys": []}'), "list of key names"),
        (DESK, call("computer_use", '{"action": "scroll", "pixels": 99999}'), "Invalid arguments"),
        (PHONE, call("mobile_use", '{"action": "terminate", "status": "done"}'), "success"),
    ],
)
def test_what_cannot_be_mapped_is_refused_for_the_model(
    dialect: Qwen3VLDialect, text: str, message: str
) -> None:
    with pytest.raises(ModelOutputError, match=message) as caught:
        dialect.parse(text, dialect.coordinate_space(Size(1920, 1080)))
    assert "\n" not in str(caught.value)


def test_an_answer_without_a_call_asks_for_one() -> None:
    with pytest.raises(ModelOutputError, match="tool_call"):
        PHONE.parse(
            "Thought: the search bar.\nAction: I will tap the search bar.", PHONE.coordinate_space(Size(9, 9))
        )


def test_the_factory_takes_every_dialect_option_and_refuses_what_it_cannot_honour() -> None:
    phone = Qwen3VLDialect.for_platform(
        "mobile", min_pixels=3136, max_pixels=12845056, answer_action=True, reasoning=True, keep_images=2
    )
    assert (phone.min_pixels, phone.max_pixels, phone.keep_images) == (3136, 12845056, 2)
    desk = Qwen3VLDialect.for_platform("desktop", answer_action=False, reasoning=False)
    assert (desk.min_pixels, desk.max_pixels) == (65536, 16777216)  # the checkpoints' own limits
    assert desk.describe()["answer_action"] is True  # both tools always offer it
    with pytest.raises(SetupError, match="no reasoning form"):
        Qwen3VLDialect.for_platform("desktop", reasoning=True)
    with pytest.raises(SetupError, match="above 16777216"):
        Qwen3VLDialect.for_platform("mobile", max_pixels=16777216 + 1)
    with pytest.raises(SetupError, match="keep_images"):
        Qwen3VLDialect.for_platform("mobile", keep_images=-1)


@pytest.mark.parametrize(
    "screen", [Size(1080, 2400), Size(2400, 1080), Size(1920, 1080), Size(393, 852), Size(3840, 2160)]
)
@pytest.mark.parametrize("dialect", [PHONE, DESK])
def test_device_points_survive_the_grid_on_portrait_and_landscape_screens(
    dialect: Qwen3VLDialect, screen: Size
) -> None:
    space = dialect.coordinate_space(screen)
    kind = "click" if dialect is PHONE else "left_click"
    cell = max(screen) / dialect.grid  # one grid step, in device pixels
    for fx, fy in [(0.1, 0.9), (0.5, 0.5), (0.93, 0.07), (0.0, 1.0)]:
        target = (
            min(round(fx * screen.width), screen.width - 1),
            min(round(fy * screen.height), screen.height - 1),
        )
        gx, gy = space.to_model(*target)
        (parsed,) = dialect.parse(
            call(dialect.tool, f'{{"action": "{kind}", "coordinate": [{gx}, {gy}]}}'), space
        )
        assert (
            isinstance(parsed.device, Click) and parsed.device.x is not None and parsed.device.y is not None
        )
        assert abs(parsed.device.x - target[0]) <= cell / 2 + 1
        assert abs(parsed.device.y - target[1]) <= cell / 2 + 1
