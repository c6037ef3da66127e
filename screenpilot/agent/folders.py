"""Run folders made ready before anything loads: unique, created atomically, never shared.

A default folder is ``runs/<date>-<time>`` (``-2``, ``-3``... when taken), each ``mkdir`` atomic, so runs started
in the same second by several processes get a folder each; a given folder must be new or empty, so nothing
recorded is ever mixed or overwritten. Used by ``screenpilot run`` and by scripts (``screenpilot.connect``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from screenpilot.agent.record import SCREENS
from screenpilot.errors import SetupError

__all__ = ["RunFolder", "given_run_folder", "new_run_folder"]


@dataclass(frozen=True)
class RunFolder:
    """A run folder made ready for recording; ``made`` lists the folders this run created, innermost first
    (removed again, when still empty, if the run never starts recording)."""

    path: Path
    made: tuple[Path, ...] = ()

    def discard_if_unused(self) -> None:
        """Remove what was made for a run that never started recording; anything else in it stays."""
        for folder in (self.path / SCREENS, *self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _missing_parents(path: Path) -> tuple[Path, ...]:
    """The ancestors of ``path`` that do not exist yet, innermost first."""
    return tuple(p for p in path.parents if not p.exists())


def new_run_folder(root: Path = Path("runs"), now: datetime | None = None) -> RunFolder:
    """Create ``root/<date>-<time>`` (``-2``, ``-3``... when taken): each mkdir is atomic, so runs started
    in the same second by several processes get a folder each."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    made = (*((root,) if not root.exists() else ()), *_missing_parents(root))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create the runs folder {root}: {exc.strerror or exc}") from exc
    for n in range(1, 10_000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise SetupError(f"cannot create the run folder {folder}: {exc.strerror or exc}") from exc
        return _ready(RunFolder(folder, (folder, *made)))
    raise SetupError(f"{root} already holds 9999 runs started at {stamp}; choose another folder for the run")


def given_run_folder(out: Path) -> RunFolder:
    """Make the given run folder (``--out``, ``connect(out=...)``) ready: a new folder, or an existing empty
    one. A run never writes into a folder that already holds something (a run or anything else), so nothing
    recorded is ever mixed or overwritten. The errors name "the run folder", which reads right from the CLI
    and from Python alike."""
    made = (out, *_missing_parents(out))
    try:
        out.mkdir(parents=True)
        return _ready(RunFolder(out, made))
    except FileExistsError:
        pass
    except OSError as exc:
        raise SetupError(f"cannot create the run folder {out}: {exc.strerror or exc}") from exc
    if not out.is_dir():
        raise SetupError(f"the run folder {out} is a file, not a folder; choose a new folder for the run")
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise SetupError(f"cannot read the run folder {out}: {exc.strerror or exc}") from exc
    if not empty:
        raise SetupError(
            f"the run folder {out} already exists and is not empty; choose a new folder "
            "(a run never writes into one that holds something)"
        )
    return _ready(RunFolder(out))


def _ready(folder: RunFolder) -> RunFolder:
    """Check the folder takes files by making its screens folder, so a read-only place fails now."""
    try:
        (folder.path / SCREENS).mkdir(exist_ok=True)
    except OSError as exc:
        folder.discard_if_unused()
        raise SetupError(f"cannot write in the run folder {folder.path}: {exc.strerror or exc}") from exc
    return folder
