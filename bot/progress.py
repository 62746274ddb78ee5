"""Keep a request's status message up to date: place in line, then decoder steps."""

from __future__ import annotations

import asyncio
import logging

from aiogram.exceptions import TelegramBadRequest, TelegramRetryAfter
from aiogram.types import Message

from bot.keyboards import cancel_keyboard
from bot.texts import text
from generation import GenerationEngine, Job, JobState, ModelState

log = logging.getLogger(__name__)


def progress_text(job: Job, engine: GenerationEngine, lang: str) -> str:
    if job.state is JobState.QUEUED:
        position = engine.position(job) or 1
        line = text(lang, "queued", position=position, total=max(position, engine.status().queued))
        if engine.models_state is ModelState.LOADING:
            line = text(lang, "loading") + "\n" + line
        return line
    if job.step == 0:
        return text(lang, "starting")
    from generation.pipelines import decoder_steps  # loaded by the worker already: torch is in

    return text(lang, "progress", step=job.step, steps=decoder_steps(job.params))  # a redraw runs steps x strength


async def track_progress(
    status: Message, job: Job, engine: GenerationEngine, lang: str, interval: float, journal_id: int
) -> None:
    """Edit ``status`` while ``job`` is unfinished, at most once per ``interval`` seconds;
    while it waits, with the cancel button of its journal row ``journal_id``.

    Edits are best-effort: flood control pauses them, and the picture itself is sent
    separately, so a failed edit never loses the request."""
    shown = status.text or ""
    while not job.future.done():
        await asyncio.wait({job.future}, timeout=interval)
        if job.future.done():
            return
        new = progress_text(job, engine, lang)
        if new == shown:
            continue
        keyboard = cancel_keyboard(journal_id, lang) if job.state is JobState.QUEUED else None
        try:
            await status.edit_text(new, reply_markup=keyboard)
            shown = new
        except TelegramRetryAfter as exc:
            await asyncio.sleep(exc.retry_after)
        except TelegramBadRequest as exc:  # deleted, or not modified
            log.debug("status edit skipped: %s", exc)
        except Exception:
            log.warning("status edit failed", exc_info=True)
