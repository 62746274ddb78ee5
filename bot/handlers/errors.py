"""Last line of defence: an unexpected error gets a short apology, details go to the log."""

from __future__ import annotations

import contextlib
import logging

from aiogram import Router
from aiogram.types import ErrorEvent

from bot.texts import language_of, text

log = logging.getLogger(__name__)


async def apologise(event: ErrorEvent) -> None:
    log.error("unhandled error in update %s", event.update.update_id, exc_info=event.exception)
    message = event.update.message or (event.update.callback_query and event.update.callback_query.message)
    if message is None or not hasattr(message, "answer"):
        return
    user = message.from_user if event.update.message else event.update.callback_query.from_user
    with contextlib.suppress(Exception):  # Telegram itself may be what failed
        await message.answer(text(language_of(user.language_code if user else None), "failed"))


def create_router() -> Router:
    router = Router(name="errors")
    router.errors.register(apologise)
    return router
