"""Per-user limit on /draw requests a minute (RATE_LIMIT_PER_MIN), for handlers flagged
``rate_limited``."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import Message, TelegramObject

from bot.texts import text

WINDOW_S = 60.0


class RateLimitMiddleware(BaseMiddleware):
    """Inner middleware: runs after the filters chose a handler, so it sees its flags."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._recent: defaultdict[int, deque[float]] = defaultdict(deque)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if not self._limit or user is None or not get_flag(data, "rate_limited"):
            return await handler(event, data)
        now = self._clock()
        recent = self._recent[user.id]
        while recent and now - recent[0] >= WINDOW_S:
            recent.popleft()
        if len(recent) >= self._limit:
            wait = math.ceil(WINDOW_S - (now - recent[0]))
            if isinstance(event, Message):
                await event.answer(text(data["lang"], "rate_limited", limit=self._limit, seconds=wait))
            return None
        recent.append(now)
        return await handler(event, data)
