"""Retry every Bot API call through flood control (429) and passing server/network faults.

One aiogram session middleware does it for all calls, so a /help reply, a refusal, a
button answer and a picture are all treated alike; call sites just call the Bot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import GetMe, GetUpdates, SendDocument, SendPhoto, TelegramMethod
from aiogram.methods.base import Response, TelegramType

if TYPE_CHECKING:
    from aiogram import Bot

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def backoff_s(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0 the first), then 30 s apart."""
    return BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int  # calls in all, the first included
    max_s: float  # no retry starts later than this after the first attempt did


# An ordinary reply: about a minute of trouble (backoff 0.5+1+2+4+8+15 s, plus what the
# attempts took). A finished picture is worth more: about five minutes of backoff (then
# 30 s apart), within ten in all, so that a slow upload (delivery.UPLOAD_TIMEOUT_S)
# that timed out still gets its retries.
CALLS = RetryPolicy(attempts=6, max_s=90.0)
PICTURES = RetryPolicy(attempts=12, max_s=600.0)
PICTURE_METHODS: tuple[type[TelegramMethod], ...] = (SendPhoto, SendDocument)
# Calls with a retry loop of their own: aiogram's polling backs off for getUpdates (and a long
# poll must not be held up by ours), and the start-up check (bot.telegram_check) retries getMe
# with its own one-line message.
NEVER_RETRIED: tuple[type[TelegramMethod], ...] = (GetUpdates, GetMe)


def policy_for(method: TelegramMethod) -> RetryPolicy | None:
    if isinstance(method, NEVER_RETRIED):
        return None
    return PICTURES if isinstance(method, PICTURE_METHODS) else CALLS


class RetryMiddleware(BaseRequestMiddleware):
    """On 429 wait ``retry_after``; on 5xx or network errors back off; raise other errors
    (the user blocked the bot, the chat is gone, a bad request) at once. Gives up, raising
    the last error, after the policy's attempts or when the next wait would pass its
    ``max_s``."""

    def __init__(
        self,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        policy = policy_for(method)
        if policy is None:
            return await make_request(bot, method)
        name = method.__api_method__
        started = self._clock()
        for attempt in range(policy.attempts):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                delay, why = float(exc.retry_after), "flood control"
                if attempt == policy.attempts - 1 or self._clock() - started + delay > policy.max_s:
                    raise
            except (TelegramServerError, TelegramNetworkError) as exc:
                delay, why = backoff_s(attempt), type(exc).__name__
                if attempt == policy.attempts - 1 or self._clock() - started + delay > policy.max_s:
                    raise
            # The message of a network error can hold the request URL, and so the token.
            log.warning("%s: %s, retrying in %.1f s (attempt %d)", name, why, delay, attempt + 2)
            await self._sleep(delay)
        raise AssertionError("unreachable")
