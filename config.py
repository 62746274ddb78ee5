"""Settings: read once from the environment (and a ``.env`` file), typed and validated.

This is the one place that reads settings. A bad value raises ``ConfigError`` naming the
variable and what is allowed; ``main.py`` prints it and exits.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import load_dotenv

OFFICIAL_BOT_API = "https://api.telegram.org"
DEFAULT_PRIOR = "kandinsky-community/kandinsky-2-2-prior"
DEFAULT_DECODER = "kandinsky-community/kandinsky-2-2-decoder"
DTYPES = ("auto", "float16", "bfloat16", "float32")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or has a value that is not allowed."""


@dataclass(frozen=True)
class Settings:
    bot_token: str = field(repr=False)  # never printed or logged
    telegram_api_url: str = OFFICIAL_BOT_API
    prior_model: str = DEFAULT_PRIOR
    decoder_model: str = DEFAULT_DECODER
    device: str = "auto"
    dtype: str = "auto"
    cpu_offload: bool = False
    compile: str = "auto"  # "auto", "off", "default" (COMPILE=true) or "cudagraphs"
    admin_ids: frozenset[int] = frozenset()
    default_width: int = 768
    default_height: int = 768
    default_steps: int = 50
    default_guidance: float = 4.0
    default_prior_guidance: float = 1.0
    prior_steps: int = 25
    max_side: int = 1024
    max_steps: int = 100
    max_batch: int = 8
    max_queue: int = 100
    max_pending_per_user: int = 3
    progress_interval_s: float = 2.0
    log_level: str = "INFO"
    data_dir: str = "./data"
    shutdown_grace_s: float = 30.0
    allowed_user_ids: frozenset[int] = frozenset()
    allowed_chat_ids: frozenset[int] = frozenset()
    rate_limit_per_min: int = 10
    max_prompt_chars: int = 1000
    http_port: int | None = None
    http_host: str = "127.0.0.1"
    api_token: str = field(default="", repr=False)
    # Every accepted API token: API_TOKEN and API_TOKENS together (empty: no auth).
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    # Peers whose X-Forwarded-For names the HTTP API client (TRUSTED_PROXIES).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)

    @property
    def webhook_path(self) -> str:
        """The path part of WEBHOOK_URL, served on the bot's own HTTP server."""
        return urlsplit(self.webhook_url).path or "/webhook"

    @property
    def default_pixels(self) -> int:
        return self.default_width * self.default_height


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(name: str, raw: str, kind: Callable[[str], T], lo: T, hi: T | None) -> T:
    try:
        value = kind(raw.strip())
    except ValueError:
        kind_name = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {kind_name}, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):  # type: ignore[operator]
        upper = f" and {hi}" if hi is not None else " or more"
        between = "between " if hi is not None else ""
        raise ConfigError(f"{name} must be {between}{lo}{upper}, got {raw!r}")
    return value


def _parse_compile(raw: str) -> str:
    """COMPILE: auto (CUDA graphs on a GPU, nothing on the CPU), false, true (Inductor's
    default mode) or cudagraphs (also CUDA graphs)."""
    if raw.strip().lower() in ("auto", "cudagraphs"):
        return raw.strip().lower()
    try:
        return "default" if _parse_bool("COMPILE", raw) else "off"
    except ConfigError:
        raise ConfigError(f"COMPILE must be auto, false, true or cudagraphs, got {raw!r}") from None


def _parse_ids(name: str, raw: str) -> frozenset[int]:
    ids: set[int] = set()
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.add(int(part))
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated Telegram ids (numbers), got {part!r}") from None
    return frozenset(ids)


def _check_device(raw: str) -> str:
    value = raw.strip().lower()
    parts = [p.strip() for p in value.split(",") if p.strip()]
    ok = value in ("auto", "cpu", "cuda", "all") or (
        parts and all(p == "cuda" or (p.startswith("cuda:") and p[5:].isdigit()) for p in parts)
    )
    if not ok:
        raise ConfigError(
            f"DEVICE must be auto, cpu, cuda, cuda:N, a comma-separated list such as cuda:0,cuda:1, or all; got {raw!r}"
        )
    return ",".join(parts) if parts else value


def _choice(name: str, raw: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
    value = raw.strip().upper() if upper else raw.strip().lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return value


def settings_from_env(env: Mapping[str, str], *, require_token: bool = True) -> Settings:
    """Build validated settings from a mapping of environment variables.

    ``require_token=False`` is for commands that never talk to Telegram (draw, prefetch)."""

    def get(name: str, default: str) -> str:
        value = env.get(name)
        return default if value is None or value.strip() == "" else value

    token = env.get("BOT_TOKEN", "").strip()
    if not token and require_token:
        raise ConfigError("BOT_TOKEN is required: the token @BotFather gave your bot")
    if token and (":" not in token or any(c.isspace() for c in token)):
        raise ConfigError("BOT_TOKEN does not look like a bot token (expected 123456:ABC...)")

    api_url = get("TELEGRAM_API_URL", OFFICIAL_BOT_API).strip().rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"TELEGRAM_API_URL must start with http:// or https://, got {api_url!r}")

    max_side = _number("MAX_SIDE", get("MAX_SIDE", "1024"), int, 64, 4096)
    max_steps = _number("MAX_STEPS", get("MAX_STEPS", "100"), int, 1, 1000)

    def side(name: str, default: str) -> int:
        value = _number(name, get(name, default), int, 64, max_side)
        if value % 64:
            raise ConfigError(f"{name} must be a multiple of 64 (Kandinsky works in 64-pixel tiles), got {value}")
        return value

    return Settings(
        bot_token=token,
        telegram_api_url=api_url,
        prior_model=get("PRIOR_MODEL", DEFAULT_PRIOR).strip(),
        decoder_model=get("DECODER_MODEL", DEFAULT_DECODER).strip(),
        device=_check_device(get("DEVICE", "auto")),
        dtype=_choice("DTYPE", get("DTYPE", "auto"), DTYPES),
        cpu_offload=_parse_bool("CPU_OFFLOAD", get("CPU_OFFLOAD", "false")),
        compile=_parse_compile(get("COMPILE", "auto")),
        admin_ids=_parse_ids("ADMIN_IDS", get("ADMIN_IDS", "")),
        default_width=side("DEFAULT_WIDTH", "768"),
        default_height=side("DEFAULT_HEIGHT", "768"),
        default_steps=_number("DEFAULT_STEPS", get("DEFAULT_STEPS", "50"), int, 1, max_steps),
        default_guidance=_number("DEFAULT_GUIDANCE", get("DEFAULT_GUIDANCE", "4.0"), float, 0.0, 20.0),
        default_prior_guidance=_number(
            "DEFAULT_PRIOR_GUIDANCE", get("DEFAULT_PRIOR_GUIDANCE", "1.0"), float, 0.0, 20.0
        ),
        prior_steps=_number("PRIOR_STEPS", get("PRIOR_STEPS", "25"), int, 1, 200),
        max_side=max_side,
        max_steps=max_steps,
        max_batch=_number("MAX_BATCH", get("MAX_BATCH", "8"), int, 1, 64),
        max_queue=_number("MAX_QUEUE", get("MAX_QUEUE", "100"), int, 1, None),
        max_pending_per_user=_number("MAX_PENDING_PER_USER", get("MAX_PENDING_PER_USER", "3"), int, 1, None),
        progress_interval_s=_number("PROGRESS_INTERVAL_S", get("PROGRESS_INTERVAL_S", "2.0"), float, 0.1, 60.0),
        log_level=_choice("LOG_LEVEL", get("LOG_LEVEL", "INFO"), LOG_LEVELS, upper=True),
        data_dir=get("DATA_DIR", "./data").strip(),
        shutdown_grace_s=_number("SHUTDOWN_GRACE_S", get("SHUTDOWN_GRACE_S", "30"), float, 0.0, 3600.0),
        allowed_user_ids=_parse_ids("ALLOWED_USER_IDS", get("ALLOWED_USER_IDS", "")),
        allowed_chat_ids=_parse_ids("ALLOWED_CHAT_IDS", get("ALLOWED_CHAT_IDS", "")),
        rate_limit_per_min=_number("RATE_LIMIT_PER_MIN", get("RATE_LIMIT_PER_MIN", "10"), int, 0, None),
        max_prompt_chars=_number("MAX_PROMPT_CHARS", get("MAX_PROMPT_CHARS", "1000"), int, 1, 4096),
        **_http_settings(get),
    )


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _http_settings(get: Callable[[str, str], str]) -> dict:
    """HTTP API and webhook settings, checked together: they share one server."""
    port_raw = get("HTTP_PORT", "")
    port = _number("HTTP_PORT", port_raw, int, 1, 65535) if port_raw else None
    host = get("HTTP_HOST", "127.0.0.1").strip()
    api_token = get("API_TOKEN", "").strip()
    api_tokens = _parse_tokens(api_token, get("API_TOKENS", ""))
    trusted_proxies = _parse_networks("TRUSTED_PROXIES", get("TRUSTED_PROXIES", ""))
    webhook_url = get("WEBHOOK_URL", "").strip()
    webhook_secret = get("WEBHOOK_SECRET", "").strip()
    if port is not None and host not in LOCAL_HOSTS and not api_tokens:
        raise ConfigError(
            f"API_TOKEN is required when HTTP_HOST={host} makes the HTTP API reachable from other machines "
            "(or API_TOKENS: one token per client)"
        )
    if webhook_url:
        if not webhook_url.startswith("https://"):
            raise ConfigError(f"WEBHOOK_URL must be an https:// address Telegram can reach, got {webhook_url!r}")
        if port is None:
            raise ConfigError("WEBHOOK_URL needs HTTP_PORT: the webhook is served on the bot's own HTTP server")
    if webhook_secret and not all(c.isalnum() or c in "_-" for c in webhook_secret):
        raise ConfigError("WEBHOOK_SECRET may hold only letters, digits, _ and - (1-256 characters)")
    return {
        "http_port": port,
        "http_host": host,
        "api_token": api_token,
        "api_tokens": api_tokens,
        "trusted_proxies": trusted_proxies,
        "webhook_url": webhook_url,
        "webhook_secret": webhook_secret,
    }


def _parse_tokens(api_token: str, raw: str) -> tuple[str, ...]:
    """API_TOKEN plus the comma-separated API_TOKENS (one per client), without repeats."""
    tokens = [api_token, *(part.strip() for part in raw.split(","))]
    return tuple(dict.fromkeys(t for t in tokens if t))


def _parse_networks(name: str, raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} must be comma-separated IP addresses or networks (such as 10.0.0.0/8), got {part!r}"
            ) from None
    return tuple(networks)


def load_settings(env_file: str | None = ".env", *, require_token: bool = True) -> Settings:
    """Read ``.env`` (without overriding real environment variables), then the environment."""
    if env_file:
        load_dotenv(env_file, override=False)
    return settings_from_env(os.environ, require_token=require_token)
