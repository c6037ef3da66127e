"""The locator cache: where each target was found, with an anchor to find it again without the model.

One JSON file holds an entry per (target text, screen size): the target, the screen size, the device point and
the :class:`~screenpilot.session.anchors.Anchor` cut around it. :meth:`LocatorCache.lookup` answers from the
anchor when it is found strongly and uniquely on the current screenshot; otherwise it answers None and the
caller asks the model, then calls :meth:`LocatorCache.store`, which refreshes the entry.

The file is written whole to a temporary file that then replaces it, under an exclusive lock on a ``.lock``
file beside it, and every store re-reads the file under that lock: several processes can share one cache
without corrupting it or losing each other's entries. A file that is not a locator cache (corrupt, someone
else's JSON, or written by a newer screenpilot) is never overwritten: opening it raises
:class:`LocatorCacheError`, one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from screenpilot.actions.coords import Point, Size
from screenpilot.errors import SetupError
from screenpilot.session.anchors import Anchor, AnchorError, find_anchor, make_anchor

try:
    import fcntl
except ImportError:  # Windows: writes stay atomic, but two processes storing at once may lose an entry
    fcntl = None  # type: ignore[assignment]

#: The ``format`` value that marks a locator cache file.
FORMAT = "screenpilot-locators"
#: The file layout version this screenpilot writes and reads.
VERSION = 1

_Key = tuple[str, Size]


class LocatorCacheError(SetupError):
    """The cache file cannot be used (corrupt, not a locator cache, or from a newer screenpilot); it is left
    as it is."""


@dataclass(frozen=True)
class LocatorHit:
    """A target found from its anchor: the point in device pixels and the match's score (ZNCC, up to 1)."""

    point: Point
    score: float


@dataclass
class LocatorStats:
    """What a cache did since it was opened: lookups answered (hits) and not (misses), entries stored, and
    stores refused because the point had no anchor (a flat or repetitive region)."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    refused: int = 0


class LocatorEntry(BaseModel):
    """One target on one screen size: where it was and the anchor that finds it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    screen: Size
    point: Point
    anchor: Anchor

    @property
    def key(self) -> _Key:
        return self.target, self.screen


class _CacheFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: str
    version: int
    entries: list[LocatorEntry]


class LocatorCache:
    """Anchors for targets, kept in one JSON file (created on the first store)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.stats = LocatorStats()
        self._entries: dict[_Key, LocatorEntry] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._refresh()

    def __len__(self) -> int:
        self._refresh()
        return len(self._entries)

    def entries(self) -> list[LocatorEntry]:
        """The entries now in the file, sorted by target and screen size."""
        self._refresh()
        return sorted(self._entries.values(), key=_order)

    def lookup(self, target: str, screenshot: Image.Image) -> LocatorHit | None:
        """The target's point on ``screenshot`` from its anchor, or None (no entry for this screen size, or the
        anchor is not found strongly and uniquely)."""
        self._refresh()
        entry = self._entries.get((target, Size(*screenshot.size)))
        match = None if entry is None else find_anchor(entry.anchor, screenshot, near=entry.point)
        if match is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return LocatorHit(point=match.point, score=match.score)

    def store(self, target: str, screenshot: Image.Image, point: Point) -> None:
        """Record ``point`` for ``target`` on this screen size, replacing any older entry. Where no anchor can
        be made (a flat or repetitive region) the older entry is dropped instead and ``stats.refused`` counts it."""
        screen = Size(*screenshot.size)
        try:
            entry: LocatorEntry | None = LocatorEntry(
                target=target, screen=screen, point=point, anchor=make_anchor(screenshot, point)
            )
        except AnchorError:
            entry = None
        self._update((target, screen), entry)
        if entry is None:
            self.stats.refused += 1
        else:
            self.stats.stores += 1

    # -- the file ---------------------------------------------------------------------------------------------
    def _update(self, key: _Key, entry: LocatorEntry | None) -> None:
        try:
            self._update_file(key, entry)
        except OSError as exc:
            raise LocatorCacheError(
                f"cannot write the locator cache {self.path}: {exc.strerror or exc}"
            ) from None

    def _update_file(self, key: _Key, entry: LocatorEntry | None) -> None:
        with self._locked():
            self._refresh()
            entries = dict(self._entries)
            if entry is not None:
                entries[key] = entry
            elif entries.pop(key, None) is None:
                return
            self._write(entries)
            self._entries = entries
            self._stamp = _stamp(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, entries: dict[_Key, LocatorEntry]) -> None:
        data = {
            "format": FORMAT,
            "version": VERSION,
            "entries": [entry.model_dump(mode="json") for entry in sorted(entries.values(), key=_order)],
        }
        fd, tmp = _temporary_beside(self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, ensure_ascii=False, indent=1)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _refresh(self) -> None:
        """Re-read the file if another process (or this one) has replaced it since it was last read."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        entries = {} if stamp is None else _read(self.path)
        known = {entry.anchor.patch_png: entry.anchor for entry in self._entries.values()}
        self._entries = {key: _reuse(entry, known) for key, entry in entries.items()}
        self._stamp = stamp


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new file next to ``path`` to replace it with: with ``path``'s permissions when it exists (a cache
    shared by a group stays shared), else the usual ones for a new file (the umask applies). ``mkstemp`` would
    make every cache readable by its owner only."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        return fd, str(tmp)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocatorCacheError(f"cannot read the locator cache {path}: {exc.strerror}") from None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _read(path: Path) -> dict[_Key, LocatorEntry]:
    """The entries of the file at ``path``; a LocatorCacheError says why it is not a usable cache."""
    try:
        data = json.loads(path.read_bytes())
    except IsADirectoryError:
        raise _unusable(path, "it is a folder") from None
    except OSError as exc:
        raise LocatorCacheError(f"cannot read the locator cache {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _unusable(path, f"not JSON: {exc}") from None
    _check_header(path, data)
    try:
        parsed = _CacheFile.model_validate(data)
    except ValidationError as exc:
        raise _unusable(path, _first_problem(exc)) from None
    return {entry.key: entry for entry in parsed.entries}


def _check_header(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _unusable(path, f'it has no "format": "{FORMAT}"')
    version = data.get("version")
    if isinstance(version, int) and version > VERSION:
        raise _unusable(
            path, f"it was written by a newer screenpilot (version {version}; this one reads {VERSION})"
        )
    if version != VERSION:
        raise _unusable(path, f"its version is {version!r}, not {VERSION}")


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    more = exc.error_count() - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more problems)" if more else "")


def _unusable(path: Path, why: str) -> LocatorCacheError:
    return LocatorCacheError(
        f"{path} is not a usable locator cache ({why}); it was left untouched: delete it or use another cache file"
    )


def _reuse(entry: LocatorEntry, known: dict[str, Anchor]) -> LocatorEntry:
    """The entry with the anchor object read before, if the anchor has not changed (it keeps its prepared
    patch, so a reload does not slow the next lookup)."""
    old = known.get(entry.anchor.patch_png)
    if old is not None and (old.offset, old.screen) == (entry.anchor.offset, entry.anchor.screen):
        return entry.model_copy(update={"anchor": old})
    return entry


def _order(entry: LocatorEntry) -> tuple[str, int, int]:
    return entry.target, entry.screen.width, entry.screen.height
