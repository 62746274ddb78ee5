"""Inline keyboards and their callback data."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.texts import text


class CancelJob(CallbackData, prefix="cancel"):
    job_id: int


def cancel_keyboard(job_id: int, lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=text(lang, "cancel_button"), callback_data=CancelJob(job_id=job_id))
    return builder.as_markup()
