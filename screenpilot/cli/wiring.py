"""The one place where concrete environments and model backends are chosen from command-line values."""

from __future__ import annotations

import argparse
from typing import Any

from screenpilot.actions.coords import Size
from screenpilot.envs.base import Environment
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import ModelBackend

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
ENV_NAMES = ("android", "desktop", "sandbox", "fake")


def _missing(exc: ImportError, extra: str, purpose: str) -> SetupError:
    if isinstance(exc, MissingExtraError):
        return exc
    name = getattr(exc, "name", None) or str(exc)
    return MissingExtraError(extra, name, purpose)


def build_env(args: argparse.Namespace) -> Environment:
    name = args.env
    if name == "fake":
        from screenpilot.envs.fake import FakeEnv

        return FakeEnv(args.screen_size or Size(1080, 2400))
    if name == "android":
        try:
            from screenpilot.envs.android import AndroidEnv
        except ImportError as exc:
            raise _missing(exc, "android", "--env android") from exc
        serials = args.serial or []
        if len(serials) > 1:
            raise SetupError("screenpilot run takes one --serial; several are for screenpilot bench")
        return AndroidEnv(serial=serials[0] if serials else None)
    if name == "desktop":
        try:
            from screenpilot.envs.desktop import DesktopEnv
        except ImportError as exc:
            raise _missing(exc, "desktop", "--env desktop") from exc
        return DesktopEnv(monitor=args.monitor)
    if name == "sandbox":
        try:
            from screenpilot.envs.desktop import SandboxEnv
        except ImportError as exc:
            raise _missing(exc, "desktop", "--env sandbox") from exc
        size = args.screen_size or Size(1280, 800)
        return SandboxEnv(size=size, app=args.app)
    raise SetupError(f"unknown environment {name!r}; choose one of {', '.join(ENV_NAMES)}")


def build_model(args: argparse.Namespace) -> ModelBackend:
    spec: str = args.model
    if spec.startswith("replay:"):
        from screenpilot.model.replay import ReplayModel

        return ReplayModel.from_path(spec.removeprefix("replay:"))
    if spec.startswith(("http://", "https://")):
        try:
            from screenpilot.model.openai_backend import OpenAIBackend
        except ImportError as exc:
            raise _missing(exc, "server", "an OpenAI-compatible server model") from exc
        return OpenAIBackend(
            spec,
            served_model=args.served_model,
            api_key=args.api_key,
            max_tokens=args.max_new_tokens,
        )
    try:
        from screenpilot.model.transformers_backend import TransformersBackend
    except ImportError as exc:
        raise _missing(exc, "local", "a local transformers model") from exc
    return TransformersBackend(
        spec,
        device=args.device,
        dtype=args.dtype,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        max_new_tokens=args.max_new_tokens,
        **({"cache_implementation": "static"} if args.cache_implementation == "static" else {}),
    )


def dialect_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "min_pixels": args.min_pixels,
        "max_pixels": args.max_pixels,
        "answer_action": args.answer_action,
        "reasoning": args.reasoning,
        "keep_images": args.keep_images,
    }
