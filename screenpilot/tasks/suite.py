"""Task suites: YAML files of tasks, validated completely before anything runs.

A suite is parsed with :func:`yaml.compose` so every value keeps the line it came from; pydantic then
validates the plain data, and each error is reported as ``file:line: where: what``. Nothing half-valid
reaches a device.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from screenpilot.errors import MissingExtraError, SetupError

EnvName = Literal["android", "desktop", "sandbox"]
ENV_KINDS: tuple[str, ...] = ("android", "desktop", "sandbox")


class SuiteError(SetupError):
    """The suite file is invalid. ``problems`` holds one ``file:line: message`` string per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems in the suite:"
        body = "" if len(problems) == 1 else "\n  " + "\n  ".join(problems)
        super().__init__(head + body)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _compile(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad regex {pattern!r}: {exc}") from None
    return pattern


# -- setup and teardown steps ---------------------------------------------------------------------------------


class ShellStep(_Strict):
    """Run a command where the environment lives; a non-zero exit fails the step unless ``check: false``."""

    shell: str = Field(min_length=1)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    check: bool = True


class LaunchStep(_Strict):
    """Start an app: an Android package (or ``package/activity``), or a desktop command run in the background."""

    launch: str = Field(min_length=1)


class PushSpec(_Strict):
    local: str = Field(min_length=1, description="Path on this machine, relative to the suite file")
    remote: str = Field(min_length=1, description="Path in the environment")


class PushStep(_Strict):
    push: PushSpec


class SleepStep(_Strict):
    sleep: float = Field(ge=0, le=600)


SetupStep: TypeAlias = Annotated[
    Annotated[ShellStep, Tag("shell")]
    | Annotated[LaunchStep, Tag("launch")]
    | Annotated[PushStep, Tag("push")]
    | Annotated[SleepStep, Tag("sleep")],
    Discriminator(lambda v: _kind_of(v, STEP_KINDS)),
]
STEP_KINDS: tuple[str, ...] = ("shell", "launch", "push", "sleep")


# -- success checks -------------------------------------------------------------------------------------------


class _TextMatch(_Strict):
    """Exactly one of equals / contains / regex (``re.search``); whitespace around the text is ignored."""

    equals: str | None = None
    contains: str | None = None
    regex: str | None = None
    ignore_case: bool = False

    _optional_match: ClassVar[bool] = False

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _compile(value)

    @model_validator(mode="after")
    def _one_matcher(self) -> _TextMatch:
        given = [name for name in ("equals", "contains", "regex") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of equals / contains / regex, not {' and '.join(given)}")
        if not given and not self._optional_match:
            raise ValueError("give one of equals / contains / regex")
        return self


class ShellCheck(_TextMatch):
    """Passes when the command's output matches (and its exit code, when ``exit_code`` is given, or when no
    matcher is given: then exit code 0 is the whole check)."""

    shell: str = Field(min_length=1)
    exit_code: int | None = None
    timeout: float = Field(default=30.0, gt=0, le=3600)

    _optional_match: ClassVar[bool] = True


class FileCheck(_TextMatch):
    """Reads a file in the environment; ``exists: false`` passes when it is absent."""

    file: str = Field(min_length=1)
    exists: bool | None = None

    _optional_match: ClassVar[bool] = True

    @model_validator(mode="after")
    def _something_to_check(self) -> FileCheck:
        has_match = any(getattr(self, n) is not None for n in ("equals", "contains", "regex"))
        if self.exists is False and has_match:
            raise ValueError("exists: false cannot be combined with a content matcher")
        if self.exists is None and not has_match:
            raise ValueError("give one of equals / contains / regex, or exists: true/false")
        return self


class ScreenMatch(_TextMatch):
    pass


class ScreenTextCheck(_Strict):
    """Text visible on screen, read from the real UI (Android: the UI hierarchy dump)."""

    screen_text: ScreenMatch


class AnswerMatch(_Strict):
    """Exactly one of exact / normalized / regex, compared with the agent's ``answer``."""

    exact: str | None = None
    normalized: str | None = None
    regex: str | None = None
    ignore_case: bool = False

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _compile(value)

    @model_validator(mode="after")
    def _one_matcher(self) -> AnswerMatch:
        given = [n for n in ("exact", "normalized", "regex") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact / normalized / regex")
        return self


class AnswerCheck(_Strict):
    answer: AnswerMatch


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class PythonCheck(_Strict):
    """``module:function``, called with a :class:`~screenpilot.tasks.checks.CheckContext` and ``args``."""

    python: str
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("python")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if not _IMPORT_PATH.match(value):
            raise ValueError(f"expected module:function, got {value!r}")
        return value


class AllCheck(_Strict):
    all: tuple[Check, ...] = Field(min_length=1)


class AnyCheck(_Strict):
    any: tuple[Check, ...] = Field(min_length=1)


class NotCheck(_Strict):
    not_: Check = Field(alias="not")


CHECK_KINDS: tuple[str, ...] = ("shell", "file", "screen_text", "answer", "python", "all", "any", "not")

Check: TypeAlias = Annotated[
    Annotated[ShellCheck, Tag("shell")]
    | Annotated[FileCheck, Tag("file")]
    | Annotated[ScreenTextCheck, Tag("screen_text")]
    | Annotated[AnswerCheck, Tag("answer")]
    | Annotated[PythonCheck, Tag("python")]
    | Annotated[AllCheck, Tag("all")]
    | Annotated[AnyCheck, Tag("any")]
    | Annotated[NotCheck, Tag("not")],
    Discriminator(lambda v: _kind_of(v, CHECK_KINDS)),
]


def _kind_of(value: Any, kinds: tuple[str, ...]) -> str | None:
    """The tag of a step or check: the first known kind key it has."""
    if isinstance(value, dict):
        keys = [k for k in kinds if k in value]
    elif isinstance(value, BaseModel):  # an already-built model
        fields = type(value).model_fields
        keys = [k for k in kinds if k in fields or f"{k}_" in fields]
    else:
        return None
    return keys[0] if keys else None


for _model in (AllCheck, AnyCheck, NotCheck):
    _model.model_rebuild()


# -- tasks and suites -----------------------------------------------------------------------------------------

_TASK_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Task(_Strict):
    id: str = Field(pattern=_TASK_ID, max_length=100, description="Unique in the suite; names the run folder")
    goal: str = Field(min_length=1, description="What the agent is told to do")
    env: EnvName
    app: str | None = Field(
        default=None, description="Android package or desktop command launched after setup; the sandbox's app"
    )
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    max_seconds: float | None = Field(default=None, gt=0)
    setup: tuple[SetupStep, ...] = ()
    success: Check
    teardown: tuple[SetupStep, ...] = ()
    tags: tuple[str, ...] = ()


class Defaults(_Strict):
    """Values every task gets unless it sets its own."""

    env: EnvName | None = None
    app: str | None = None
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    max_seconds: float | None = Field(default=None, gt=0)


class SuiteSpec(_Strict):
    name: str | None = None
    description: str | None = None
    defaults: Defaults | None = None
    tasks: tuple[Task, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Suite:
    """A validated suite and where it came from."""

    path: Path
    sha256: str
    name: str
    description: str | None
    tasks: tuple[Task, ...]

    @property
    def base_dir(self) -> Path:
        """Relative paths in the suite (files to push, Python check modules) are relative to this folder."""
        return self.path.parent

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    def select(self, ids: list[str] | None) -> Suite:
        """The suite limited to ``ids`` (in suite order); unknown ids are an error."""
        if not ids:
            return self
        known = {t.id for t in self.tasks}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SetupError(f"no task {', '.join(map(repr, unknown))} in {self.path}")
        wanted = set(ids)
        return Suite(
            self.path,
            self.sha256,
            self.name,
            self.description,
            tuple(t for t in self.tasks if t.id in wanted),
        )


# -- loading with line numbers --------------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass
class _Doc:
    """Plain data from YAML plus the line (1-based) of every mapping key and value."""

    data: Any
    key_lines: dict[Loc, int]
    value_lines: dict[Loc, int]


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise MissingExtraError("bench", "pyyaml", "reading task suites") from exc
    return yaml


def _compose(text: str, path: Path) -> _Doc:
    yaml = _yaml()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError([f"{path}{line}: not valid YAML: {problem}"]) from None
    if root is None:
        raise SuiteError([f"{path}:1: the file is empty"])
    constructor = yaml.constructor.SafeConstructor()
    key_lines: dict[Loc, int] = {}
    value_lines: dict[Loc, int] = {}
    problems: list[str] = []

    def convert(node: Any, loc: Loc) -> Any:
        value_lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    problems.append(
                        f"{path}:{key_node.start_mark.line + 1}: merge keys (<<) are not supported"
                    )
                    continue
                key = convert(key_node, (*loc, "<key>"))
                if not isinstance(key, (str, int)):
                    problems.append(f"{path}:{key_node.start_mark.line + 1}: keys must be plain words")
                    continue
                if key in out:
                    problems.append(f"{path}:{key_node.start_mark.line + 1}: duplicate key {key!r}")
                    continue
                key_lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    data = convert(root, ())
    if problems:
        raise SuiteError(problems)
    return _Doc(data, key_lines, value_lines)


def _line_of(doc: _Doc, loc: Loc) -> tuple[int, str]:
    """Line and readable location of a pydantic error location (union tags skipped)."""
    node = doc.data
    path: list[str | int] = []
    union_slot = False  # the node sits where a step or check is expected: pydantic adds its tag to the loc
    for part in loc:
        if union_slot and isinstance(node, dict) and part == _kind_of(node, CHECK_KINDS + STEP_KINDS):
            union_slot = False
            continue
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
            union_slot = part in ("success", "not")
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            union_slot = bool(path) and path[-1] in ("all", "any", "setup", "teardown")
            path.append(part)
        else:
            # A missing or unknown key: point at the mapping that should hold it.
            path.append(part)
            break
    located = tuple(path)
    line = doc.key_lines.get(located) or doc.value_lines.get(located)
    probe = located
    while line is None and probe:
        probe = probe[:-1]
        line = doc.key_lines.get(probe) or doc.value_lines.get(probe)
    return line or 1, _describe_loc(doc.data, located)


def _describe_loc(data: Any, loc: Loc) -> str:
    """``tasks[2] (id 'wifi').success.shell`` style location for messages."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("id"), str) and out.startswith("tasks["):
                    out += f" (id {node['id']!r})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "top level"


def _message(error: Any) -> str:
    kind = error["type"]
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        kinds = STEP_KINDS if _is_step_loc(error["loc"]) else CHECK_KINDS
        return f"unknown kind; expected a mapping with one of: {', '.join(kinds)}"
    last = error["loc"][-1] if error["loc"] else None
    if kind == "extra_forbidden":
        kinds = STEP_KINDS if _is_step_loc(error["loc"]) else CHECK_KINDS
        if last in kinds:
            return (
                f"{last!r} is a second kind in one mapping: give one kind each (combine checks with all/any)"
            )
        return f"unknown key {last!r}"
    if kind == "missing":
        return f"missing required field {last!r}"
    if kind in ("tuple_type", "list_type"):
        return "expected a list"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a mapping"
    if kind == "too_short" and error.get("ctx", {}).get("actual_length") == 0:
        return "must not be empty"
    if kind == "string_pattern_mismatch" and last == "id":
        return "task ids are letters, digits, '.', '_' and '-', starting with a letter or digit"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def _is_step_loc(loc: Loc) -> bool:
    return any(part in ("setup", "teardown") for part in loc)


def load_suite(path: str | Path, *, resolve_python: bool = True) -> Suite:
    """Read and validate a suite file. Raises :class:`SuiteError` listing every problem with its line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read suite {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SuiteError([f"{path}:1: not UTF-8 text"]) from None
    doc = _compose(text, path)
    if not isinstance(doc.data, dict):
        raise SuiteError([f"{path}:1: expected a mapping with a 'tasks' list"])
    data = _apply_defaults(doc.data)
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for error in errors:
            if error["type"] == "too_short" and any(
                e is not error and tuple(e["loc"][: len(error["loc"])]) == tuple(error["loc"]) for e in errors
            ):
                continue  # "at least 1 item after validation": a consequence of the item errors listed
            line, where = _line_of(doc, error["loc"])
            problems.append((line, f"{path}:{line}: {where}: {_message(error)}"))
        raise SuiteError([p for _, p in sorted(problems, key=lambda item: item[0])]) from None

    problems_extra: list[str] = []
    seen: dict[str, int] = {}
    for i, task in enumerate(spec.tasks):
        line = doc.value_lines.get(("tasks", i, "id"), 1)
        if task.id in seen:
            problems_extra.append(
                f"{path}:{line}: duplicate task id {task.id!r} (first at line {seen[task.id]})"
            )
        else:
            seen[task.id] = line
        for loc, check in _python_checks(task.success, ("tasks", i, "success")):
            if resolve_python:
                try:
                    resolve_function(check.python, path.parent)
                except SetupError as exc:
                    problems_extra.append(f"{path}:{doc.value_lines.get(loc, 1)}: {exc}")
        for phase in ("setup", "teardown"):
            for j, step in enumerate(getattr(task, phase)):
                if isinstance(step, PushStep) and not (path.parent / step.push.local).is_file():
                    line = doc.value_lines.get(("tasks", i, phase, j, "push", "local"), 1)
                    problems_extra.append(f"{path}:{line}: file to push {step.push.local!r} does not exist")
    if problems_extra:
        raise SuiteError(problems_extra)
    name = spec.name or path.stem
    return Suite(path, hashlib.sha256(raw).hexdigest(), name, spec.description, spec.tasks)


def _apply_defaults(data: dict[str, Any]) -> dict[str, Any]:
    defaults = data.get("defaults")
    tasks = data.get("tasks")
    if not isinstance(defaults, dict) or not isinstance(tasks, list):
        return data
    allowed = set(Defaults.model_fields)
    merged = []
    for task in tasks:
        if isinstance(task, dict):
            task = {**{k: v for k, v in defaults.items() if k in allowed and v is not None}, **task}
        merged.append(task)
    return {**data, "tasks": merged}


def _python_checks(check: Any, loc: Loc) -> Iterator[tuple[Loc, PythonCheck]]:
    if isinstance(check, PythonCheck):
        yield (*loc, "python"), check
    elif isinstance(check, AllCheck):
        for i, child in enumerate(check.all):
            yield from _python_checks(child, (*loc, "all", i))
    elif isinstance(check, AnyCheck):
        for i, child in enumerate(check.any):
            yield from _python_checks(child, (*loc, "any", i))
    elif isinstance(check, NotCheck):
        yield from _python_checks(check.not_, (*loc, "not"))


def walk_checks(check: Any) -> Iterator[Any]:
    """Every check in a (composed) check, the composites included, depth first."""
    yield check
    if isinstance(check, AllCheck):
        for child in check.all:
            yield from walk_checks(child)
    elif isinstance(check, AnyCheck):
        for child in check.any:
            yield from walk_checks(child)
    elif isinstance(check, NotCheck):
        yield from walk_checks(check.not_)


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def resolve_function(spec: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function``; modules next to the suite file are found too."""
    module_name, _, func_name = spec.partition(":")
    with _on_path(base_dir):
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise SetupError(f"cannot import {module_name!r} for check {spec!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SetupError(f"{module_name!r} has no function {func_name!r} (check {spec!r})")
    return func  # type: ignore[no-any-return]
