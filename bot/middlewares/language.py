"""Pick the user's language once per update and hand it to handlers as ``lang``: the one
they chose in /settings, else their Telegram app's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update, User

from bot.stores import SettingsStore, settings_store
from bot.texts import language_of
from bot.user_settings import UserSettings


class LanguageMiddleware(BaseMiddleware):
    def __init__(self, user_settings: UserSettings | SettingsStore | None = None) -> None:
        self.user_settings = None if user_settings is None else settings_store(user_settings)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        data["lang"] = await self._chosen(event, user) or language_of(user.language_code if user else None)
        return await handler(event, data)

    async def _chosen(self, event: TelegramObject, user: User | None) -> str | None:
        if self.user_settings is None:
            return None
        owner = user.id if user else None
        # An anonymous admin's settings are their group's (bot.senders.sender_id); a
        # button press names the real person.
        if isinstance(event, Update) and event.message and event.message.sender_chat:
            owner = event.message.sender_chat.id
        return None if owner is None else (await self.user_settings.get(owner)).language
