"""Every dialect screenpilot ships, by the name ``--dialect`` takes: the one table a dialect is chosen from.

A dialect factory takes the platform (``mobile`` for phones, ``desktop`` for desktops) and the dialect options
every dialect accepts (``min_pixels``, ``max_pixels``, ``answer_action``, ``reasoning``, ``keep_images``) and
returns a :class:`~screenpilot.model.dialect.Dialect`. A dialect that cannot honour an option raises
:class:`~screenpilot.errors.SetupError` saying so, rather than ignoring it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from PIL import Image

from screenpilot.actions.coords import QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, Size
from screenpilot.errors import SetupError
from screenpilot.model.base import render_chatml
from screenpilot.model.dialect import Dialect, Platform

DialectFactory = Callable[..., Dialect]

DEFAULT_DIALECT = "qwen2.5-vl"


def _qwen25vl(platform: Platform, **options: Any) -> Dialect:
    from screenpilot.model.qwen25vl import Qwen25VLDialect

    return Qwen25VLDialect.for_platform(platform, **options)


def _qwen3vl(platform: Platform, **options: Any) -> Dialect:
    from screenpilot.model.qwen3vl import Qwen3VLDialect

    return Qwen3VLDialect.for_platform(platform, **options)


def _uitars15(platform: Platform, **options: Any) -> Dialect:
    from screenpilot.model.uitars15 import UITars15Dialect

    return UITars15Dialect.for_platform(platform, **options)


#: Dialect name -> factory. Add a model family here (and nowhere else).
DIALECTS: dict[str, DialectFactory] = {
    "qwen2.5-vl": _qwen25vl,
    "qwen3-vl": _qwen3vl,
    "ui-tars-1.5": _uitars15,  # a Qwen2.5-VL fine-tune: chosen by --dialect, never by model_type
}

#: A checkpoint's ``config.json`` ``model_type`` -> the dialect it was trained on.
MODEL_TYPES: dict[str, str] = {
    "qwen2_5_vl": "qwen2.5-vl",
    "qwen2_vl": "qwen2.5-vl",
    "qwen3_vl": "qwen3-vl",
    "qwen3_vl_moe": "qwen3-vl",
}

DIALECT_NAMES: tuple[str, ...] = tuple(DIALECTS)


def make_dialect(name: str, platform: Platform, **options: Any) -> Dialect:
    """The dialect ``name`` for ``platform``; an unknown name is a :class:`SetupError` listing the known ones."""
    try:
        factory = DIALECTS[name]
    except KeyError:
        raise SetupError(f"unknown dialect {name!r}; choose one of {', '.join(DIALECTS)}") from None
    return factory(platform, **options)


def dialect_for_model_type(model_type: str | None) -> str | None:
    """The dialect a checkpoint of this ``model_type`` speaks, or None when screenpilot does not know it."""
    return MODEL_TYPES.get(model_type or "")


def default_pixel_limits(model_type: str | None) -> tuple[int, int]:
    """The image pixel limits (min, max) a checkpoint of this ``model_type`` was trained with: its processor's
    defaults, which the matching dialect also uses when no limits are given."""
    if dialect_for_model_type(model_type) == "qwen3-vl":
        from screenpilot.model.qwen3vl import QWEN3_MAX_PIXELS, QWEN3_MIN_PIXELS

        return QWEN3_MIN_PIXELS, QWEN3_MAX_PIXELS
    return QWEN_MIN_PIXELS, QWEN_MAX_PIXELS


#: The screens a dialect's prompt is hashed at (its text depends on the screen through the image size).
REFERENCE_SCREENS: dict[str, Size] = {"mobile": Size(1080, 2400), "desktop": Size(1280, 800)}


def describe_dialect(dialect: Dialect) -> dict[str, object]:
    """``dialect.describe()`` plus ``prompt_sha256``: the hash of the whole first prompt (system and user
    turns, as ChatML) for a fixed goal on the platform's reference screen, so any change of prompt text,
    template or image size rule shows as a new hash in run.json and the manifest."""
    described = dialect.describe()
    key = (type(dialect).__qualname__, dialect.platform, json.dumps(described, sort_keys=True, default=str))
    return {**described, "prompt_sha256": _prompt_sha256(key, dialect)}


_PROMPT_HASHES: dict[tuple[str, str, str], str] = {}


def _prompt_sha256(key: tuple[str, str, str], dialect: Dialect) -> str:
    """The reference prompt's hash, computed once per dialect class, platform and settings (a bench records
    it for every episode, and building the prompt resizes a full reference screenshot)."""
    if key not in _PROMPT_HASHES:
        screen = REFERENCE_SCREENS[dialect.platform]
        space = dialect.coordinate_space(screen)
        blank = Image.new("RGB", (screen.width, screen.height), "white")
        text = render_chatml(dialect.messages("GOAL", blank, space, ()))
        _PROMPT_HASHES[key] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _PROMPT_HASHES[key]
