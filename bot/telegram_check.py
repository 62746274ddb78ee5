"""Make sure Telegram answers, and accepts the token, before the bot takes updates."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    TelegramNotFound,
    TelegramUnauthorizedError,
)

from bot.startup_checks import StartupError

log = logging.getLogger(__name__)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
GET_ME_TIMEOUT_S = 15


async def wait_for_telegram(
    bot: Bot,
    api_url: str,
    stop: asyncio.Event | None = None,
    *,
    first_delay_s: float = FIRST_DELAY_S,
    max_delay_s: float = MAX_DELAY_S,
) -> bool:
    """Call ``getMe`` until Telegram answers; True then, False if ``stop`` is set first.

    A rejected token raises ``StartupError``: no retry can help. An unreachable server
    (no network, a proxy that redirects, a 5xx) is retried with a growing delay, one log
    line each time; the HTTP API and /health keep serving meanwhile."""
    stop = stop or asyncio.Event()
    delay = first_delay_s
    while not stop.is_set():
        try:
            me = await bot.get_me(request_timeout=GET_ME_TIMEOUT_S)
        except TelegramUnauthorizedError:
            raise StartupError("Telegram rejected BOT_TOKEN: check it with @BotFather") from None
        except TelegramNotFound:
            # Telegram answers 404 to a token of the wrong shape, and so does a wrong TELEGRAM_API_URL.
            raise StartupError(
                f"Telegram rejected BOT_TOKEN (404 Not Found at {api_url}): check it with @BotFather,"
                " and TELEGRAM_API_URL if you set it"
            ) from None
        except AiogramError as exc:  # network errors, timeouts, 5xx, 429, an answer that isn't JSON
            log.warning("can't reach Telegram at %s (%s); retrying in %.0f s", api_url, _reason(exc), delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_delay_s)
        else:
            log.info("Telegram at %s answers: this is @%s", api_url, me.username)
            return True
    return False


def _reason(exc: AiogramError) -> str:
    """aiogram's message without its "HTTP Client says - " prefix, on one line."""
    text = str(exc).removeprefix("HTTP Client says - ")
    return " ".join(text.split())[:300]
