"""The command-line options that fill :class:`~screenpilot.settings.Settings`, shared by the subcommands.

Every option here is a settings field of the same name. Options default to "not given" on the command line, so
the defaults live in one place (the settings) and :func:`settings_from_args` knows what the user typed: an
option given for an environment that does not use it is an error, never silently ignored.
"""

from __future__ import annotations

import argparse
from typing import Any

from screenpilot.cli.argtypes import non_negative_int, positive_int, screen_size
from screenpilot.model.dialects import DEFAULT_DIALECT
from screenpilot.settings import DIALECT_NAMES, ENV_NAMES, Settings

ParentFactory = Any


def _default(name: str) -> Any:
    field = Settings.model_fields[name]
    return field.default


def _add(group: Any, *flags: str, dest: str, **kwargs: Any) -> None:
    """Add an option whose default is "not given"; its help names the settings' default."""
    help_text = kwargs.pop("help", "")
    shown = kwargs.pop("shown_default", _default(dest))
    if shown is not None and shown is not False and shown != () and "default:" not in help_text:
        help_text = f"{help_text} (default: {shown})" if help_text else f"default: {shown}"
    group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, help=help_text, **kwargs)


#: The model options: (flag, settings field, argparse keywords), in the order ``--help`` lists them.
MODEL_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--model",
        "model",
        {
            "help": "local directory or hub id (transformers), http://HOST:PORT/v1 (OpenAI-compatible server) or "
            "replay:FILE|RUN_DIR"
        },
    ),
    (
        "--dialect",
        "dialect",
        {
            "choices": DIALECT_NAMES,
            "help": "the model family's prompt and output format (default: a local checkpoint's own, else "
            f"{DEFAULT_DIALECT})",
        },
    ),
    ("--served-model", "served_model", {"help": "model name on the server (default: the first it lists)"}),
    ("--api-key", "api_key", {"help": "server API key (default: $OPENAI_API_KEY); never recorded"}),
    (
        "--request-timeout",
        "request_timeout",
        {"type": float, "metavar": "S", "help": "longest wait for one server answer, in seconds"},
    ),
    (
        "--device",
        "device",
        {
            "help": "torch device for a local model (default: cuda if available; auto spreads the layers over "
            "all GPUs)"
        },
    ),
    ("--dtype", "dtype", {"help": "torch dtype for a local model (default: bf16 on GPU, fp32 on CPU)"}),
    (
        "--max-new-tokens",
        "max_new_tokens",
        {"type": positive_int, "metavar": "N", "help": "generation limit"},
    ),
    (
        "--cache-implementation",
        "cache_implementation",
        {
            "choices": ("dynamic", "static"),
            "help": "local model KV cache (default: static with CUDA graphs on one GPU, compiled once in about a "
            "minute; dynamic elsewhere); dynamic skips the compilation",
        },
    ),
    (
        "--min-pixels",
        "min_pixels",
        {"type": positive_int, "help": "image pixel floor (default: the dialect's own; Qwen2.5-VL: 3136)"},
    ),
    (
        "--max-pixels",
        "max_pixels",
        {
            "type": positive_int,
            "help": "image pixel cap; lower it (e.g. 1003520 = 1280*28*28) to trade grounding for speed "
            "(default: the dialect's own; Qwen2.5-VL: 12845056)",
        },
    ),
    (
        "--answer-action",
        "answer_action",
        {"action": "store_true", "help": "offer the `answer` action (AndroidWorld variant)"},
    ),
    ("--reasoning", "reasoning", {"action": "store_true", "help": "ask for <thinking>/<conclusion>"}),
    (
        "--keep-images",
        "keep_images",
        {"type": non_negative_int, "metavar": "N", "help": "also show the last N screenshots"},
    ),
    (
        "--max-retries",
        "max_retries",
        {"type": non_negative_int, "metavar": "N", "help": "re-asks per step after an unusable answer"},
    ),
)


def model_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model")
    for flag, dest, kwargs in MODEL_OPTIONS:
        _add(g, flag, dest=dest, **kwargs)
    return p


#: The environment options after ``--env``, as :data:`MODEL_OPTIONS`.
ENVIRONMENT_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "--serial",
        "serial",
        {
            "action": "append",
            "help": "android: device serial (default: $ANDROID_SERIAL or the only one connected)",
        },
    ),
    (
        "--monitor",
        "monitor",
        {
            "type": positive_int,
            "metavar": "N",
            "help": "desktop: monitor number, 1 = primary",
            "shown_default": 1,
        },
    ),
    (
        "--screen-size",
        "screen_size",
        {
            "type": screen_size,
            "metavar": "WxH",
            "help": "sandbox/fake: screen size WxH (default: 1280x800 sandbox, 1080x2400 fake)",
        },
    ),
    ("--app", "app", {"help": "sandbox: command to launch on the virtual display, e.g. 'xterm'"}),
    (
        "--no-settle",
        "settle",
        {
            "action": "store_false",
            "help": "do not wait for the screen to settle after actions (default: wait, up to --settle-timeout)",
        },
    ),
    (
        "--settle-timeout",
        "settle_timeout",
        {"type": float, "metavar": "S", "help": "longest settle wait in seconds"},
    ),
)


def env_options(*, env_help: str | None = None) -> argparse.ArgumentParser:
    """The environment options; ``--env`` is required unless ``env_help`` says what it defaults to."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("environment")
    if env_help is None:
        g.add_argument("--env", choices=ENV_NAMES, required=True, help="where to act")
    else:
        g.add_argument("--env", choices=ENV_NAMES, default=argparse.SUPPRESS, help=env_help)
    for flag, dest, kwargs in ENVIRONMENT_OPTIONS:
        _add(g, flag, dest=dest, **kwargs)
    return p


def loop_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("episode")
    _add(g, "--max-steps", dest="max_steps", type=positive_int, metavar="N", help="step budget")
    _add(g, "--max-seconds", dest="max_seconds", type=float, metavar="S", help="time budget per episode")
    _add(
        g,
        "--max-failed-steps",
        dest="max_failed_steps",
        type=positive_int,
        metavar="N",
        help="consecutive failed steps allowed",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings the parsed command line gives: the options that were typed, the defaults for the rest.
    Raises :class:`~screenpilot.settings.SettingsError` (a usage error) listing every bad value."""
    given = {name: value for name, value in vars(args).items() if name in Settings.model_fields}
    return Settings.from_options(given)
