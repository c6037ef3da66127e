"""The verbs of a :class:`~screenpilot.session.session.Session` as MCP tools, served over stdio.

Other agents drive a phone or a sandbox desktop through screenpilot with these tools: ``screenshot`` (an
MCP image, PNG), ``locate``, ``click``, ``type_text``, ``key``, ``swipe``, ``scroll``, ``back``, ``home``,
``open_app``, ``ask`` and ``run``. Tools answer with text: a point as JSON (``{"x": 540, "y": 1200}``), the
model's answer for ``ask``, a one-line summary for ``run``. A verb that fails (a target the model cannot find,
a bad argument, an action the policy refused, a device error) is an MCP tool error with one line; the server
carries on.

The session is used only from the thread that calls :func:`serve` (the main thread, where signals arrive and
where the session was opened), one call at a time; the MCP protocol runs on its own thread. Every call is
recorded in the session's run folder like any other session call. Needs the ``mcp`` extra
(``pip install 'screenpilot[mcp]'``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, ValidationError

from screenpilot import __version__
from screenpilot.actions.coords import Point
from screenpilot.agent.loop import EpisodeResult
from screenpilot.errors import ScreenpilotError
from screenpilot.session.session import Session, Target

T = TypeVar("T")

#: What the server tells a client about itself when it connects.
INSTRUCTIONS = (
    "screenpilot drives one screen (a phone or a desktop) with a vision-language model. Points are device "
    "pixels. Name targets in words ('the Send button') to have them found on the screen, or give a point "
    "{x, y}. Take a screenshot to see the screen."
)


class XY(BaseModel):
    """A point on the screen in device pixels."""

    x: int = Field(ge=0, description="pixels from the left edge")
    y: int = Field(ge=0, description="pixels from the top edge")


TargetArg = Annotated[
    str | XY,
    Field(
        description="words naming what is on the screen ('the Send button'), or a point {x, y} in device pixels"
    ),
]
Direction = Literal["up", "down", "left", "right"]


class McpServerError(ScreenpilotError):
    """The MCP server stopped on its own (not because the client disconnected)."""


# -- running session calls on the main thread ------------------------------------------------------------------
@dataclass
class _Done:
    error: BaseException | None = None


class MainThreadCalls:
    """Hands calls from the protocol's thread to the thread running :meth:`work`, one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]] | _Done] = (
            queue.SimpleQueue()
        )

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the working thread and return what it returns (or raise what it raises)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((fn, future))
        return await asyncio.wrap_future(future)

    def finish(self, error: BaseException | None = None) -> None:
        """Make :meth:`work` return (or raise :class:`McpServerError` when ``error`` stopped the server)."""
        self._jobs.put(_Done(error))

    def work(self) -> None:
        """Run calls as they come until :meth:`finish`. A ``KeyboardInterrupt`` (Ctrl-C, or a signal the
        caller turned into one) leaves at once, failing the call under way."""
        while True:
            job = self._jobs.get()
            if isinstance(job, _Done):
                if job.error is not None:
                    error = job.error
                    raise McpServerError(
                        f"the MCP server stopped: {type(error).__name__}: {error}"
                    ) from error
                return
            fn, future = job
            if future.set_running_or_notify_cancel():
                _run_into(fn, future)


def _run_into(fn: Callable[[], Any], future: concurrent.futures.Future[Any]) -> None:
    try:
        result = fn()
    except Exception as exc:
        future.set_exception(exc)
    except BaseException:
        future.set_exception(ToolError("the screenpilot server is stopping"))
        raise
    else:
        future.set_result(result)


# -- the tools ---------------------------------------------------------------------------------------------------
class SessionServer(MCPServer[Any]):
    """An :class:`~mcp.server.mcpserver.MCPServer` whose tool errors are always one line."""

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """Call a tool; a bad argument or a failure is a :class:`ToolError` with a one-line message. An
        argument the tool does not take is refused too (a misspelt ``buton`` would otherwise be dropped and the
        verb done with its default)."""
        await self._refuse_unknown_arguments(name, arguments)
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(f"{name}: {_bad_arguments(cause)}") from cause
            text = _one_line(str(exc)).removeprefix(f"Error executing tool {name}: ")
            raise ToolError(text if text.startswith("Unknown tool") else f"{name}: {text}") from cause

    async def _refuse_unknown_arguments(self, name: str, arguments: dict[str, Any]) -> None:
        tool = next((t for t in await self.list_tools() if t.name == name), None)
        if tool is None:
            return  # the SDK says "Unknown tool"
        takes = list(tool.input_schema.get("properties", {}))
        unknown = sorted(set(arguments) - set(takes))
        if unknown:
            takes_text = ", ".join(takes) if takes else "none"
            raise ToolError(
                f"{name}: bad arguments: {', '.join(unknown)}: not an argument (it takes: {takes_text})"
            )


def build_server(session: Session, calls: MainThreadCalls) -> SessionServer:
    """An MCP server whose tools call ``session`` through ``calls``."""
    server = SessionServer("screenpilot", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    tools = _Tools(session, calls)
    server.add_tool(tools.screenshot, name="screenshot", description=_doc(tools.screenshot))
    for fn in tools.text_tools():
        server.add_tool(fn, name=fn.__name__, description=_doc(fn), structured_output=False)
    return server


class _Tools:
    """The tool functions: each runs one session verb on the session's thread."""

    def __init__(self, session: Session, calls: MainThreadCalls) -> None:
        self.session = session
        self.calls = calls

    def text_tools(self) -> list[Callable[..., Any]]:
        """The tools that answer with text, in the order clients list them."""
        return [
            self.locate, self.click, self.type_text, self.key, self.swipe, self.scroll,
            self.back, self.home, self.open_app, self.ask, self.run,
        ]  # fmt: skip

    async def _call(self, fn: Callable[[], T]) -> T:
        try:
            return await self.calls.call(fn)
        except ToolError:
            raise
        except ScreenpilotError as exc:
            raise ToolError(_one_line(str(exc))) from None
        except Exception as exc:
            raise ToolError(_one_line(f"{type(exc).__name__}: {exc}")) from None

    async def screenshot(self) -> Image:
        """The screen now, as a PNG image in device pixels."""
        image = await self._call(self.session.screenshot)
        return Image(data=_png(image), format="png")

    async def locate(self, target: Annotated[str, Field(description="words naming it")]) -> str:
        """Where something is on the screen now, as JSON {"x": …, "y": …} in device pixels."""
        return _point(await self._call(lambda: self.session.locate(target)))

    async def click(self, target: TargetArg, button: Literal["left", "right", "middle"] = "left") -> str:
        """Click (or touch) a target; answers the point clicked as JSON {"x": …, "y": …}."""
        where = _target(target)
        return _point(await self._call(lambda: self.session.click(where, button=button)))

    async def type_text(
        self,
        text: str,
        into: Annotated[TargetArg | None, Field(description="click this field first")] = None,
    ) -> str:
        """Type text, into the focused field or, with `into`, into the field named (clicked first)."""
        field = None if into is None else _target(into)
        await self._call(lambda: self.session.type_text(text, into=field))
        return f"typed {len(text)} characters" + ("" if into is None else f" into {_shown(into)}")

    async def key(
        self,
        keys: Annotated[
            str | list[str],
            Field(
                description="e.g. 'ctrl+s', 'Return', 'volume_up', or a list pressed together: ['ctrl', 's']"
            ),
        ],
    ) -> str:
        """Press a key or keys together."""
        names = [keys] if isinstance(keys, str) else keys
        if not names or not all(name.strip() for name in names):
            raise ToolError("give key names, like 'ctrl+s' or 'Return'")
        await self._call(lambda: self.session.key(*names))
        return f"pressed {'+'.join(names)}"

    async def swipe(
        self,
        direction: Annotated[
            Direction | None, Field(description="a third of the screen through its middle")
        ] = None,
        start: TargetArg | None = None,
        end: TargetArg | None = None,
        seconds: Annotated[float, Field(gt=0, le=10)] = 0.3,
    ) -> str:
        """Swipe a finger: in a direction, or from `start` to `end` (both given, no direction)."""
        if direction is not None and start is None and end is None:
            await self._call(lambda: self.session.swipe(direction, seconds=seconds))
            return f"swiped {direction}"
        if direction is not None or start is None or end is None:
            raise ToolError("give a direction, or both start and end")
        a, b = _target(start), _target(end)
        await self._call(lambda: self.session.swipe(a, b, seconds=seconds))
        return f"swiped from {_shown(start)} to {_shown(end)}"

    async def scroll(self, direction: Direction = "down", at: TargetArg | None = None) -> str:
        """Scroll to reveal what is in `direction`: the wheel on a desktop, a swipe on a phone."""
        where = None if at is None else _target(at)
        await self._call(lambda: self.session.scroll(direction, at=where))
        return f"scrolled {direction}"

    async def back(self) -> str:
        """Press the phone's Back button."""
        await self._call(self.session.back)
        return "pressed back"

    async def home(self) -> str:
        """Press the phone's Home button."""
        await self._call(self.session.home)
        return "pressed home"

    async def open_app(self, name: str) -> str:
        """Open an app by its name (a phone)."""
        await self._call(lambda: self.session.open_app(name))
        return f"opened {name}"

    async def ask(self, question: str) -> str:
        """Ask the model a question about the screen now; answers its answer."""
        return await self._call(lambda: self.session.ask(question))

    async def run(
        self,
        goal: Annotated[str, Field(description="what to do, in plain words")],
        max_steps: Annotated[int | None, Field(ge=1, description="step budget")] = None,
    ) -> str:
        """Let the agent do a whole task from the screen as it is; answers how it ended."""
        return summary(await self._call(lambda: self.session.run(goal, max_steps=max_steps)))


# -- serving -----------------------------------------------------------------------------------------------------
def serve(session: Session) -> None:
    """Serve ``session``'s verbs over stdio until the client disconnects (stdin closes). Session calls run on
    the calling thread; the protocol on a daemon thread. Raises :class:`McpServerError` if the protocol
    stops for another reason, and lets ``KeyboardInterrupt`` through. Does not close the session."""
    calls = MainThreadCalls()
    server = build_server(session, calls)

    def protocol() -> None:
        try:
            anyio.run(server.run_stdio_async)
        except BaseException as exc:
            calls.finish(exc)
        else:
            calls.finish()

    thread = threading.Thread(target=protocol, name="screenpilot-mcp", daemon=True)
    thread.start()
    calls.work()
    thread.join(timeout=1.0)


def summary(result: EpisodeResult) -> str:
    """One line saying how an agent episode ended."""
    line = f"{result.status}: {result.reason} after {result.steps} steps"
    if result.answer is not None:
        line += f"; answer: {result.answer}"
    if result.error:
        line += f" ({result.error})"
    return _one_line(line)


def _target(target: str | XY) -> Target:
    return target if isinstance(target, str) else Point(target.x, target.y)


def _shown(target: str | XY) -> str:
    return repr(target) if isinstance(target, str) else f"({target.x}, {target.y})"


def _point(point: Point) -> str:
    return json.dumps({"x": point.x, "y": point.y})


def _png(image: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _doc(fn: Callable[..., Any]) -> str:
    return " ".join((fn.__doc__ or "").split())


def _bad_arguments(error: ValidationError) -> str:
    """One line for pydantic's errors; a target that is neither words nor a point {x, y} is said so once."""
    parts: list[str] = []
    loose: set[str] = set()  # targets that matched neither member of the union
    deep: set[str] = set()  # targets given as a point with a bad coordinate
    for item in error.errors():
        loc = [str(p) for p in item["loc"]] or ["arguments"]
        if len(loc) > 1 and loc[1] in ("str", XY.__name__):
            if len(loc) == 2:
                loose.add(loc[0])
                continue
            deep.add(loc[0])
            loc = [loc[0], *loc[2:]]
        parts.append(f"{'.'.join(loc)}: {item['msg']}")
    parts += [f"{name}: give words or a point {{x, y}}" for name in sorted(loose - deep)]
    return "bad arguments: " + "; ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())
