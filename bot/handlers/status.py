"""/status: what the old service's GET /health said, plus the queue."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message, User

from bot.filters import is_admin
from bot.texts import text
from config import Settings
from generation import GenerationEngine, ModelState


def status_text(engine: GenerationEngine, lang: str, *, details: bool) -> str:
    """``details``: say why the models failed to load (the error names server paths, so
    only the bot's admins see it)."""
    status = engine.status()
    if status.models is ModelState.READY:
        models = text(lang, "models_ready")
    elif status.models is ModelState.LOADING:
        models = text(lang, "models_loading")
    elif details:
        models = text(lang, "models_failed", error=html.escape(status.error or "?"))
    else:
        models = text(lang, "models_failed_hidden")
    lines = [
        text(
            lang,
            "status",
            health=text(lang, "healthy" if status.healthy else "unhealthy"),
            devices=", ".join(status.devices),
            models=models,
            queued=status.queued,
            running=status.running,
            rate=status.images_per_minute,
        )
    ]
    if status.compiling:
        lines.append(text(lang, "coldstart-compiling"))
    if status.gpu_memory_bytes is not None:
        lines.append(text(lang, "status_gpu_memory", gib=status.gpu_memory_bytes / 2**30))
    return "\n".join(lines)


async def show_status(
    message: Message, engine: GenerationEngine, settings: Settings, lang: str, event_from_user: User | None = None
) -> None:
    await message.answer(status_text(engine, lang, details=is_admin(settings, event_from_user)))


def create_router() -> Router:
    router = Router(name="status")
    router.message.register(show_status, Command("status"))
    return router
