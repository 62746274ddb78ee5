"""Inline keyboards and their callback data.

Callback data outlives the process that made it (a button stays under a message for
good), so it names the journal's id of a request, which is never reused, and carries
a version in its prefix: data of another version or format matches no filter here and
gets a short answer (``bot.handlers.unknown_buttons``), never an error.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.texts import text

# Every cancel button's data starts with this: "cancel:<engine job id>" before
# version 2, "cancel.v2:<journal id>" now.
CANCEL_PREFIX = "cancel"


class CancelRequest(CallbackData, prefix=f"{CANCEL_PREFIX}.v2"):
    journal_id: int


def cancel_keyboard(journal_id: int, lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=text(lang, "cancel_button"), callback_data=CancelRequest(journal_id=journal_id))
    return builder.as_markup()
