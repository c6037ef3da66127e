"""The run engine of offline evaluations: asks every example not done yet, a few at a time, keeps every
finished item (journalled, in data order), and stops early when the model fails for the whole run or on
Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from screenpilot.errors import SetupError
from screenpilot.model.base import Message, ModelBackend, ModelBackendError
from screenpilot.tasks.evaluate.journal import Journal


class Gate:
    """Asks the model from worker threads. A server takes requests at once; any other backend (a replay model
    keyed by ``begin_episode``, a local GPU model) is asked one request at a time."""

    def __init__(self, model: ModelBackend) -> None:
        self.model = model
        concurrent = model.describe().get("backend") == "openai"
        self._lock: threading.Lock | None = None if concurrent else threading.Lock()

    def ask(self, key: str | None, messages: list[Message]) -> tuple[str | None, str | None, float]:
        if self._lock is None:
            return self._ask(key, messages)
        with self._lock:
            return self._ask(key, messages)

    def _ask(self, key: str | None, messages: list[Message]) -> tuple[str | None, str | None, float]:
        self.model.begin_episode(key)
        t0 = time.perf_counter()
        try:
            text = self.model.complete(messages).text
        except ModelBackendError as exc:
            return None, f"model error: {exc}", time.perf_counter() - t0
        return text, None, time.perf_counter() - t0


#: When the first this many examples (or all of them, when there are fewer) end on one and the same model error,
#: the model fails for the whole run: the evaluation stops there instead of scoring every example a miss.
RUN_WIDE_FAILURES = 3


@dataclass
class Progress:
    """Progress on stderr: a bar on a terminal (tqdm), else a line every tenth of the run."""

    what: str
    planned: int
    enabled: bool
    label: str
    done: int = 0
    good: int = 0
    bar: Any = None

    def __post_init__(self) -> None:
        if self.enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=self.planned, desc=self.what, unit="item", file=sys.stderr)

    def update(self, good: bool) -> None:
        self.done += 1
        self.good += int(good)
        share = f"{100 * self.good / self.done:.1f}% {self.label}"
        if self.bar is not None:
            self.bar.set_postfix_str(share, refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.done % max(1, self.planned // 10) == 0 or self.done == self.planned):
            print(
                f"{self.what}: {self.done}/{self.planned} done, {share} so far", file=sys.stderr, flush=True
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Outcome:
    """The items that finished, and why the run ended before the last one (if it did)."""

    items: list[dict[str, Any]]
    planned: int
    stopped: str | None = None
    interrupted_by: str | None = None

    def fields(self) -> dict[str, Any]:
        """The report's account of the run: planned and finished examples, and whether it is complete."""
        return {
            "planned": self.planned,
            "finished": len(self.items),
            "complete": self.stopped is None and self.interrupted_by is None,
            "stopped": self.stopped,
            "interrupted_by": self.interrupted_by,
        }


def _run_wide_failure(items: list[dict[str, Any]], planned: int) -> str | None:
    """Why the model fails for the whole run, when the first examples all ended on the same model error."""
    first = min(RUN_WIDE_FAILURES, planned)
    if len(items) != first:
        return None
    errors = {item["error"] for item in items if item["status"] == "model_error"}
    if len(errors) != 1 or any(item["status"] != "model_error" for item in items):
        return None
    return f"the model failed on the first {first} examples, each with: {errors.pop()}"


@dataclass
class Plan:
    """The examples of a run: keys and cases in data order, and those already done (resuming)."""

    jobs: list[tuple[str, Any]]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    def todo(self) -> list[tuple[int, Any]]:
        return [(i, case) for i, (key, case) in enumerate(self.jobs) if key not in self.done]


@dataclass
class _Asking:
    """A run in progress: the items by data index (those done before included), the requests in flight and
    the items this run finished."""

    plan: Plan
    ask: Callable[[Any, Any], dict[str, Any]]
    progress: Progress
    good: str
    journal: Journal | None
    outcome: Outcome
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: dict[Future[dict[str, Any]], int] = field(default_factory=dict)
    fresh: list[dict[str, Any]] = field(default_factory=list)
    planned: int = 0

    def submit(self, pool: ThreadPoolExecutor, index: int, case: Any, payload: Any) -> None:
        self.pending[pool.submit(self.ask, case, payload)] = index

    def record(self, future: Future[dict[str, Any]]) -> None:
        """Keep (and journal) a finished item; notes when the model fails for the whole run."""
        item = future.result()
        self.results[self.pending.pop(future)] = item
        self.fresh.append(item)
        if self.journal is not None:
            self.journal.append(item)
        self.progress.update(bool(item[self.good]))
        self.outcome.stopped = self.outcome.stopped or _run_wide_failure(self.fresh, self.planned)

    def record_first_finished(self) -> None:
        finished, _ = wait(list(self.pending), return_when=FIRST_COMPLETED)
        for future in sorted(finished, key=lambda f: self.pending[f]):
            self.record(future)

    def record_what_finished(self) -> None:
        """After an interruption: keep the items whose requests finished all the same."""
        for future in [f for f in self.pending if f.done() and not f.cancelled() and f.exception() is None]:
            self.record(future)


def run_cases(
    plan: Plan,
    load: Callable[[Any], Any],
    ask: Callable[[Any, Any], dict[str, Any]],
    progress: Progress,
    good: str,
    *,
    concurrency: int = 1,
    journal: Journal | None = None,
) -> Outcome:
    """Ask every case not yet done, ``concurrency`` at a time (``load`` runs here, in data order; ``ask`` in
    worker threads); stop early when the model fails for the whole run, or on Ctrl-C / SIGTERM (a
    ``KeyboardInterrupt``, whose ``signum`` names the signal). Every finished item is kept (and journalled), and
    the items come back in data order."""
    to_ask = plan.todo()
    asking = _Asking(plan, ask, progress, good, journal, Outcome([], len(plan.jobs)), planned=len(to_ask))
    asking.results = {i: plan.done[key] for i, (key, _) in enumerate(plan.jobs) if key in plan.done}
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval")
    todo = iter(to_ask)
    try:
        while True:
            while asking.outcome.stopped is None and len(asking.pending) < concurrency:
                nxt = next(todo, None)
                if nxt is None:
                    break
                asking.submit(pool, nxt[0], nxt[1], _try_load(load, nxt[1]))
            if not asking.pending:
                break
            asking.record_first_finished()
    except KeyboardInterrupt as exc:
        asking.outcome.interrupted_by = signal.Signals(getattr(exc, "signum", signal.SIGINT)).name
        for future in asking.pending:
            future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        asking.record_what_finished()
        progress.close()
    asking.outcome.items = [asking.results[i] for i in sorted(asking.results)]
    return asking.outcome


def run_examples(
    jobs: list[tuple[str, Any]],
    load: Callable[[Any], Any],
    ask: Callable[[Any, Any], dict[str, Any]],
    *,
    header: dict[str, Any],
    journal: str | Path | None,
    concurrency: int,
    progress: tuple[str, bool, str],
    good: str,
) -> Outcome:
    """Ask every example of ``jobs`` (key, case) not done yet, resuming from ``journal`` when one is given.
    ``progress`` is what the progress display is called, whether it is shown, and what it counts: the items
    whose ``good`` field is true."""
    what, shown, label = progress

    def run(plan: Plan, book: Journal | None) -> Outcome:
        meter = Progress(what, len(plan.todo()), shown, label)
        return run_cases(plan, load, ask, meter, good, concurrency=concurrency, journal=book)

    return journalled(journal, header, jobs, run)


def _try_load(load: Callable[[Any], Any], case: Any) -> Any:
    """What ``load`` gives for a case, or the exception it raised (the item then records an image error)."""
    try:
        return load(case)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return exc


def image_error(item: dict[str, Any], exc: Exception) -> dict[str, Any]:
    """An item whose image passed the header check but cannot be loaded: recorded as such, never asked."""
    return {**item, "status": "image_error", "error": f"cannot load the image: {exc}", "model_s": 0.0}


def journalled(
    journal: str | Path | None,
    header: dict[str, Any],
    jobs: list[tuple[str, Any]],
    run: Callable[[Plan, Journal | None], Outcome],
) -> Outcome:
    """Run the jobs, resuming from and appending to ``journal`` when one is given."""
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SetupError(f"two examples share the key {dup!r}; keys (ids) must be unique to resume")
    if journal is None:
        return run(Plan(jobs), None)
    book = Journal(Path(journal), header)
    done = book.open()
    if done:
        print(
            f"resuming: {sum(k in done for k in keys)} of {len(jobs)} examples already done", file=sys.stderr
        )
    try:
        return run(Plan(jobs, done), book)
    finally:
        book.close()
