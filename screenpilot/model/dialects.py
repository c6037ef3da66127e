"""Every dialect screenpilot ships, by the name ``--dialect`` takes: the one table a dialect is chosen from.

A dialect factory takes the platform (``mobile`` for phones, ``desktop`` for desktops) and the dialect options
every dialect accepts (``min_pixels``, ``max_pixels``, ``answer_action``, ``reasoning``, ``keep_images``) and
returns a :class:`~screenpilot.model.dialect.Dialect`. A dialect that cannot honour an option raises
:class:`~screenpilot.errors.SetupError` saying so, rather than ignoring it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from screenpilot.errors import SetupError
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
