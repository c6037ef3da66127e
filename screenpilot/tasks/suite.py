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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    """Run a command where the environment lives; a non-zero exit fails the step unless ``check: false``.

    For the sandbox and the desktop that is this machine, as the user running screenpilot: a suite is code."""

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
    #: What else the manifest records about where the tasks came from (a built-in suite's package, screen).
    info: Mapping[str, Any] = field(default_factory=dict)

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
            self.info,
        )


# -- loading with line numbers --------------------------------------------------------------------------------

Loc = tuple[str | int, ...]
#: A problem found in the suite: its line (for sorting) and the ``file:line: message`` text.
Problem = tuple[int, str]

#: Aliases (``*name``) may add at most this many values to the document; more is refused before expanding.
ALIAS_EXPANSION_LIMIT = 10_000
_CORE = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS = frozenset(_CORE + t for t in ("null", "bool", "int", "float", "str", "timestamp"))


@dataclass
class _Doc:
    """Plain data from YAML plus the line (1-based) of every mapping key and value, and what was wrong with the
    YAML's form (tags, duplicate or merge keys) while the data was still read."""

    data: Any
    key_lines: dict[Loc, int]
    value_lines: dict[Loc, int]
    problems: list[Problem] = field(default_factory=list)
    merged: set[Loc] = field(default_factory=set)  # mappings that had a ``<<`` key (skipped)
    unread: set[Loc] = field(default_factory=set)  # scalars kept as their text (refused tag, bad value)


def _yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise MissingExtraError("bench", "pyyaml", "reading task suites") from exc
    return yaml


def _compose_node_graph(text: str, yaml: Any) -> tuple[Any, list[tuple[str, int, Any]]]:
    """The composed root node, and each alias used: its anchor name, line and the node it stands for."""

    class Loader(yaml.SafeLoader):  # type: ignore[misc, name-defined]
        def compose_node(self, parent: Any, index: Any) -> Any:
            if not self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)
            event = self.peek_event()
            node = super().compose_node(parent, index)
            uses.append((event.anchor, event.start_mark.line + 1, node))
            return node

    uses: list[tuple[str, int, Any]] = []
    loader = Loader(text)
    try:
        return loader.get_single_node(), uses
    finally:
        loader.dispose()


class _AliasCycle(Exception):
    def __init__(self, node: Any) -> None:
        self.node = node


def _expanded_sizes(root: Any, yaml: Any) -> dict[int, int]:
    """Values under each node (by ``id``) with aliases written out; raises :class:`_AliasCycle`."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _AliasCycle(node)
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[key] = 1 + sum(size(child) for child in children)
        active.discard(key)
        return sizes[key]

    size(root)
    return sizes


def _check_aliases(root: Any, uses: list[tuple[str, int, Any]], path: Path, yaml: Any) -> None:
    """Refuse aliases that refer to themselves or blow the document up (a few hundred bytes of nested aliases
    expand to billions of values): checked on the composed graph, before anything is expanded."""
    if not uses:
        return
    try:
        sizes = _expanded_sizes(root, yaml)
    except _AliasCycle as cycle:
        anchor, line, _ = next(u for u in uses if u[2] is cycle.node)
        raise SuiteError([f"{path}:{line}: alias *{anchor} refers to a value that contains it"]) from None
    if sizes[id(root)] - len(sizes) > ALIAS_EXPANSION_LIMIT:
        anchor, line, _ = max(uses, key=lambda u: sizes[id(u[2])])
        raise SuiteError(
            [
                f"{path}:{line}: aliases (*{anchor} and others) would add more than {ALIAS_EXPANSION_LIMIT} "
                "values to the suite: write the repeated parts out, or repeat them less"
            ]
        )


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _compose(text: str, path: Path) -> _Doc:
    yaml = _yaml()
    try:
        root, uses = _compose_node_graph(text, yaml)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteError([f"{path}{line}: not valid YAML: {problem}"]) from None
    except RecursionError:
        raise SuiteError([f"{path}: not valid YAML: nested too deeply"]) from None
    if root is None:
        raise SuiteError([f"{path}:1: the file is empty"])
    _check_aliases(root, uses, path, yaml)
    doc = _Doc(None, {}, {})
    try:
        doc.data = _Converter(doc, path, yaml).convert(root, ())
    except RecursionError:
        raise SuiteError([f"{path}: the suite is nested too deeply"]) from None
    return doc


class _Converter:
    """Composed YAML nodes to plain data, recording lines and every problem with the YAML's form."""

    _MAP = _CORE + "map"
    _SEQ = _CORE + "seq"

    def __init__(self, doc: _Doc, path: Path, yaml: Any) -> None:
        self.doc = doc
        self.path = path
        self.yaml = yaml
        self.constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: Any, message: str) -> None:
        line = node.start_mark.line + 1
        self.doc.problems.append((line, f"{self.path}:{line}: {message}"))

    def convert(self, node: Any, loc: Loc) -> Any:
        self.doc.value_lines[loc] = node.start_mark.line + 1
        if isinstance(node, self.yaml.MappingNode):
            self.check_tag(node, self._MAP)
            return self.mapping(node, loc)
        if isinstance(node, self.yaml.SequenceNode):
            self.check_tag(node, self._SEQ)
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        if self.check_tag(node, *_PLAIN_SCALAR_TAGS):
            try:
                return self.constructor.construct_object(node, deep=True)
            except (
                Exception
            ):  # any failure to read one scalar (!!int abc, !!bool maybe) is that line's problem
                self.problem(node, f"cannot read {node.value!r} as {_short_tag(node.tag)}")
        self.doc.unread.add(loc)  # kept as its text, so the rest of the suite is still checked
        return node.value

    def check_tag(self, node: Any, *allowed: str) -> bool:
        if node.tag in allowed:
            return True
        self.problem(node, f"tag {_short_tag(node.tag)} is not allowed: a suite is plain YAML, without tags")
        return False

    def mapping(self, node: Any, loc: Loc) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                self.problem(key_node, "merge keys (<<) are not supported")
                self.doc.merged.add(loc)
                continue
            key = self.convert(key_node, (*loc, "<key>"))
            if not isinstance(key, (str, int)):
                self.problem(key_node, "keys must be plain words")
                continue
            if key in out:
                self.problem(key_node, f"duplicate key {key!r}")
                continue
            self.doc.key_lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, (*loc, key))
        return out


def _locate(doc: _Doc, loc: Loc) -> Loc:
    """The data path of a pydantic error location (union tags skipped; a missing key ends it)."""
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
    return tuple(path)


def _line_of(doc: _Doc, located: Loc) -> int:
    """The line of a data path, or of the nearest value above it."""
    probe = located
    line = doc.key_lines.get(probe) or doc.value_lines.get(probe)
    while line is None and probe:
        probe = probe[:-1]
        line = doc.key_lines.get(probe) or doc.value_lines.get(probe)
    return line or 1


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
    """Read and validate a suite file. Raises :class:`SuiteError` listing every problem with its line, all
    found in one pass: the YAML's form, the schema, duplicate ids, missing files to push and (unless
    ``resolve_python`` is false) ``python:`` checks that do not import. Importing those runs their modules."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SetupError(f"cannot read suite {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SuiteError([f"{path}:{line}: not UTF-8 text"]) from None
    doc = _compose(text, path)
    if not isinstance(doc.data, dict):
        raise SuiteError([f"{path}:1: expected a mapping with a 'tasks' list"])
    data = _apply_defaults(doc.data)
    spec, problems = _validate(data, doc, path)
    problems += doc.problems + _content_problems(data, doc, path, resolve_python=resolve_python)
    if problems or spec is None:
        raise SuiteError([p for _, p in sorted(problems, key=lambda item: item[0])])
    name = spec.name or path.stem
    return Suite(path, hashlib.sha256(raw).hexdigest(), name, spec.description, spec.tasks)


def _validate(data: dict[str, Any], doc: _Doc, path: Path) -> tuple[SuiteSpec | None, list[Problem]]:
    """The validated suite, or the schema's problems with their lines."""
    try:
        return SuiteSpec.model_validate(data), []
    except ValidationError as exc:
        errors = exc.errors()
    problems: list[Problem] = []
    for error in errors:
        if error["type"] == "too_short" and any(
            e is not error and tuple(e["loc"][: len(error["loc"])]) == tuple(error["loc"]) for e in errors
        ):
            continue  # "at least 1 item after validation": a consequence of the item errors listed
        located = _locate(doc, error["loc"])
        if error["type"] == "missing" and located[:-1] in doc.merged:
            continue  # the skipped merge key (reported) may have been meant to supply it
        if located in doc.unread:
            continue  # a value that could not be read is reported as such
        line = _line_of(doc, located)
        problems.append((line, f"{path}:{line}: {_describe_loc(doc.data, located)}: {_message(error)}"))
    return None, problems


def _content_problems(data: dict[str, Any], doc: _Doc, path: Path, *, resolve_python: bool) -> list[Problem]:
    """Duplicate ids, missing files to push and unimportable checks, read from the raw data so they are found
    even when other parts of the suite do not validate."""
    tasks = data.get("tasks")
    if not isinstance(tasks, list):
        return []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            continue
        task_id = task.get("id")
        line = doc.value_lines.get(("tasks", i, "id"), 1)
        if isinstance(task_id, str) and task_id in seen:
            problems.append(
                (line, f"{path}:{line}: duplicate task id {task_id!r} (first at line {seen[task_id]})")
            )
        elif isinstance(task_id, str):
            seen[task_id] = line
        problems += _push_problems(task, ("tasks", i), doc, path)
        if resolve_python:
            for loc, spec in _python_specs(task.get("success"), ("tasks", i, "success")):
                try:
                    resolve_function(spec, path.parent)
                except SetupError as exc:
                    line = doc.value_lines.get(loc, 1)
                    problems.append((line, f"{path}:{line}: {exc}"))
    return problems


def _push_problems(task: dict[str, Any], loc: Loc, doc: _Doc, path: Path) -> list[Problem]:
    problems: list[Problem] = []
    for phase in ("setup", "teardown"):
        steps = task.get(phase)
        for j, step in enumerate(steps if isinstance(steps, list) else []):
            push = step.get("push") if isinstance(step, dict) else None
            local = push.get("local") if isinstance(push, dict) else None
            if isinstance(local, str) and local and not (path.parent / local).is_file():
                line = doc.value_lines.get((*loc, phase, j, "push", "local"), 1)
                problems.append((line, f"{path}:{line}: file to push {local!r} does not exist"))
    return problems


def _python_specs(check: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every well-formed ``python: module:function`` in a raw check, with its data path."""
    if not isinstance(check, dict):
        return
    spec = check.get("python")
    if isinstance(spec, str) and _IMPORT_PATH.match(spec):
        yield (*loc, "python"), spec
    for key in ("all", "any"):
        children = check.get(key)
        for i, child in enumerate(children if isinstance(children, list) else []):
            yield from _python_specs(child, (*loc, key, i))
    if "not" in check:
        yield from _python_specs(check["not"], (*loc, "not"))


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
        except (Exception, SystemExit) as exc:  # a module that calls sys.exit() on import is a problem too
            why = f"it exited ({exc.code})" if isinstance(exc, SystemExit) else str(exc)
            raise SetupError(f"cannot import {module_name!r} for check {spec!r}: {why}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SetupError(f"{module_name!r} has no function {func_name!r} (check {spec!r})")
    return func  # type: ignore[no-any-return]
