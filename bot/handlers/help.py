"""/start and /help."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

from bot.texts import text
from config import Settings
from generation import GenerationEngine
from generation.samplers import SAMPLER_NAMES, sampler_steps


def help_text(lang: str, settings: Settings, devices: list[str]) -> str:
    """The help, saying where pictures are drawn: the engine's devices, as resolved
    (DEVICE=auto on a machine without a GPU draws on the CPU)."""
    on_gpu = any(device.startswith("cuda") for device in devices)
    steps = {name: sampler_steps(name, settings.default_steps) for name in SAMPLER_NAMES}
    body = text(
        lang,
        "help",
        where=text(lang, "help_where_gpu" if on_gpu else "help_where_cpu"),
        max_side=settings.max_side,
        max_steps=settings.max_steps,
        steps=steps[settings.default_sampler],
        guidance=settings.default_guidance,
        prior_guidance=settings.default_prior_guidance,
        width=settings.default_width,
        height=settings.default_height,
    )
    samplers = text(lang, "sampler-help", default=settings.default_sampler, **steps)
    pictures = text(lang, "pics-help", strength=settings.default_strength)
    # --raw, when Russian descriptions are translated (issue 11).
    raw = [text(lang, "tr-help")] if settings.translate != "off" else []
    # /settings, /styles, --style
    return "\n\n".join((body, *raw, samplers, pictures, text(lang, "settings-help")))


async def show_help(message: Message, settings: Settings, engine: GenerationEngine, lang: str) -> None:
    await message.answer(help_text(lang, settings, engine.status().devices))


def create_router() -> Router:
    router = Router(name="help")
    router.message.register(show_help, CommandStart())
    router.message.register(show_help, Command("help"))
    return router
