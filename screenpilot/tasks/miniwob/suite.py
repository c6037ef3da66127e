"""The MiniWoB++ task list, its named subsets, and the :class:`~screenpilot.tasks.suite.Suite` built from them."""

from __future__ import annotations

import difflib
import hashlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.tasks.suite import PythonCheck, Suite, Task

#: How much Chromium magnifies the page: the 160x210 task area becomes 480x630 device pixels, the whole screen.
ZOOM = 3
#: The task area every MiniWoB++ page (not the FlightWoB ones) draws, in CSS pixels, at the page's top left.
TASK_AREA = (160, 210)
#: A page that does not set its own time limit gets core.js's default, in seconds.
DEFAULT_TIME_LIMIT_S = 10.0
#: The agent's own clock may run this much past the page's limit (the page is loaded and the first screenshot
#: taken before the agent's clock starts); the page's timer ends the episode first.
TIME_MARGIN_S = 5.0

#: The original MiniWoB tasks the MiniWoB++ paper (Liu et al., 2018, "Reinforcement Learning on Web Interfaces
#: using Workflow-Guided Exploration") evaluated on: those done by clicking and typing text from the
#: instruction. Later work reports per-task numbers on this list (see docs/tasks.md).
WGE_TASKS: tuple[str, ...] = (
    "choose-list",
    "click-button",
    "click-button-sequence",
    "click-checkboxes",
    "click-color",
    "click-dialog",
    "click-dialog-2",
    "click-link",
    "click-option",
    "click-shades",
    "click-shape",
    "click-tab",
    "click-tab-2",
    "click-test",
    "click-test-2",
    "click-widget",
    "count-shape",
    "email-inbox",
    "enter-date",
    "enter-password",
    "enter-text",
    "enter-text-dynamic",
    "enter-time",
    "focus-text",
    "focus-text-2",
    "grid-coordinate",
    "guess-number",
    "identify-shape",
    "login-user",
    "navigate-tree",
    "search-engine",
    "social-media",
    "tic-tac-toe",
    "use-spinner",
)
SUBSETS: dict[str, tuple[str, ...]] = {"wge": WGE_TASKS}
#: What ``miniwob`` alone runs.
DEFAULT_SUBSET = "wge"
_ALL = "all"
_PREFIX = "miniwob"

REWARD_CHECK = "screenpilot.tasks.miniwob.suite:reward_check"


@dataclass(frozen=True)
class TaskPage:
    """One task the package ships: its page and what the package says it asks."""

    name: str
    path: Path
    description: str

    @property
    def time_limit_s(self) -> float:
        """The limit the page sets for itself (``core.EPISODE_MAX_TIME``), read from its source."""
        found = re.search(r"core\.EPISODE_MAX_TIME\s*=\s*(\d+)", self.path.read_text(encoding="utf-8"))
        return int(found.group(1)) / 1000 if found else DEFAULT_TIME_LIMIT_S


def is_miniwob_spec(spec: str | Path) -> bool:
    """``miniwob`` or ``miniwob:...`` that is not a file of that name."""
    text = str(spec)
    return (text == _PREFIX or text.startswith(_PREFIX + ":")) and not Path(text).is_file()


def _package() -> Any:
    try:
        import miniwob
        import miniwob.envs.miniwob_envs
    except ImportError as exc:
        raise MissingExtraError("miniwob", "miniwob", "the MiniWoB++ suite") from exc
    return miniwob


def _description(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    found = re.search(r"## Description\s+(.+?)(?:\n\s*\n|$)", doc, re.S)
    return " ".join(found.group(1).split()) if found else f"the {cls.__name__} task"


def task_pages() -> dict[str, TaskPage]:
    """Every MiniWoB++ task the installed package registers (FlightWoB, which needs a web server, left out)."""
    package = _package()
    html = Path(package.__file__).parent / "html" / "miniwob"
    pages: dict[str, TaskPage] = {}
    for _, cls in inspect.getmembers(package.envs.miniwob_envs, inspect.isclass):
        name = getattr(cls, "subdomain", None)
        if isinstance(name, str) and (html / f"{name}.html").is_file():
            pages[name] = TaskPage(name, html / f"{name}.html", _description(cls))
    return dict(sorted(pages.items()))


def _selection(spec: str, pages: dict[str, TaskPage]) -> tuple[str, list[str]]:
    """The subset's name and its task names, in order."""
    if spec == _PREFIX:
        return DEFAULT_SUBSET, list(SUBSETS[DEFAULT_SUBSET])
    rest = spec[len(_PREFIX) + 1 :].strip()
    if rest == _ALL:
        return _ALL, list(pages)
    if rest in SUBSETS:
        return rest, list(SUBSETS[rest])
    names = [n.strip() for n in rest.split(",") if n.strip()]
    unknown = [n for n in names if n not in pages]
    if unknown or not names:
        known = ", ".join([*SUBSETS, _ALL])
        close = [m for n in unknown for m in difflib.get_close_matches(n, pages, n=1)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SetupError(
            f"no MiniWoB++ task {', '.join(map(repr, unknown)) or repr(rest)}: give task names separated by "
            f"commas (as in the miniwob package, e.g. click-button) or a subset ({known}){hint}"
        )
    return "custom", list(dict.fromkeys(names))


def _task(page: TaskPage) -> Task:
    return Task(
        id=page.name,
        goal=page.description,
        env="sandbox",
        max_seconds=page.time_limit_s + TIME_MARGIN_S,
        success=PythonCheck(python=REWARD_CHECK),
        tags=("miniwob",),
    )


def load_miniwob_suite(spec: str | Path) -> Suite:
    """The suite ``spec`` names: ``miniwob`` (the default subset), ``miniwob:SUBSET``, ``miniwob:all`` or
    ``miniwob:TASK,TASK``. Its sha256 covers the pages' bytes, the task list and the zoom, so a resumed run
    refuses a changed package."""
    text = str(spec)
    package = _package()
    pages = task_pages()
    subset, names = _selection(text, pages)
    missing = [n for n in names if n not in pages]
    if missing:
        raise SetupError(f"the installed miniwob {package.__version__} lacks the tasks {', '.join(missing)}")
    digest = hashlib.sha256(f"zoom={ZOOM};tasks={','.join(names)};".encode())
    for name in names:
        digest.update(pages[name].path.read_bytes())
    width, height = TASK_AREA
    info = {
        "source": "miniwob",
        "subset": subset,
        "package": f"miniwob {package.__version__}",
        "screen": f"{width * ZOOM}x{height * ZOOM}",
        "zoom": ZOOM,
    }
    tasks = tuple(_task(pages[n]) for n in names)
    name = _PREFIX if subset == "custom" else f"{_PREFIX}:{subset}"
    description = f"MiniWoB++ tasks from the miniwob {package.__version__} package ({subset})"
    return Suite(pages[names[0]].path.parent, digest.hexdigest(), name, description, tasks, info)


def reward_check(ctx: Any) -> tuple[bool, str]:
    """The task's own verdict: success when the page's raw reward is above 0."""
    from screenpilot.tasks.checks import CheckError

    result = getattr(ctx.env, "task_result", None)
    if not callable(result):
        raise CheckError(f"the {ctx.env.name} environment does not run MiniWoB++ pages")
    state = result()
    if not state.get("done"):
        return False, f"the page did not end the episode (reward 0): {state.get('utterance')!r}"
    reward = float(state.get("raw_reward") or 0.0)
    why = f" ({state['reward_reason']})" if state.get("reward_reason") else ""
    return reward > 0, f"page reward {reward:g}{why}"
