"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.texts import text
from config import Settings
from generation import GenerationEngine


def help_text(lang: str, settings: Settings, devices: list[str]) -> str:
    """The help, saying where pictures are drawn: the engine's devices, as resolved
    (DEVICE=auto on a machine without a GPU draws on the CPU)."""
    on_gpu = any(device.startswith("cuda") for device in devices)
    general = text(
        lang,
        "help",
        where=text(lang, "help_where_gpu" if on_gpu else "help_where_cpu"),
        max_side=settings.max_side,
        max_steps=settings.max_steps,
        steps=settings.default_steps,
        guidance=settings.default_guidance,
        prior_guidance=settings.default_prior_guidance,
        width=settings.default_width,
        height=settings.default_height,
    )
    return f"{general}\n\n{text(lang, 'settings-help')}"  # /settings, /styles, --style


async def show_help(message: Message, settings: Settings, engine: GenerationEngine, lang: str) -> None:
    await message.answer(help_text(lang, settings, engine.status().devices))


def create_router() -> Router:
    router = Router(name="help")
    router.message.register(show_help, CommandStart())
    router.message.register(show_help, Command("help"))
    return router
