"""Filters shared by routers."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject, User

from config import Settings


def is_admin(settings: Settings, user: User | None) -> bool:
    """Listed in ADMIN_IDS (an anonymous group admin never is: Telegram hides who they are)."""
    return user is not None and user.id in settings.admin_ids


class IsAdmin(Filter):
    """True for users listed in ADMIN_IDS."""

    async def __call__(self, event: TelegramObject, settings: Settings, event_from_user: User | None = None) -> bool:
        return is_admin(settings, event_from_user)
