"""/reload: admins reload both pipelines; anyone else is refused."""

from __future__ import annotations

import html
import logging
import time

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.filters import IsAdmin
from bot.texts import text
from generation import GenerationEngine

log = logging.getLogger(__name__)


async def reload_models(message: Message, engine: GenerationEngine, lang: str) -> None:
    log.info("reload asked by admin %s", message.from_user.id if message.from_user else "?")
    await message.answer(text(lang, "reload_started"))
    started = time.monotonic()
    try:
        await engine.reload()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        await message.answer(text(lang, "reload_failed", error=html.escape(error[:500])))
        return
    await message.answer(text(lang, "reload_done", seconds=time.monotonic() - started))


async def refuse_reload(message: Message, lang: str) -> None:
    await message.answer(text(lang, "admin_only"))


def create_router() -> Router:
    router = Router(name="admin")
    router.message.register(reload_models, Command("reload"), IsAdmin())
    router.message.register(refuse_reload, Command("reload"))
    return router
