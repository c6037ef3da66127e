"""The one place where concrete environments, model backends and dialects are chosen from :class:`Settings`."""

from __future__ import annotations

from collections.abc import Callable

from screenpilot.actions.coords import Size
from screenpilot.envs.base import Environment
from screenpilot.envs.settle import SettleResult
from screenpilot.errors import MissingExtraError, SetupError
from screenpilot.model.base import CHECK_TIMEOUT_S, HasModelType, ModelBackend, SupportsCheck
from screenpilot.model.dialect import Dialect, Platform, SupportsImageTokens
from screenpilot.settings import DEFAULT_MODEL, ENV_NAMES, Settings

__all__ = [
    "DEFAULT_MODEL",
    "ENV_NAMES",
    "build_env",
    "build_model",
    "dialect_name",
    "make_dialect",
    "make_settle",
]

DEFAULT_SANDBOX_SIZE = Size(1280, 800)
DEFAULT_FAKE_SIZE = Size(1080, 2400)

Settle = Callable[[Environment], SettleResult | None]


def _missing(exc: ImportError, extra: str, purpose: str) -> SetupError:
    if isinstance(exc, MissingExtraError):
        return exc
    name = getattr(exc, "name", None) or str(exc)
    return MissingExtraError(extra, name, purpose)


def build_env(settings: Settings, *, serial: str | None = None, app: str | None = None) -> Environment:
    """The environment ``settings.env`` names. ``serial`` and ``app`` override the settings' own (a bench
    worker's device, a task's app)."""
    name = settings.env
    if name == "fake":
        from screenpilot.envs.fake import FakeEnv

        return FakeEnv(settings.screen_size or DEFAULT_FAKE_SIZE)
    if name == "android":
        try:
            from screenpilot.envs.android import AndroidEnv
        except ImportError as exc:
            raise _missing(exc, "android", "--env android") from exc
        if serial is None and len(settings.serial) > 1:
            raise SetupError("screenpilot run takes one --serial; several are for screenpilot bench")
        return AndroidEnv(serial=serial or (settings.serial[0] if settings.serial else None))
    if name == "desktop":
        try:
            from screenpilot.envs.desktop import DesktopEnv
        except ImportError as exc:
            raise _missing(exc, "desktop", "--env desktop") from exc
        return DesktopEnv(monitor=settings.monitor or 1)
    if name == "sandbox":
        try:
            from screenpilot.envs.desktop import SandboxEnv
        except ImportError as exc:
            raise _missing(exc, "desktop", "--env sandbox") from exc
        return SandboxEnv(size=settings.screen_size or DEFAULT_SANDBOX_SIZE, app=app or settings.app)
    raise SetupError(f"choose an environment with --env: one of {', '.join(ENV_NAMES)}")


def build_model(settings: Settings, *, check: bool = True) -> ModelBackend:
    """The model backend ``settings.model`` names: ``replay:FILE``, a server URL, or a local model. With
    ``check`` (the default) a backend that can check itself does so at once, so a dead server, a model it does
    not serve or a model that is not on disk fails here in a couple of seconds with what to do, before any
    episode starts."""
    model = _backend(settings)
    try:
        check_dialect(settings, model)
        if check and isinstance(model, SupportsCheck):
            model.check(CHECK_TIMEOUT_S)
    except BaseException:
        model.close()
        raise
    return model


def check_dialect(settings: Settings, model: ModelBackend | None = None) -> None:
    """Build the run's dialect for both platforms and a common screen, so options it cannot honour (pixel
    limits that cross, an option the model family has no use for) are a SetupError before anything starts."""
    for platform in ("mobile", "desktop"):
        dialect = make_dialect(settings, platform, model=model)
        try:
            dialect.coordinate_space(DEFAULT_SANDBOX_SIZE)
        except ValueError as exc:
            raise SetupError(f"{dialect_name(settings, model)}: {exc}") from None


def _backend(settings: Settings) -> ModelBackend:
    from screenpilot.model.spec import parse_model_spec

    spec = parse_model_spec(settings.model)
    if spec.kind == "replay":
        from screenpilot.model.replay import ReplayModel

        return ReplayModel.from_path(spec.target)
    if spec.kind == "server":
        try:
            from screenpilot.model.openai_backend import OpenAIBackend
        except ImportError as exc:
            raise _missing(exc, "server", "an OpenAI-compatible server model") from exc
        dialect = make_dialect(settings, "mobile")  # its image size rule is the same on every platform
        backend = OpenAIBackend(
            spec.target,
            served_model=settings.served_model,
            api_key=settings.api_key_value,
            max_tokens=settings.max_new_tokens,
            request_timeout_s=settings.request_timeout,
        )
        if isinstance(dialect, SupportsImageTokens):  # refuse a server that resizes the image again
            backend.expect_image_tokens(dialect)
        return backend
    try:
        from screenpilot.model.transformers_backend import TransformersBackend
    except ImportError as exc:
        raise _missing(exc, "local", "a local transformers model") from exc
    return TransformersBackend(
        spec.target,
        device=settings.device,
        dtype=settings.dtype,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        max_new_tokens=settings.max_new_tokens,
        # Unset, the backend picks (a static cache with CUDA graphs on one GPU); given, it is followed.
        **(
            {"cache_implementation": settings.cache_implementation}
            if "cache_implementation" in settings.model_fields_set
            else {}
        ),
    )


def dialect_name(settings: Settings, model: ModelBackend | None = None) -> str:
    """The dialect a run speaks: ``--dialect`` when given, else the one a local checkpoint was trained on (its
    ``config.json`` ``model_type``), else the default (Qwen2.5-VL, also for servers)."""
    from screenpilot.model.dialects import DEFAULT_DIALECT, dialect_for_model_type

    if settings.dialect:
        return settings.dialect
    if isinstance(model, HasModelType):
        return dialect_for_model_type(model.model_type) or DEFAULT_DIALECT
    return DEFAULT_DIALECT


def make_dialect(settings: Settings, platform: Platform, *, model: ModelBackend | None = None) -> Dialect:
    """The dialect the settings (and a local ``model``'s checkpoint) choose, for a phone (``mobile``) or a
    desktop screen: the one place a dialect is picked."""
    from screenpilot.model.dialects import make_dialect as dialect_named

    return dialect_named(dialect_name(settings, model), platform, **settings.dialect_options())


def make_settle(settings: Settings) -> Settle | None:
    """The loop's settle hook: the environment's own ``settle`` (a faster capture path) where it has one,
    else polling its observations until they stop changing; ``None`` with ``settle=False``. The stable frame
    it returns is the loop's next observation."""
    if not settings.settle:
        return None
    from screenpilot.envs.settle import SupportsSettle, observe_until_stable

    timeout = settings.settle_timeout

    def settle(env: Environment) -> SettleResult:
        if isinstance(env, SupportsSettle):
            return env.settle(timeout_s=timeout)
        return observe_until_stable(env.observe, timeout_s=timeout)

    return settle
