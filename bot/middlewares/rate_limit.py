"""Per-sender limit on accepted /draw requests a minute (RATE_LIMIT_PER_MIN), for handlers
flagged ``rate_limited``: messages, and presses of a picture's buttons (one instance
watches both, so a press counts like a /draw).

Only requests that were accepted into the queue count: a handler says so by returning
``ACCEPTED``. Input that was refused (a typo, a full queue) costs nothing."""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.senders import sender_id
from bot.texts import text

WINDOW_S = 60.0
ACCEPTED: Final = "accepted"  # what a rate-limited handler returns when it queued the request


class RateLimitMiddleware(BaseMiddleware):
    """Inner middleware: runs after the filters chose a handler, so it sees its flags."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._recent: dict[int, deque[float]] = {}
        self._pruned_at = clock()

    def tracked_senders(self) -> int:
        """How many senders have entries kept (for tests: the map must not grow forever)."""
        return len(self._recent)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not self._limit or not isinstance(event, Message | CallbackQuery) or not get_flag(data, "rate_limited"):
            return await handler(event, data)
        now = self._clock()
        self._prune(now)
        # A press always names the real person, even an anonymous admin's.
        sender = sender_id(event) if isinstance(event, Message) else event.from_user.id
        recent = self._recent.setdefault(sender, deque())
        _drop_old(recent, now)
        if len(recent) >= self._limit:
            wait = math.ceil(WINDOW_S - (now - recent[0]))
            refusal = text(data["lang"], "rate_limited", limit=self._limit, seconds=wait)
            if isinstance(event, CallbackQuery):
                await event.answer(refusal, show_alert=True)
            else:
                await event.answer(refusal)
            return None
        # Hold the slot while the handler runs, so two quick requests can't both slip in.
        recent.append(now)
        result = None
        try:
            result = await handler(event, data)
            return result
        finally:
            if result != ACCEPTED:
                _release(recent, now)
                if not recent and self._recent.get(sender) is recent:
                    del self._recent[sender]

    def _prune(self, now: float) -> None:
        """Forget senders with nothing in the window, at most once a window."""
        if now - self._pruned_at < WINDOW_S:
            return
        self._pruned_at = now
        for sender, recent in list(self._recent.items()):
            _drop_old(recent, now)
            if not recent:
                del self._recent[sender]


def _drop_old(recent: deque[float], now: float) -> None:
    while recent and now - recent[0] >= WINDOW_S:
        recent.popleft()


def _release(recent: deque[float], stamp: float) -> None:
    with contextlib.suppress(ValueError):  # already dropped as old
        recent.remove(stamp)
