"""/status: what the old service's GET /health said, plus the queue; with several
replicas (DATABASE_URL), the shared queue and the replicas seen in the last minute."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message, User

from bot.filters import is_admin
from bot.texts import text
from config import Settings
from generation import GenerationEngine, ModelState
from generation.translation import TranslationState, Translator

log = logging.getLogger(__name__)


class ReplicaView(Protocol):
    """One replica as /status shows it (bot/replicas.py's Replica, from its heartbeat)."""

    @property
    def id(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def devices(self) -> Sequence[str]: ...
    @property
    def info(self) -> Mapping[str, Any]: ...  # "poller": True on the one polling Telegram


@dataclass(frozen=True)
class SharedView:
    """What /status asks the shared database (workflow data ``shared``; absent with SQLite):
    the replicas seen lately, the shared queue's depth, and which replica this is."""

    replica_id: str
    replicas: Callable[[], Awaitable[Sequence[ReplicaView]]]
    depth: Callable[[], Awaitable[int]]


async def shared_lines(shared: SharedView, lang: str, *, details: bool) -> list[str]:
    """The shared queue and one line per replica; a database that does not answer is
    said, not raised (/status is what an operator sends when something is wrong).
    ``details``: the replicas' host names (the bot's admins); others see them numbered."""
    try:
        waiting = await shared.depth()
        replicas = await shared.replicas()
    except Exception as exc:
        log.warning("/status: the shared database did not answer: %s", exc)
        return [text(lang, "rep-unknown")]
    lines = [text(lang, "rep-queue", waiting=waiting), text(lang, "rep-header", count=len(replicas))]
    for number, replica in enumerate(replicas, 1):
        marks = [text(lang, "rep-this")] if replica.id == shared.replica_id else []
        if replica.info.get("poller"):
            marks.append(text(lang, "rep-poller"))
        lines.append(
            text(
                lang,
                "rep-line",
                host=html.escape(replica.host) if details else f"#{number}",
                devices=html.escape(", ".join(replica.devices) or "?"),
                marks=f" ({', '.join(marks)})" if marks else "",
            )
        )
    return lines


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
    shared: SharedView | None = None,
) -> None:
    details = is_admin(settings, event_from_user)
    answer = status_text(engine, lang, details=details, translator=translator)
    if shared is not None:
        answer = "\n".join((answer, *await shared_lines(shared, lang, details=details)))
    await message.answer(answer)


def create_router() -> Router:
    router = Router(name="status")
    router.message.register(show_status, Command("status"))
    return router
