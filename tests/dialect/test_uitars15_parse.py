"""UI-TARS-1.5 answers, as the official parser reads them (the reference table of its behaviour on a 1920x1080
screenshot) and in the malformed forms the model really writes, mapped to device pixels."""

from __future__ import annotations

import pytest

from screenpilot.actions.coords import Size
from screenpilot.actions.parse import MAX_CALLS, MAX_OUTPUT_CHARS, MAX_TEXT_CHARS
from screenpilot.actions.types import (
    Answer,
    Click,
    Drag,
    Key,
    LongPress,
    OpenApp,
    Scroll,
    Swipe,
    SystemButton,
    Terminate,
    TypeText,
    Wait,
)
from screenpilot.errors import ModelOutputError
from screenpilot.model.uitars15 import SCROLL_PIXELS, UITars15Dialect


def fhd(fx: float, fy: float) -> tuple[int, int]:
    """The device pixel of a point the official parser gives as fractions of a 1920x1080 screen."""
    return round(fx * 1920), round(fy * 1080)


P100_200 = fhd(0.051759834368530024, 0.18315018315018314)
P10_20 = fhd(0.005175983436853002, 0.018315018315018316)
P300_400 = fhd(0.15527950310559005, 0.3663003663003663)
P960_540 = fhd(0.4968944099378882, 0.4945054945054945)
P500_500 = fhd(0.2587991718426501, 0.45787545787545786)
CLICK_100_200 = Click(x=P100_200[0], y=P100_200[1])

# model text -> (device actions, thought)
DESKTOP = {
    "Thought: Click the button\nAction: click(start_box='(100,200)')": ([CLICK_100_200], "Click the button"),
    "Thought: Click the button\nAction: click(start_box='(100, 200)')": ([CLICK_100_200], "Click the button"),
    "Thought: t\nAction: click(start_box='<|box_start|>(100,200)<|box_end|>')": ([CLICK_100_200], "t"),
    "Thought: t\nAction: click(point='<point>100 200</point>')": ([CLICK_100_200], "t"),
    "Thought: t\nAction: left_double(start_box='(960,540)')": ([Click(x=954, y=534, count=2)], "t"),
    "Thought: t\nAction: right_single(start_box='(10,20)')": ([Click(x=10, y=20, button="right")], "t"),
    "Thought: t\nAction: drag(start_box='(10,20)', end_box='(300,400)')": (
        [Drag(x=P10_20[0], y=P10_20[1], x2=P300_400[0], y2=P300_400[1])],
        "t",
    ),
    "Thought: t\nAction: drag(start_point='<point>10 20</point>', end_point='<point>300 400</point>')": (
        [Drag(x=P10_20[0], y=P10_20[1], x2=P300_400[0], y2=P300_400[1])],
        "t",
    ),
    "Thought: t\nAction: hotkey(key='ctrl c')": ([Key(keys=("ctrl", "c"))], "t"),
    "Thought: t\nAction: type(content='Hello world\\n')": ([TypeText(text="Hello world\n")], "t"),
    "Thought: t\nAction: type(content='It's \"ok\"')": ([TypeText(text='It\'s "ok"')], "t"),
    "Thought: t\nAction: scroll(start_box='(500,500)', direction='down')": (
        [Scroll(pixels=-SCROLL_PIXELS, x=P500_500[0], y=P500_500[1])],
        "t",
    ),
    "Thought: t\nAction: scroll(direction='up')": ([Scroll(pixels=SCROLL_PIXELS)], "t"),
    "Thought: t\nAction: wait()": ([Wait(seconds=5.0)], "t"),
    "Thought: t\nAction: finished(content='Wi-Fi is on.')": (
        [Answer(text="Wi-Fi is on."), Terminate(status="success")],
        "t",
    ),
    "Thought: t\nAction: finished()": ([Terminate(status="success")], "t"),
    "Thought: t\nAction: click(start_box='(100,200)')\n\nclick(start_box='(300,400)')": (
        [CLICK_100_200, Click(x=P300_400[0], y=P300_400[1])],
        "t",
    ),
    "Action: click(start_box='(100,200)')": ([CLICK_100_200], None),
    "Reflection: r\nAction_Summary: s\nAction: click(start_box='(100,200)')": ([CLICK_100_200], "s"),
    "Thought: t\nAction: click(start_box='(100,200)'": ([CLICK_100_200], "t"),
    "Thought: t\nAction: click(start_box='(100,200,300,400)')": ([Click(x=199, y=297)], "t"),
    "Thought: t\nAction: call_user()": ([Terminate(status="failure")], "t"),
    # beyond the official parser: forms it fails on, which the model is known to write
    "Thought: t\nAction:click(start_box='(100,200)')": ([CLICK_100_200], "t"),
    "Thought: t\nAction: click(start_box='(100,200)')<|im_end|>": ([CLICK_100_200], "t"),
    "Thought: 先点击按钮\nAction: click(start_box='(100,200)')": ([CLICK_100_200], "先点击按钮"),
    "Thought: t\nAction: click(start_box='[100, 200]')": ([CLICK_100_200], "t"),
    "Thought: t\nAction: click(start_box='<|box_start|>(100,200,300,400)<|box_end|>')": (
        [Click(x=199, y=297)],
        "t",
    ),
    "Thought: t\nAction: hotkey(key='ctrl+shift+t')": ([Key(keys=("ctrl", "shift", "t"))], "t"),
    "Thought: t\nAction: hotkey(key='Enter')": ([Key(keys=("enter",))], "t"),
    "Thought: t\nAction: hotkey(key='ctrl + shift + t')": ([Key(keys=("ctrl", "shift", "t"))], "t"),
    "Thought: t\nAction: hotkey(key='ctrl++')": ([Key(keys=("ctrl", "+"))], "t"),
    "Thought: t\nAction: type(content='a\\'b \\\\ c')": ([TypeText(text="a'b \\ c")], "t"),
    'Thought: t\nAction: type(content="two words")': ([TypeText(text="two words")], "t"),
    "Thought: t\nAction: scroll(start_box='(500,500)', direction='left')": (
        [Scroll(pixels=SCROLL_PIXELS, axis="horizontal", x=P500_500[0], y=P500_500[1])],
        "t",
    ),
    "Thought: t\nAction: scroll(direction='right')": (
        [Scroll(pixels=-SCROLL_PIXELS, axis="horizontal")],
        "t",
    ),
    "Thought: t\nAction: finished(content='')": ([Terminate(status="success")], "t"),
    "Thought: a\nmulti-line thought\nAction: wait()": ([Wait(seconds=5.0)], "a\nmulti-line thought"),
}


@pytest.fixture
def desktop():
    dialect = UITars15Dialect("desktop")
    return dialect, dialect.coordinate_space(Size(1920, 1080))


@pytest.mark.parametrize("text", list(DESKTOP))
def test_desktop_answers(desktop, text):
    dialect, space = desktop
    actions, thought = DESKTOP[text]
    parsed = dialect.parse(text, space)
    assert [p.device for p in parsed] == actions
    assert dialect.summary(text) == thought


def test_model_frame_keeps_the_written_pixels(desktop):
    dialect, space = desktop
    (parsed,) = dialect.parse("Thought: t\nAction: click(start_box='(100,200)')", space)
    assert parsed.model == Click(x=100, y=200) and parsed.call == "click(start_box='(100,200)')"
    (boxed,) = dialect.parse("Action: click(start_box='<|box_start|>(7,8)<|box_end|>'", space)
    assert boxed.call == "click(start_box='(7,8)')", "the call in history has no box tokens and its ')'"


MOBILE = {
    "Thought: t\nAction: click(start_box='(540,1200)')": [Click(x=534, y=1196)],
    "Thought: t\nAction: long_press(start_box='(546,1204)')": [LongPress(x=540, y=1200)],
    "Thought: t\nAction: drag(start_box='(546,1800)', end_box='(546,600)')": [
        Swipe(x=540, y=1794, x2=540, y2=598)
    ],
    "Thought: t\nAction: open_app(app_name='Settings')": [OpenApp(app="Settings")],
    "Thought: t\nAction: press_home()": [SystemButton(button="home")],
    "Thought: t\nAction: press_back()": [SystemButton(button="back")],
    "Thought: t\nAction: type(content='hello\\n')": [TypeText(text="hello\n")],
    # scroll down shows what lies below: the finger moves up by half the screen, from the point
    "Thought: t\nAction: scroll(start_box='(546,1806)', direction='down')": [
        Swipe(x=540, y=1800, x2=540, y2=600)
    ],
    "Thought: t\nAction: scroll(direction='up')": [Swipe(x=540, y=1200, x2=540, y2=2399)],
    "Thought: t\nAction: scroll(start_box='(546,1204)', direction='right')": [
        Swipe(x=540, y=1200, x2=0, y2=1200)
    ],
    "Thought: t\nAction: scroll(start_box='(100,1204)', direction='left')": [
        Swipe(x=99, y=1200, x2=639, y2=1200)
    ],
    "Thought: t\nAction: finished(content='3 unread')": [
        Answer(text="3 unread"),
        Terminate(status="success"),
    ],
    "Thought: t\nAction: wait()": [Wait(seconds=5.0)],
}


@pytest.mark.parametrize("text", list(MOBILE))
def test_mobile_answers(text):
    dialect = UITars15Dialect("mobile")
    space = dialect.coordinate_space(Size(1080, 2400))
    assert space.model == (1092, 2408)
    assert [p.device for p in dialect.parse(text, space)] == MOBILE[text]


BAD = {
    "": "The answer was empty",
    "Thought: just thinking, no action": "No `Action:` line found",
    "Thought: t\nAction: ": "followed by no action",
    "Thought: t\nAction: click(start_box='=')": "start_box must be a point '(x,y)'",
    "Thought: t\nAction: click(start_box='<|box_start|>(x1,y1)<|box_end|>')": "start_box must be a point",
    "Thought: t\nAction: click()": "click requires start_box='(x,y)'",
    "Thought: t\nAction: click(start_box='(2000,50)')": "outside the screenshot; x must be within 0..1932",
    "Thought: t\nAction: click(start_box='(-5,50)')": "outside the screenshot",
    "Thought: t\nAction: drag(start_box='(10,20)')": "drag requires end_box",
    "Thought: t\nAction: scroll(direction='sideways')": "scroll requires direction='up', 'down', 'left' or 'right'",
    "Thought: t\nAction: scroll(start_box='(5,5)')": "scroll requires direction",
    "Thought: t\nAction: type(content='')": "type requires content='...'",
    "Thought: t\nAction: hotkey(key='')": "hotkey requires key='...'",
    "Thought: t\nAction: press_home()": "Unknown action 'press_home' on this desktop; use one of: click",
    "Thought: t\nAction: click(start_box='(1,2)') I will click it": "Expected an action like click",
    "Thought: t\nAction: type(content='never closed)": "A quoted argument is never closed",
    "Thought: t\nAction: I click the button": "Expected an action like click",
}


@pytest.mark.parametrize("text", list(BAD))
def test_unusable_answers_say_what_to_write(desktop, text):
    dialect, space = desktop
    with pytest.raises(ModelOutputError) as info:
        dialect.parse(text, space)
    assert BAD[text] in str(info.value)
    assert "\n" not in str(info.value) or "Action: click(start_box='(x,y)')" in str(info.value)


def test_mobile_refuses_desktop_actions():
    dialect = UITars15Dialect("mobile")
    space = dialect.coordinate_space(Size(1080, 2400))
    with pytest.raises(
        ModelOutputError, match="Unknown action 'left_double' on this phone; use one of: click"
    ):
        dialect.parse("Action: left_double(start_box='(1,2)')", space)


def test_limits(desktop):
    dialect, space = desktop
    with pytest.raises(ModelOutputError, match="characters are read"):
        dialect.parse("Action: wait()" + " " * MAX_OUTPUT_CHARS, space)
    many = "\n\n".join(["wait()"] * (MAX_CALLS + 1))
    with pytest.raises(ModelOutputError, match=f"send at most {MAX_CALLS}"):
        dialect.parse(f"Action: {many}", space)
    with pytest.raises(ModelOutputError, match="characters long"):
        dialect.parse(f"Action: type(content='{'a' * (MAX_TEXT_CHARS + 1)}')", space)


def test_reference_worked_examples_on_other_screens():
    desktop = UITars15Dialect("desktop")
    space = desktop.coordinate_space(Size(2560, 1440))
    assert space.model == (2548, 1428)
    (parsed,) = desktop.parse("Action: click(start_box='(1274,714)')", space)
    assert parsed.device == Click(x=1280, y=720)
