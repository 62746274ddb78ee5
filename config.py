"""Settings: read once from the environment (and a ``.env`` file), typed and validated.

This is the one place that reads settings. pydantic-settings reads and types them; a bad
value raises ``ConfigError``, one line naming the variable and what is allowed, which
``main.py`` prints before it exits.
"""

from __future__ import annotations

import ipaddress
import os
import re
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import annotated_types
from dotenv import load_dotenv
from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from generation.samplers import SAMPLER_NAMES  # torch-free
from generation.styles import StyleBook, StylesError, load_styles

OFFICIAL_BOT_API = "https://api.telegram.org"
DEFAULT_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
DEFAULT_DECODER = "kandinsky-community/kandinsky-2-2-decoder"
DEFAULT_TRANSLATION_MODEL = "Helsinki-NLP/opus-mt-ru-en"  # generation.translation's default too
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
CompileMode = Literal["auto", "off", "default", "cudagraphs"]
DTYPES: tuple[str, ...] = typing.get_args(Dtype)
LOG_LEVELS: tuple[str, ...] = typing.get_args(LogLevel)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# The routes of the HTTP API (bot/web/api.py): a webhook on one of these would never see an update.
HTTP_API_PATHS = ("/", "/health", "/generate", "/img2img", "/variations", "/mix", "/upscale", "/reload", "/metrics")
# Telegram's secret_token is 1-256 of these characters; a guessable short one is refused.
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,256}")
TILE = 64  # Kandinsky's MoVQ works in 64-pixel tiles
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Side = Annotated[int, Field(ge=64, multiple_of=TILE)]  # and at most MAX_SIDE
Guidance = Annotated[float, Field(ge=0.0, le=20.0, allow_inf_nan=False)]


class ConfigError(ValueError):
    """A setting is missing or has a value that is not allowed."""


class Settings(BaseSettings):
    """Every setting, named as its environment variable in lower case (API_TOKENS aside)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        enable_decoding=False,  # lists are comma-separated, not JSON: our validators split them
        hide_input_in_errors=True,  # pydantic's own error text never shows a secret
    )

    bot_token: SecretStr = Field(default=SecretStr(""), repr=False)  # never printed or logged
    telegram_api_url: str = OFFICIAL_BOT_API
    prior_model: str = DEFAULT_PRIOR
    decoder_model: str = DEFAULT_DECODER
    device: str = "auto"
    dtype: Dtype = "auto"
    cpu_offload: bool = False
    compile: CompileMode = "auto"  # COMPILE: auto, false ("off"), true ("default") or cudagraphs
    admin_ids: frozenset[int] = frozenset()
    default_width: Side = 768
    default_height: Side = 768
    default_steps: Annotated[int, Field(ge=1)] = 50  # and at most MAX_STEPS
    default_guidance: Guidance = 4.0
    default_prior_guidance: Guidance = 1.0
    # img2img: how much of the starting picture may change (0.05 to 1.0).
    default_strength: Annotated[float, Field(ge=0.05, le=1.0, allow_inf_nan=False)] = 0.5
    # The decoder's sampler when a request names none (generation/samplers.py).
    default_sampler: str = "ddpm"
    # UnCLIPScheduler divides by (steps - 1): one prior step raises ZeroDivisionError.
    prior_steps: Annotated[int, Field(ge=2, le=200)] = 25
    max_side: Annotated[int, Field(ge=64, le=4096, multiple_of=TILE)] = 1024
    # The "Upscale 2x" button, POST /upscale and `main.py upscale`: the longest side an
    # upscale may reach, and how much img2img may change the enlarged picture.
    max_upscale_side: Annotated[int, Field(ge=64, le=4096, multiple_of=TILE)] = 2048
    upscale_strength: Annotated[float, Field(ge=0.05, le=1.0, allow_inf_nan=False)] = 0.3
    # The decoder's DDPM schedule has 1000 training steps with steps_offset=1: 1000 inference
    # steps ask for timestep 1000 and fail with IndexError, 999 work.
    max_steps: Annotated[int, Field(ge=1, le=999)] = 100
    max_batch: Annotated[int, Field(ge=1, le=64)] = 8
    max_queue: Annotated[int, Field(ge=1)] = 100
    max_pending_per_user: Annotated[int, Field(ge=1)] = 3
    progress_interval_s: Annotated[float, Field(ge=0.1, le=60.0, allow_inf_nan=False)] = 2.0
    log_level: LogLevel = "INFO"
    data_dir: str = "./data"
    shutdown_grace_s: Annotated[float, Field(ge=0.0, le=3600.0, allow_inf_nan=False)] = 30.0
    allowed_user_ids: frozenset[int] = frozenset()
    allowed_chat_ids: frozenset[int] = frozenset()
    rate_limit_per_min: Annotated[int, Field(ge=0)] = 10
    max_prompt_chars: Annotated[int, Field(ge=1, le=4096)] = 1000
    http_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    http_host: str = "127.0.0.1"
    api_token: SecretStr = Field(default=SecretStr(""), repr=False)
    # API_TOKENS: more tokens, one per client (the HTTP API tells clients apart by token).
    extra_api_tokens: tuple[SecretStr, ...] = Field(default=(), validation_alias="API_TOKENS", repr=False)
    trusted_proxies: tuple[IpNetwork, ...] = ()
    webhook_url: str = ""
    webhook_secret: SecretStr = Field(default=SecretStr(""), repr=False)
    # Russian prompts: auto translates a text with Cyrillic letters to English before drawing.
    translate: Literal["auto", "off"] = "auto"
    translation_model: str = DEFAULT_TRANSLATION_MODEL
    # TOML or JSON file of --style templates, added to the built-in ones (generation/styles.toml).
    styles_file: str = ""
    # Several replicas sharing one PostgreSQL database (postgresql://user:pass@host/db);
    # unset: SQLite files under DATA_DIR, one process. Never printed or logged.
    database_url: SecretStr | None = Field(default=None, repr=False)
    # With DATABASE_URL: seconds a replica's claim on a job lasts unless it renews it
    # (it does while drawing); a replica that died loses its jobs to others after this.
    job_lease_s: Annotated[int, Field(ge=2, le=3600)] = 30
    _styles: StyleBook = PrivateAttr(default_factory=StyleBook)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values come only from the mapping settings_from_env reads (os.environ in production,
        # after load_settings put .env in it), so that a test's dict is all there is.
        return (init_settings,)

    @property
    def styles(self) -> StyleBook:
        """The built-in styles and STYLES_FILE's, read once when the settings were checked."""
        return self._styles

    @property
    def webhook_path(self) -> str:
        """The path part of WEBHOOK_URL, served on the bot's own HTTP server."""
        return urlsplit(self.webhook_url).path or "/webhook"

    @property
    def default_pixels(self) -> int:
        return self.default_width * self.default_height

    @property
    def api_tokens(self) -> tuple[str, ...]:
        """API_TOKEN and API_TOKENS together, as plain text; empty: the HTTP API needs none."""
        tokens = (self.api_token, *self.extra_api_tokens)
        return tuple(dict.fromkeys(t.get_secret_value() for t in tokens if t.get_secret_value()))

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every secret's plain value, for redacting them from logs."""
        plain = (
            self.bot_token.get_secret_value(),
            *self.api_tokens,
            self.webhook_secret.get_secret_value(),
            *self.database_secrets,
        )
        return tuple(s for s in plain if s)

    @property
    def database_secrets(self) -> tuple[str, ...]:
        """DATABASE_URL's password, as written and decoded (psycopg's errors may show either)."""
        if self.database_url is None:
            return ()
        return _url_passwords(self.database_url.get_secret_value())

    # --- one value at a time ---

    @field_validator("bot_token", mode="before")
    @classmethod
    def _bot_token(cls, value: Any) -> Any:
        if isinstance(value, str) and value and (":" not in value or any(c.isspace() for c in value)):
            raise ConfigError("BOT_TOKEN does not look like a bot token (expected 123456:ABC...)")
        return value

    @field_validator("telegram_api_url", mode="before")
    @classmethod
    def _api_url(cls, value: Any) -> Any:
        url = str(value).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"TELEGRAM_API_URL must start with http:// or https://, got {_shown(url)}")
        try:
            port = parts.port  # ValueError when out of 0-65535 or not a number
        except ValueError:
            port = 0
        if not parts.hostname or port == 0:
            raise ConfigError(
                f"TELEGRAM_API_URL must be http(s)://HOST or http(s)://HOST:PORT with a port from 1 to 65535, "
                f"got {_shown(url)}"
            )
        return url

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, value: Any) -> Any:
        raw = str(value).lower()
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if raw in ("auto", "cpu", "cuda", "all"):
            return raw
        if parts and all(p == "cuda" or (p.startswith("cuda:") and p[5:].isdigit()) for p in parts):
            return ",".join(parts)
        raise ConfigError(
            "DEVICE must be auto, cpu, cuda, cuda:N, a comma-separated list such as cuda:0,cuda:1, or all; "
            f"got {_shown(value)}"
        )

    @field_validator("dtype", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cpu_offload", mode="before")
    @classmethod
    def _bool(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in (*_TRUE, *_FALSE):
            return value.lower() in _TRUE
        return value  # anything else fails as bool_parsing, reported as "must be true or false"

    @field_validator("compile", mode="before")
    @classmethod
    def _compile(cls, value: Any) -> Any:
        """auto (CUDA graphs on a GPU, nothing on the CPU), false, true (Inductor's default
        mode) or cudagraphs (also CUDA graphs)."""
        raw = str(value).lower()
        if raw in ("auto", "cudagraphs", "off", "default"):
            return raw
        if raw in _TRUE or raw in _FALSE:
            return "default" if raw in _TRUE else "off"
        raise ConfigError(f"COMPILE must be auto, false, true or cudagraphs, got {_shown(value)}")

    @field_validator("default_sampler", mode="before")
    @classmethod
    def _sampler(cls, value: Any) -> Any:
        name = str(value).strip().lower()
        if name not in SAMPLER_NAMES:
            raise ConfigError(f"DEFAULT_SAMPLER must be one of {', '.join(SAMPLER_NAMES)}, got {_shown(value)}")
        return name

    @field_validator("translate", mode="before")
    @classmethod
    def _translate(cls, value: Any) -> Any:
        raw = str(value).lower()
        if raw in ("auto", "off"):
            return raw
        if raw in _TRUE or raw in _FALSE:
            return "auto" if raw in _TRUE else "off"
        raise ConfigError(f"TRANSLATE must be auto or off, got {_shown(value)}")

    @field_validator("admin_ids", "allowed_user_ids", "allowed_chat_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        ids: set[int] = set()
        for part in _split(value):
            try:
                ids.add(int(part))
            except ValueError:
                raise ConfigError(
                    f"{info.field_name.upper()} must be comma-separated Telegram ids (numbers), got {_shown(part)}"
                ) from None
        return frozenset(ids)

    @field_validator("extra_api_tokens", mode="before")
    @classmethod
    def _api_tokens(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        tokens = _split(value, separators=",")
        if any(c.isspace() for token in tokens for c in token):
            raise ConfigError("API_TOKENS must be comma-separated tokens without spaces")
        return tuple(tokens)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        networks = []
        for part in _split(value, separators=","):
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(
                    "TRUSTED_PROXIES must be comma-separated IP addresses or networks"
                    f" (such as 10.0.0.5, 172.16.0.0/12), got {_shown(part)}"
                ) from None
        return tuple(networks)

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value: Any) -> Any:
        if isinstance(value, str) and value and not WEBHOOK_SECRET_PATTERN.fullmatch(value):
            raise ConfigError(_WEBHOOK_SECRET_RULE)
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or not str(value).strip():
            return None
        url = str(value).strip()
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in ("postgresql", "postgres"):
            # The value is never repeated: it may hold a password.
            raise ConfigError(
                "DATABASE_URL must be a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
                " (leave it unset for SQLite under DATA_DIR)"
            )
        return url

    # --- values that depend on each other ---

    @model_validator(mode="after")
    def _together(self) -> Settings:
        for name in ("default_width", "default_height"):
            if getattr(self, name) > self.max_side:
                raise ConfigError(
                    f"{name.upper()} must be between 64 and {self.max_side} (MAX_SIDE), got {getattr(self, name)}"
                )
        if self.default_steps > self.max_steps:
            raise ConfigError(
                f"DEFAULT_STEPS must be between 1 and {self.max_steps} (MAX_STEPS), got {self.default_steps}"
            )
        self._check_http()
        try:  # read now: a bad file stops the start, naming its line
            self._styles = load_styles(self.styles_file or None)
        except StylesError as exc:
            raise ConfigError(str(exc)) from None
        return self

    def _check_http(self) -> None:
        """HTTP API and webhook settings, checked together: they share one server."""
        host = self.http_host
        if self.http_port is not None and host not in LOCAL_HOSTS and not self.api_tokens:
            raise ConfigError(
                f"API_TOKEN is required when HTTP_HOST={host} makes the HTTP API reachable from other machines"
                " (or API_TOKENS, one token per client)"
            )
        if not self.webhook_url:
            return
        if not self.webhook_url.startswith("https://"):
            raise ConfigError(
                f"WEBHOOK_URL must be an https:// address Telegram can reach, got {_shown(self.webhook_url)}"
            )
        if self.http_port is None:
            raise ConfigError("WEBHOOK_URL needs HTTP_PORT: the webhook is served on the bot's own HTTP server")
        if not self.webhook_secret.get_secret_value():
            raise ConfigError(f"WEBHOOK_SECRET is required with WEBHOOK_URL, else anyone can post updates: {_RULE}")
        path = self.webhook_path.rstrip("/") or "/"
        if path in HTTP_API_PATHS:
            raise ConfigError(
                f"WEBHOOK_URL's path {path} is a route of the HTTP API ({', '.join(HTTP_API_PATHS)}); "
                "use another path, such as /telegram/webhook"
            )


def _url_passwords(url: str) -> tuple[str, ...]:
    """The password of a postgresql:// URL (userinfo or ?password=), raw and %-decoded."""
    found: list[str] = []
    userinfo = urlsplit(url).netloc.rpartition("@")
    if userinfo[1]:
        _, colon, password = userinfo[0].partition(":")
        if colon and password:
            found.append(password)
    found += re.findall(r"[?&]password=([^&#]+)", url)
    return tuple(dict.fromkeys(v for p in found for v in (p, unquote(p)) if v))


_RULE = "16 to 256 characters, each a letter A-Z or a-z, a digit, _ or -"
_WEBHOOK_SECRET_RULE = f"WEBHOOK_SECRET must be {_RULE}"


class EnvironmentMapping(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ.
    Values are stripped of spaces; an empty one counts as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = {name: value.strip() for name, value in env.items() if value is not None and value.strip()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._env if self.case_sensitive else {name.lower(): value for name, value in self._env.items()}


def settings_from_env(env: Mapping[str, str], *, require_token: bool = True) -> Settings:
    """Build validated settings from a mapping of environment variables.

    ``require_token=False`` is for commands that never talk to Telegram (draw, prefetch)."""
    if require_token and not (env.get("BOT_TOKEN") or "").strip():
        raise ConfigError(
            "BOT_TOKEN is required: put the token @BotFather gave your bot after BOT_TOKEN= in .env,"
            " or run BOT_TOKEN=123456:ABC... .venv/bin/python main.py"
        )
    try:
        return Settings(**EnvironmentMapping(Settings, env)())
    except ValidationError as exc:
        raise _one_line(exc) from None


def load_settings(env_file: str | None = ".env", *, require_token: bool = True) -> Settings:
    """Read ``.env`` (without overriding real environment variables), then the environment.
    ``.env`` goes into os.environ so that libraries see its HF_HOME and the like too."""
    if env_file:
        load_dotenv(env_file, override=False)
    return settings_from_env(os.environ, require_token=require_token)


# --- pydantic's errors, as one line naming the variable ---


def _one_line(exc: ValidationError) -> ConfigError:
    """The first error, said as our other messages are: the variable, what is allowed, the value."""
    error = exc.errors(include_url=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # our own validators' words
        return ConfigError(str(cause))
    field_name = str(error["loc"][0]) if error["loc"] else ""
    field = Settings.model_fields.get(field_name) or next(
        (f for f in Settings.model_fields.values() if f.validation_alias == field_name), None
    )
    name = _env_name(field_name, field)
    kind = error["type"]
    secret = field is not None and SecretStr in _types(field.annotation)
    got = "" if secret else f", got {_shown(error['input'])}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return ConfigError(f"{name} must be an integer{got}")
    if kind in ("float_parsing", "float_type"):
        return ConfigError(f"{name} must be a number{got}")
    if kind in ("bool_parsing", "bool_type"):
        return ConfigError(f"{name} must be true or false{got}")
    if kind == "multiple_of":
        return ConfigError(
            f"{name} must be a multiple of {error['ctx']['multiple_of']} (Kandinsky works in 64-pixel tiles){got}"
        )
    if kind == "literal_error" and field is not None:
        return ConfigError(f"{name} must be one of {', '.join(typing.get_args(field.annotation))}; {got[2:]}")
    if kind in ("greater_than_equal", "less_than_equal", "finite_number", "int_parsing_size") and field is not None:
        lo, hi = _bounds(field)
        number = "a number " if kind == "finite_number" else ""
        if hi is None:
            return ConfigError(f"{name} must be {number}{lo} or more{got}")
        return ConfigError(f"{name} must be {number}between {lo} and {hi}{got}")
    message = error["msg"].splitlines()[0] if error["msg"] else kind
    return ConfigError(f"{name}: {message}{got}")


def _env_name(field_name: str, field: FieldInfo | None) -> str:
    alias = field.validation_alias if field is not None else None
    return (alias if isinstance(alias, str) else field_name).upper()


def _types(annotation: Any) -> set[Any]:
    """The annotation and what it is made of (Annotated, unions, tuples)."""
    found = {annotation}
    for arg in typing.get_args(annotation):
        found |= _types(arg)
    return found


def _bounds(field: FieldInfo) -> tuple[Any, Any]:
    """A number setting's allowed range, from its Field(ge=..., le=...)."""
    metadata = list(field.metadata)
    for part in _types(field.annotation):
        metadata += getattr(part, "__metadata__", ())
        metadata += getattr(part, "metadata", ())
    lo = next((m.ge for m in metadata if isinstance(m, annotated_types.Ge)), None)
    hi = next((m.le for m in metadata if isinstance(m, annotated_types.Le)), None)
    return lo, hi


def _split(raw: str, separators: str = ",;") -> list[str]:
    for separator in separators[1:]:
        raw = raw.replace(separator, separators[0])
    return [part.strip() for part in raw.split(separators[0]) if part.strip()]


def _shown(value: Any, limit: int = 60) -> str:
    """A value as the error repeats it: quoted, and short (a pasted file stays one line)."""
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 4] + "...'"
