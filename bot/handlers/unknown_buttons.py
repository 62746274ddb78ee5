"""Button presses no other handler understood: a button from an older version, forged or
garbled data. Every press gets an answer, or the user's client shows a spinner."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.texts import text

log = logging.getLogger(__name__)


async def answer_unknown_button(query: CallbackQuery, lang: str) -> None:
    log.info("unknown button data from user %s: %r", query.from_user.id, (query.data or "")[:64])
    await query.answer(text(lang, "button_unknown"))


def create_router() -> Router:
    router = Router(name="unknown_buttons")
    router.callback_query.register(answer_unknown_button)
    return router
