"""What ``--model`` names: a local folder or hub id, a server URL, or a replay source, read in one place.

The text is classified without importing any backend and without touching the network, so a typo fails at
once with a line that says which forms are accepted. ``HOST:PORT/...`` without a scheme is read as a plain
``http://`` server URL (``localhost:8000/v1``), since a hub id never holds a colon.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from screenpilot.errors import SetupError

ModelKind = Literal["local", "server", "replay"]

FORMS = "a model folder, a hub id (org/name), a server URL (http://HOST:PORT/v1) or replay:FILE"

_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):\d{1,5}(?:/.*)?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class ModelSpec:
    """A classified ``--model`` value.

    ``target`` is, by kind: ``local``, the folder (absolute) or the hub id; ``server``, the URL with its
    scheme; ``replay``, the replay file or run folder as given.
    """

    kind: ModelKind
    target: str
    hub: bool = False
    """For ``local``: True when ``target`` is a hub id rather than a folder."""

    def __str__(self) -> str:
        return f"replay:{self.target}" if self.kind == "replay" else self.target


def parse_model_spec(text: str) -> ModelSpec:
    """Classify ``text``; raise :class:`SetupError` (one line naming the accepted forms) when it fits none."""
    spec = text.strip()
    if not spec:
        raise SetupError(f"no model given; a model is {FORMS}")
    if spec.startswith("replay:"):
        return _replay(spec.removeprefix("replay:"))
    if spec.startswith(("http://", "https://")):
        return _server(spec)
    if _SCHEME.match(spec):
        raise SetupError(
            f"model {spec!r}: only http:// and https:// server URLs are supported; a model is {FORMS}"
        )
    if _HOST_PORT.match(spec):
        return _server("http://" + spec)
    return _local(spec)


def _replay(source: str) -> ModelSpec:
    if not source:
        raise SetupError("replay: needs a file or a run folder, as in replay:answers.jsonl")
    if not Path(source).expanduser().exists():
        raise SetupError(f"replay source {source} does not exist")
    return ModelSpec("replay", source)


def _server(url: str) -> ModelSpec:
    rest = url.split("://", 1)[1]
    if not rest.split("/", 1)[0]:
        raise SetupError(f"server URL {url!r} names no host; write it as http://HOST:PORT/v1")
    return ModelSpec("server", url)


def _local(spec: str) -> ModelSpec:
    path = Path(spec).expanduser()
    if path.is_dir():
        return ModelSpec("local", str(path.resolve()))
    if path.exists():
        raise SetupError(
            f"model {spec} is a file; pass the model's folder (or replay:{spec} for recorded answers)"
        )
    if _HUB_ID.match(spec) and not spec.startswith((".", "~")) and ".." not in spec and "--" not in spec:
        return ModelSpec("local", spec, hub=True)
    raise SetupError(f"no such folder: {spec}{_did_you_mean(path)}; a model is {FORMS}")


def _did_you_mean(path: Path) -> str:
    """`` (did you mean X?)`` for the closest existing sibling folder, when one is close."""
    parent = path.parent
    try:
        names = [p.name for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
    return f" (did you mean {parent / close[0]}?)" if close else ""


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` it holds replaced, so a server address can be recorded safely."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    if "@" not in host:
        return url
    return f"{scheme}://REDACTED@{host.rsplit('@', 1)[1]}{slash}{path}"
