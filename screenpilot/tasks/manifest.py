"""The run manifest: what is needed to reproduce a benchmark run, and the guards against mixing runs.

``fingerprint`` holds the settings results depend on (suite bytes, model, dialect, limits, seed). Resuming a
run folder whose fingerprint differs would silently blend two experiments, so it is refused unless forced.
:class:`FolderLock` keeps a second process out of a folder a run is using. The recorded command line never
holds a secret (:func:`redact_argv`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

from screenpilot import __version__
from screenpilot.agent.record import write_json_atomic
from screenpilot.errors import SetupError
from screenpilot.model.spec import redact_url

MANIFEST = "manifest.json"
LOCK = ".lock"

#: Options whose value is a secret; the recorded command line shows ``REDACTED`` instead.
SECRET_OPTIONS = ("--api-key",)
REDACTED = "REDACTED"


class ManifestMismatch(SetupError):
    """The run folder was made with other settings; resuming would mix two experiments."""


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _secret_option(token: str) -> bool:
    """Whether ``token`` names a secret option, also as argparse's unambiguous prefix (``--api-k``)."""
    return token.startswith("--") and len(token) > 3 and any(o.startswith(token) for o in SECRET_OPTIONS)


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with the values of secret options (``--api-key VALUE``, ``--api-key=VALUE``) replaced, and any
    ``user:password@`` in a server address (``--model http://user:pw@host/v1``)."""
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif token.startswith("--") and "=" in token and _secret_option(token.split("=", 1)[0]):
            out.append(token.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(",".join(redact_url(part) for part in token.split(",")))
            hide_next = _secret_option(token)
    return out


class FolderLock:
    """An exclusive lock on a run folder (``flock`` on ``FOLDER/.lock``), held while a run uses it.

    The kernel releases it when the process ends, however it ends, so a crash never leaves the folder locked.
    The lock file holds the owner's pid, for the refusal a second process gets.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`SetupError` naming the folder and the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SetupError(f"cannot lock {self.path.parent}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise SetupError(
                f"{self.path.parent} is in use by another screenpilot bench (pid {owner}); "
                "wait for it to end or use another --out folder"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the lock

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted paths of the settings that differ."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(path)

    walk(old, new, "")
    return out


class Manifest:
    """``DIR/manifest.json``, updated as devices join the run (thread-safe)."""

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.path = folder / MANIFEST
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, folder: Path, fingerprint: dict[str, Any], extra: dict[str, Any], *, force: bool
    ) -> Manifest:
        """Create the manifest, or check and extend the existing one when resuming."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST
        now = time.time()
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SetupError(f"{path} is unreadable ({exc}); use another --out folder") from exc
            diff = fingerprint_diff(old.get("fingerprint", {}), fingerprint)
            if diff and not force:
                raise ManifestMismatch(
                    f"{folder} holds a run with other settings ({', '.join(diff)} changed); "
                    "use a new --out folder, or --force to continue it anyway"
                )
            data = old
            data.setdefault("resumed", []).append({"at": now, "changed": diff, "forced": bool(diff)})
            data["fingerprint"] = fingerprint
            data.update({k: v for k, v in extra.items() if k not in ("created", "devices")})
        else:
            data = {
                "screenpilot": __version__,
                "python": platform.python_version(),
                "created": now,
                "fingerprint": fingerprint,
                **extra,
                "devices": [],
            }
        manifest = cls(folder, data)
        manifest.save()
        return manifest

    def add_device(self, device: dict[str, Any]) -> None:
        """Record a device (env.describe(), screen size, prompt hash) once."""
        with self._lock:
            devices: list[dict[str, Any]] = self.data.setdefault("devices", [])
            if device not in devices:
                devices.append(device)
                self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        write_json_atomic(self.path, self.data)
