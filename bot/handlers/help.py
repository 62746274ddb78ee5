"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.texts import text
from config import Settings


def help_text(lang: str, settings: Settings) -> str:
    return text(
        lang,
        "help",
        max_side=settings.max_side,
        max_steps=settings.max_steps,
        steps=settings.default_steps,
        guidance=settings.default_guidance,
        prior_guidance=settings.default_prior_guidance,
        width=settings.default_width,
        height=settings.default_height,
    )


async def show_help(message: Message, settings: Settings, lang: str) -> None:
    await message.answer(help_text(lang, settings))


def create_router() -> Router:
    router = Router(name="help")
    router.message.register(show_help, CommandStart())
    router.message.register(show_help, Command("help"))
    return router
