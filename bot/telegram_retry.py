"""Retry a Bot API call through flood control (429) and passing server/network faults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_ATTEMPTS = 6
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


async def with_retries(call: Callable[[], Awaitable[T]], what: str, attempts: int = MAX_ATTEMPTS) -> T:
    """Run ``call``; on 429 wait ``retry_after``; on 5xx or network errors back off.
    Other errors (the user blocked the bot, the chat is gone) are raised at once."""
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            return await call()
        except TelegramRetryAfter as exc:
            if last:
                raise
            log.warning("%s: flood control, retrying in %s s", what, exc.retry_after)
            await asyncio.sleep(exc.retry_after)
        except (TelegramServerError, TelegramNetworkError) as exc:
            if last:
                raise
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            log.warning("%s: %s, retrying in %.1f s", what, type(exc).__name__, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
