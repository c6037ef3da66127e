"""Success checks: read the real state of the environment after an episode, never the agent's claim.

A check that cannot be carried out (the environment has no shell, the command timed out, a Python check
raised) raises :class:`CheckError`: it is an infrastructure failure, recorded as the episode's error, not a
"no". That keeps ``not`` honest: a broken inner check never turns into a pass.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, assert_never

from screenpilot.agent.loop import EpisodeResult
from screenpilot.envs.base import (
    Environment,
    ShellResult,
    SupportsFiles,
    SupportsScreenText,
    SupportsShell,
)
from screenpilot.errors import ScreenpilotError
from screenpilot.tasks.suite import (
    AllCheck,
    AnswerCheck,
    AnyCheck,
    Check,
    FileCheck,
    NotCheck,
    PythonCheck,
    ScreenTextCheck,
    ShellCheck,
    Task,
    resolve_function,
)


class CheckError(ScreenpilotError):
    """A check could not be carried out (not: the check failed)."""


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at. Python checks receive this object."""

    task: Task
    env: Environment
    result: EpisodeResult | None
    run_dir: Path
    suite_dir: Path

    @property
    def answer(self) -> str | None:
        """The agent's answer (``answer`` action), if it gave one."""
        return self.result.answer if self.result is not None else None

    @property
    def agent_status(self) -> str | None:
        """What the agent reported; recorded beside the verdict, never the verdict itself."""
        return self.result.status if self.result is not None else None

    def shell(self, command: str, *, timeout: float = 30.0) -> ShellResult:
        if not isinstance(self.env, SupportsShell):
            raise CheckError(f"the {self.env.name} environment cannot run shell commands")
        try:
            return self.env.shell(command, timeout=timeout)
        except ScreenpilotError as exc:
            raise CheckError(f"shell command {command!r} failed: {exc}") from exc

    def read_file(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist: the environment raised FileNotFoundError (its
        declared "missing"); any other failure to read is an error, whatever its message says."""
        if isinstance(self.env, SupportsFiles):
            try:
                return self.env.read_file(path)
            except FileNotFoundError:
                return None
            except (ScreenpilotError, OSError) as exc:
                raise CheckError(f"cannot read {path}: {exc}") from exc
        if isinstance(self.env, SupportsShell):
            return self._read_file_by_shell(path)
        raise CheckError(f"the {self.env.name} environment cannot read files")

    def _read_file_by_shell(self, path: str) -> bytes | None:
        """``cat`` through the shell; a marker after the output tells a missing file from one that is there
        but cannot be read (not a regular file, or ``cat`` failed), which is an error, never "missing"."""
        quoted = shlex.quote(path)
        result = self.shell(
            f"if [ -f {quoted} ]; then cat -- {quoted} 2>&1 || echo {_UNREADABLE}; "
            f"elif [ -e {quoted} ]; then echo {_NOT_A_FILE}; else echo {_MISSING}; fi"
        )
        output = result.output.rstrip("\n")
        if output.endswith(_MISSING):
            return None
        if output.endswith(_NOT_A_FILE):
            raise CheckError(f"cannot read {path}: it is not a regular file")
        if output.endswith(_UNREADABLE):
            said = " ".join(output[: -len(_UNREADABLE)].split()[-20:])
            raise CheckError(f"cannot read {path}: {said or 'cat failed'}")
        return result.output.encode("utf-8")

    def screen_text(self) -> str:
        if not isinstance(self.env, SupportsScreenText):
            raise CheckError(f"the {self.env.name} environment cannot read the text on its screen")
        try:
            return self.env.screen_text()
        except ScreenpilotError as exc:
            raise CheckError(f"cannot read the screen text: {exc}") from exc


_MISSING = "__screenpilot_missing__"
_NOT_A_FILE = "__screenpilot_not_a_file__"
_UNREADABLE = "__screenpilot_unreadable__"


@dataclass(frozen=True)
class CheckOutcome:
    """A verdict with the evidence behind it, as a tree for composed checks."""

    passed: bool
    kind: str
    detail: str
    children: tuple[CheckOutcome, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed, "kind": self.kind, "detail": self.detail}
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


def normalize_text(text: str) -> str:
    """Case, width, surrounding quotes/punctuation and runs of whitespace do not matter."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    return text.strip(" \"'`.,;:!?")


def _short(text: str, limit: int = 120) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def match_text(
    text: str, *, equals: str | None, contains: str | None, regex: str | None, ignore_case: bool
) -> tuple[bool, str]:
    """Whether ``text`` matches the one matcher given, and a description of the comparison."""
    subject = text.strip()
    if equals is not None:
        a, b = (subject.casefold(), equals.strip().casefold()) if ignore_case else (subject, equals.strip())
        return a == b, f"{_short(subject)} {'==' if a == b else '!='} {equals.strip()!r}"
    if contains is not None:
        a, b = (subject.casefold(), contains.casefold()) if ignore_case else (subject, contains)
        ok = b in a
        return ok, f"{'found' if ok else 'no'} {contains!r} in {_short(subject)}"
    if regex is not None:
        found = re.search(regex, subject, re.IGNORECASE if ignore_case else 0)
        return found is not None, f"/{regex}/ {'matches' if found else 'does not match'} {_short(subject)}"
    return True, "no matcher"


def evaluate(check: Check, ctx: CheckContext) -> CheckOutcome:
    """Run ``check`` against the environment now. Raises :class:`CheckError` if it cannot be carried out."""
    match check:
        case ShellCheck():
            return _shell(check, ctx)
        case FileCheck():
            return _file(check, ctx)
        case ScreenTextCheck():
            m = check.screen_text
            ok, detail = match_text(
                ctx.screen_text(),
                equals=m.equals,
                contains=m.contains,
                regex=m.regex,
                ignore_case=m.ignore_case,
            )
            return CheckOutcome(ok, "screen_text", f"screen: {detail}")
        case AnswerCheck():
            return _answer(check, ctx.answer)
        case PythonCheck():
            return _python(check, ctx)
        case AllCheck():
            return _tally("all", all, tuple(evaluate(c, ctx) for c in check.all))
        case AnyCheck():
            return _tally("any", any, tuple(evaluate(c, ctx) for c in check.any))
        case NotCheck():
            inner = evaluate(check.not_, ctx)
            return CheckOutcome(
                not inner.passed, "not", f"inner check {'passed' if inner.passed else 'failed'}", (inner,)
            )
        case _:
            assert_never(check)


def _shell(check: ShellCheck, ctx: CheckContext) -> CheckOutcome:
    """The command's output against the matcher, and its exit code against the one wanted (0 when the check
    names neither a matcher nor a code)."""
    result = ctx.shell(check.shell, timeout=check.timeout)
    has_matcher = any(v is not None for v in (check.equals, check.contains, check.regex))
    want_code = check.exit_code if check.exit_code is not None else (None if has_matcher else 0)
    ok, detail = match_text(
        result.output,
        equals=check.equals,
        contains=check.contains,
        regex=check.regex,
        ignore_case=check.ignore_case,
    )
    if want_code is not None:
        if result.exit_code is None:
            raise CheckError(f"the environment cannot report the exit code of {check.shell!r}")
        code_ok = result.exit_code == want_code
        detail = f"exit {result.exit_code} (want {want_code})" + ("" if not has_matcher else f"; {detail}")
        ok = ok and code_ok
    return CheckOutcome(ok, "shell", f"$ {check.shell}: {detail}")


def _file(check: FileCheck, ctx: CheckContext) -> CheckOutcome:
    content = ctx.read_file(check.file)
    if content is None:
        return CheckOutcome(check.exists is False, "file", f"{check.file} does not exist")
    if check.exists is False:
        return CheckOutcome(False, "file", f"{check.file} exists")
    if all(v is None for v in (check.equals, check.contains, check.regex)):
        return CheckOutcome(True, "file", f"{check.file} exists")
    text = content.decode("utf-8", errors="replace")
    ok, detail = match_text(
        text,
        equals=check.equals,
        contains=check.contains,
        regex=check.regex,
        ignore_case=check.ignore_case,
    )
    return CheckOutcome(ok, "file", f"{check.file}: {detail}")


def _tally(
    kind: str, combine: Callable[[Iterable[bool]], bool], children: tuple[CheckOutcome, ...]
) -> CheckOutcome:
    """An ``all`` or ``any`` verdict over checks that were all carried out."""
    ok = combine(c.passed for c in children)
    return CheckOutcome(ok, kind, f"{sum(c.passed for c in children)}/{len(children)} passed", children)


def _answer(check: AnswerCheck, answer: str | None) -> CheckOutcome:
    m = check.answer
    if answer is None:
        return CheckOutcome(False, "answer", "the agent gave no answer")
    flags = re.IGNORECASE if m.ignore_case else 0
    if m.exact is not None:
        a, b = answer.strip(), m.exact.strip()
        ok = a.casefold() == b.casefold() if m.ignore_case else a == b
        return CheckOutcome(ok, "answer", f"{_short(answer)} {'==' if ok else '!='} {m.exact!r}")
    if m.normalized is not None:
        ok = normalize_text(answer) == normalize_text(m.normalized)
        return CheckOutcome(
            ok, "answer", f"normalised {_short(answer)} {'==' if ok else '!='} {m.normalized!r}"
        )
    assert m.regex is not None
    ok = re.search(m.regex, answer.strip(), flags) is not None
    return CheckOutcome(ok, "answer", f"/{m.regex}/ {'matches' if ok else 'does not match'} {_short(answer)}")


def _python(check: PythonCheck, ctx: CheckContext) -> CheckOutcome:
    try:
        func = resolve_function(check.python, ctx.suite_dir)
    except ScreenpilotError as exc:
        raise CheckError(str(exc)) from exc
    try:
        value = func(ctx, **check.args)
    except CheckError:
        raise
    except Exception as exc:
        raise CheckError(f"check {check.python} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(value, CheckOutcome):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        return CheckOutcome(value[0], "python", f"{check.python}: {value[1]}")
    if isinstance(value, bool):
        return CheckOutcome(value, "python", f"{check.python} returned {value}")
    raise CheckError(f"check {check.python} must return a bool or (bool, str), got {type(value).__name__}")
