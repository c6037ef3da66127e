"""One typed value for everything a run is configured with.

The command line and the Python API both fill a :class:`Settings` (the field names are the command-line
options' names, ``--max-pixels`` is ``max_pixels``), and ``screenpilot.cli.wiring`` turns it into concrete
environments, model backends and dialects. Every check of a setting lives here, so a bad value is the same
one-line usage error wherever it comes from, before anything starts.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from screenpilot.actions.coords import QWEN_MAX_RATIO, QWEN_MIN_PIXELS, Size
from screenpilot.errors import SetupError
from screenpilot.model.dialects import DIALECT_NAMES
from screenpilot.model.spec import redact_url

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
EnvName = Literal["android", "desktop", "sandbox", "fake"]
ENV_NAMES: tuple[str, ...] = get_args(EnvName)

#: The longest side a virtual screen may have: 8K (7680x4320) fits; 100000x100000 would need tens of GB.
MAX_SCREEN_SIDE = 8192
#: The smallest side a virtual screen may have (a window manager-less Tk app needs some room).
MIN_SCREEN_SIDE = 64
#: The pixel cap below which no phone or desktop aspect ratio (up to 4:1) can be shown to the model.
MIN_MAX_PIXELS = QWEN_MIN_PIXELS
#: The longest settle wait accepted, in seconds.
MAX_SETTLE_TIMEOUT = 600.0

#: Which environments use which environment options (anything else given is a usage error, never ignored).
ENV_OPTIONS: dict[str, tuple[str, ...]] = {
    "serial": ("android",),
    "monitor": ("desktop",),
    "app": ("sandbox",),
    "screen_size": ("sandbox", "fake"),
}


class SettingsError(SetupError):
    """One or more settings are invalid; the message names each option and what is wrong with it."""


def option_name(field: str) -> str:
    """The command-line spelling of a settings field: ``max_pixels`` -> ``--max-pixels``."""
    return "--" + field.replace("_", "-")


def _env_api_key() -> SecretStr | None:
    value = os.environ.get("OPENAI_API_KEY")
    return SecretStr(value) if value else None


class Settings(BaseModel):
    """Every setting of a run: model, dialect, environment and episode budget.

    Construct it with keyword arguments named like the command-line options (``Settings(env="sandbox",
    max_steps=10)``) or with :meth:`from_options`, which turns every problem into one :class:`SettingsError`.
    ``model_fields_set`` tells which options were given explicitly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    # -- model --------------------------------------------------------------------------------------------------
    model: str = Field(DEFAULT_MODEL, min_length=1)
    served_model: str | None = None
    api_key: SecretStr | None = Field(default_factory=_env_api_key, repr=False)
    request_timeout: float = Field(120.0, gt=0, le=3600)
    device: str | None = None
    dtype: str | None = None
    max_new_tokens: int = Field(256, ge=1, le=65536)
    cache_implementation: Literal["dynamic", "static"] = "dynamic"
    # -- dialect ------------------------------------------------------------------------------------------------
    dialect: str | None = None
    """The model family's prompt and output format (``--dialect``); None: from the model, else qwen2.5-vl."""
    min_pixels: int | None = Field(None, ge=1)
    """The image pixel floor; None: the dialect's own (the model's processor default)."""
    max_pixels: int | None = Field(None, ge=MIN_MAX_PIXELS)
    """The image pixel cap; None: the dialect's own."""
    answer_action: bool = False
    reasoning: bool = False
    keep_images: int = Field(0, ge=0)
    max_retries: int = Field(2, ge=0)
    # -- environment --------------------------------------------------------------------------------------------
    env: EnvName | None = None
    serial: tuple[str, ...] = ()
    monitor: int | None = Field(None, ge=1)
    screen_size: Size | None = None
    app: str | None = None
    settle: bool = True
    settle_timeout: float = Field(3.0, ge=0, le=MAX_SETTLE_TIMEOUT)
    # -- episode ------------------------------------------------------------------------------------------------
    max_steps: int = Field(30, ge=1)
    max_seconds: float | None = Field(None, gt=0)
    max_failed_steps: int = Field(3, ge=1)

    @field_validator("screen_size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        if isinstance(value, str):
            return Size.parse(value)
        return value

    @field_validator("screen_size")
    @classmethod
    def _sane_size(cls, value: Size | None) -> Size | None:
        if value is None:
            return None
        if max(value) > MAX_SCREEN_SIDE or min(value) < MIN_SCREEN_SIDE:
            raise ValueError(
                f"{value} is out of range: each side must be {MIN_SCREEN_SIDE} to {MAX_SCREEN_SIDE} pixels"
            )
        if max(value) / min(value) > QWEN_MAX_RATIO:
            raise ValueError(f"{value} is too elongated to show to the model (ratio above {QWEN_MAX_RATIO})")
        return value

    @field_validator("serial", mode="before")
    @classmethod
    def _serials(cls, value: Any) -> Any:
        serials = (value,) if isinstance(value, str) else () if value is None else tuple(value)
        repeated = sorted({s for s in serials if serials.count(s) > 1})
        if repeated:  # two workers on one phone would tap over each other
            raise ValueError(f"{', '.join(repeated)} given more than once; name each phone once")
        return serials

    @field_validator("dialect")
    @classmethod
    def _known_dialect(cls, value: str | None) -> str | None:
        if value is not None and value not in DIALECT_NAMES:
            raise ValueError(f"unknown dialect; choose one of {', '.join(DIALECT_NAMES)}")
        return value

    @field_validator("model", "app", "served_model")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(
                f"--min-pixels ({self.min_pixels}) is larger than --max-pixels ({self.max_pixels})"
            )
        wrong = [
            f"{option_name(name)} applies only to --env {' or '.join(envs)}"
            for name, envs in ENV_OPTIONS.items()
            if name in self.model_fields_set
            and getattr(self, name) not in (None, ())
            and self.env not in envs
        ]
        if wrong:
            raise ValueError("; ".join(wrong) + (f", not --env {self.env}" if self.env else ""))
        return self

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Settings:
        """Build settings from options named like the command line's, or raise one :class:`SettingsError`
        that lists every problem (unknown names get a suggestion)."""
        unknown = [name for name in options if name not in cls.model_fields]
        if unknown:
            raise SettingsError("; ".join(_unknown(name) for name in unknown))
        try:
            return cls(**options)
        except ValidationError as exc:
            raise SettingsError(describe_errors(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated like any other settings."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self).from_options({**given, **changes})

    # -- reading ------------------------------------------------------------------------------------------------
    @property
    def api_key_value(self) -> str | None:
        """The API key itself, for the backend that sends it (never recorded: see :meth:`describe`)."""
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def dialect_options(self) -> dict[str, Any]:
        """The keyword arguments every dialect takes; pixel limits only when given (else the dialect's own)."""
        options: dict[str, Any] = {
            "answer_action": self.answer_action,
            "reasoning": self.reasoning,
            "keep_images": self.keep_images,
        }
        if self.min_pixels is not None:
            options["min_pixels"] = self.min_pixels
        if self.max_pixels is not None:
            options["max_pixels"] = self.max_pixels
        return options

    def describe(self) -> dict[str, Any]:
        """Everything worth recording about these settings, as JSON-ready values; secrets are left out."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        data["api_key"] = "REDACTED" if self.api_key is not None else None
        data["model"] = redact_url(self.model)
        return data


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(Settings.model_fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown option {name!r}{hint}"


_PLAIN = (
    ("Input should be greater than or equal to", "must be at least"),
    ("Input should be less than or equal to", "must be at most"),
    ("Input should be greater than", "must be more than"),
    ("Input should be less than", "must be less than"),
    ("Input should be a valid", "must be a valid"),
    ("Input should be", "must be"),
)


def _plain(message: str) -> str:
    """pydantic's wording, said as a command-line tool says it."""
    for theirs, ours in _PLAIN:
        if message.startswith(theirs):
            return ours + message.removeprefix(theirs)
    return message


def describe_errors(exc: ValidationError) -> str:
    """One line for all of a validation's problems, each led by the option it concerns."""
    parts = []
    for error in exc.errors():
        where = error["loc"][0] if error["loc"] else None
        message = _plain(str(error["msg"]).removeprefix("Value error, "))
        if isinstance(where, str):
            given = error.get("input")
            plain = isinstance(given, str | int | float) and not isinstance(given, bool)
            shown = f" {given}" if plain and where != "api_key" else ""
            parts.append(f"{option_name(where)}{shown}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)
