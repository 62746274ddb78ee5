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
from generation.translation import TranslationState, Translator


def status_text(engine: GenerationEngine, lang: str, *, details: bool, translator: Translator | None = None) -> str:
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
        lines.append(text(lang, "cs-compiling"))
    if status.gpu_memory_bytes is not None:
        lines.append(text(lang, "status_gpu_memory", gib=status.gpu_memory_bytes / 2**30))
    lines.append(translation_line(translator, lang, details=details))
    return "\n".join(lines)


def translation_line(translator: Translator | None, lang: str, *, details: bool) -> str:
    """Whether Russian prompts are translated; why not, for admins, when the model failed."""
    state = translator.state if translator is not None else TranslationState.OFF
    if state is TranslationState.FAILED and details:
        words = text(lang, "tr-state-failed-details", error=html.escape(translator.error or "?"))
    else:
        words = text(lang, f"tr-state-{state.value}")
    return text(lang, "tr-status", state=words)


async def show_status(
    message: Message,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    event_from_user: User | None = None,
    translator: Translator | None = None,
) -> None:
    details = is_admin(settings, event_from_user)
    await message.answer(status_text(engine, lang, details=details, translator=translator))


def create_router() -> Router:
    router = Router(name="status")
    router.message.register(show_status, Command("status"))
    return router
