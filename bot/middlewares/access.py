"""Optional allowlists: when set, strangers get a polite refusal and nothing is generated."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

from bot.texts import text
from config import Settings


def is_allowed(settings: Settings, user: User | None, chat: Chat | None) -> bool:
    if not settings.allowed_user_ids and not settings.allowed_chat_ids:
        return True  # no allowlist: a public bot
    if user is not None and (user.id in settings.admin_ids or user.id in settings.allowed_user_ids):
        return True
    return chat is not None and chat.id in settings.allowed_chat_ids


class AccessMiddleware(BaseMiddleware):
    """Inner middleware on messages and button presses: it runs once a handler was chosen,
    so a stranger is refused exactly where an allowed user would get an answer. In groups
    that means only this bot's own commands (``/draw``, ``/draw@thisbot``), never another
    bot's ``/ban@otherbot`` nor plain chatter."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        settings: Settings = data["settings"]
        if is_allowed(settings, data.get("event_from_user"), data.get("event_chat")):
            return await handler(event, data)
        refusal = text(data["lang"], "not_allowed")
        if isinstance(event, CallbackQuery):
            await event.answer(refusal, show_alert=True)
        elif isinstance(event, Message):
            await event.answer(refusal)
        return None
