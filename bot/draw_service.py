"""Accepted /draw requests from journal to chat: queue, progress, delivery, recovery.

Delivery runs in tasks owned here, not in update handlers, so a request is served the
same way whether it arrived just now or was recovered from the journal after a restart,
and a graceful stop can wait for the pictures in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import Message
from aiogram.utils.chat_action import ChatActionSender

from bot.delivery import reply_to, send_picture, shorten
from bot.journal import Journal, State
from bot.keyboards import cancel_keyboard
from bot.progress import progress_text, track_progress
from bot.telegram_retry import with_retries
from bot.texts import text
from generation import (
    GenerationEngine,
    GenerationError,
    GenerationParams,
    Job,
    JobCancelled,
    ModelsUnavailable,
    OutOfMemory,
)

log = logging.getLogger(__name__)


@dataclass
class Ticket:
    """An accepted request: its journal row and its engine job."""

    journal_id: int
    job: Job
    chat_id: int
    message_id: int
    lang: str
    as_document: bool

    @property
    def params(self) -> GenerationParams:
        return self.job.params


class DrawService:
    def __init__(self, bot: Bot, engine: GenerationEngine, journal: Journal, progress_interval_s: float) -> None:
        self._bot = bot
        self._engine = engine
        self._journal = journal
        self._interval = progress_interval_s
        self._tasks: dict[asyncio.Task, Ticket] = {}

    async def submit(
        self,
        *,
        params: GenerationParams,
        as_document: bool,
        chat_id: int,
        message_id: int,
        user_id: int,
        lang: str,
    ) -> Ticket | None:
        """Journal and queue a request. None if this message was accepted before (Telegram
        sent the update again after a restart). Raises the engine's QueueFull,
        UserQueueFull or ModelsUnavailable, and then nothing stays in the journal."""
        journal_id = self._journal.add(
            chat_id=chat_id, message_id=message_id, user_id=user_id, lang=lang, params=params, as_document=as_document
        )
        if journal_id is None:
            return None
        try:
            job = await self._engine.submit(params, user_id=user_id)
        except GenerationError:
            self._journal.remove(journal_id)
            raise
        return Ticket(journal_id, job, chat_id, message_id, lang, as_document)

    def follow(self, ticket: Ticket, status: Message | None) -> None:
        """Serve the ticket in the background: progress, then the picture or the error."""
        task = asyncio.create_task(self._serve(ticket, status), name=f"job {ticket.job.id}")
        self._tasks[task] = ticket
        task.add_done_callback(lambda done: self._tasks.pop(done, None))

    async def recover(self) -> int:
        """Queue again what the journal holds unfinished and tell each user."""
        entries = self._journal.unfinished()
        for entry in entries:
            try:
                job = await self._engine.submit(entry.params, user_id=entry.user_id, enforce_limits=False)
            except GenerationError as exc:  # the models failed to load: say so rather than wait forever
                self._journal.mark(entry.id, State.FAILED, f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TelegramAPIError):
                    reply = reply_to(entry.message_id)
                    await self._bot.send_message(entry.chat_id, failure_text(exc, entry.lang), reply_parameters=reply)
                continue
            ticket = Ticket(entry.id, job, entry.chat_id, entry.message_id, entry.lang, entry.as_document)
            self._journal.mark(entry.id, State.QUEUED)
            notice = text(entry.lang, "recovered", prompt=html.escape(shorten(entry.params.prompt, 100)))
            try:
                status = await with_retries(
                    lambda t=ticket, n=notice: self._bot.send_message(
                        t.chat_id,
                        n + "\n" + progress_text(t.job, self._engine, t.lang),
                        reply_markup=cancel_keyboard(t.job.id, t.lang),
                        reply_parameters=reply_to(t.message_id),
                    ),
                    "sendMessage",
                )
            except TelegramAPIError as exc:  # the chat is gone: nobody to draw for
                log.warning("job %s: cannot reach chat after restart: %s", entry.id, exc)
                self._engine.cancel(job)
                self._journal.mark(entry.id, State.FAILED, "chat unreachable")
                continue
            self.follow(ticket, status)
        if entries:
            log.info("recovered %d unfinished jobs from the journal", len(entries))
        return len(entries)

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking work; let the running batch finish and be delivered within
        ``grace_s``; leave everything else in the journal for the next start."""
        deadline = time.monotonic() + grace_s
        await self._engine.pause()
        while self._engine.status().running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        finished = [task for task, ticket in self._tasks.items() if ticket.job.future.done()]
        if finished:
            await asyncio.wait(finished, timeout=max(0.0, deadline - time.monotonic()))
        for task in list(self._tasks):
            task.cancel()  # still queued: the journal keeps it for the next start
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, ticket: Ticket, status: Message | None) -> None:
        job = ticket.job
        tracker = asyncio.create_task(
            track_progress(status, job, self._engine, ticket.lang, self._interval) if status else asyncio.sleep(0)
        )
        started = asyncio.create_task(self._mark_running(ticket))
        try:
            async with ChatActionSender.upload_photo(bot=self._bot, chat_id=ticket.chat_id):
                result = await job.result()
        except JobCancelled:
            self._journal.mark(ticket.journal_id, State.CANCELLED)
            _log_job(ticket, "cancelled")
            return
        except GenerationError as exc:
            self._journal.mark(ticket.journal_id, State.FAILED, f"{type(exc).__name__}: {exc}")
            _log_job(ticket, type(exc).__name__)
            await self._finish_status(ticket, status, failure_text(exc, ticket.lang))
            return
        finally:
            tracker.cancel()
            started.cancel()
        try:
            await send_picture(
                self._bot, ticket.chat_id, ticket.message_id, ticket.params, result, ticket.lang, ticket.as_document
            )
        except TelegramAPIError as exc:  # final: blocked, chat gone, or Telegram down for minutes
            log.error("job %s: picture not delivered: %s", ticket.journal_id, exc)
            self._journal.mark(ticket.journal_id, State.FAILED, f"send: {exc}")
            _log_job(ticket, "undeliverable", result.seconds)
            with contextlib.suppress(TelegramAPIError):
                await self._finish_status(ticket, status, text(ticket.lang, "failed"))
            return
        self._journal.mark(ticket.journal_id, State.SENT)
        _log_job(ticket, "sent", result.seconds)
        if status is not None:
            with contextlib.suppress(TelegramAPIError):
                await status.delete()

    async def _mark_running(self, ticket: Ticket) -> None:
        await ticket.job.started.wait()
        self._journal.mark(ticket.journal_id, State.RUNNING)

    async def _finish_status(self, ticket: Ticket, status: Message | None, line: str) -> None:
        """Replace the status message (and its cancel button) with the final word."""
        if status is not None:
            try:
                await with_retries(lambda: status.edit_text(line, reply_markup=None), "editMessageText")
                return
            except TelegramBadRequest:  # the status message is gone: say it anew
                pass
        reply = reply_to(ticket.message_id)
        await with_retries(lambda: self._bot.send_message(ticket.chat_id, line, reply_parameters=reply), "sendMessage")


def _log_job(ticket: Ticket, outcome: str, generation_s: float | None = None) -> None:
    """One structured line per job, whatever its end."""
    job, params = ticket.job, ticket.params
    log.info(
        "job id=%s user=%s chat=%s size=%sx%s steps=%s batch=%s queue_s=%.2f generation_s=%s outcome=%s",
        ticket.journal_id,
        job.user_id,
        ticket.chat_id,
        params.width,
        params.height,
        params.num_inference_steps,
        job.batch_size,
        job.waited_s,
        f"{generation_s:.2f}" if generation_s is not None else "-",
        outcome,
    )


def failure_text(exc: GenerationError, lang: str) -> str:
    if isinstance(exc, OutOfMemory):
        return text(lang, "out_of_memory")
    if isinstance(exc, ModelsUnavailable):
        return text(lang, "models_unavailable")
    log.error("generation failed: %s", exc)
    return text(lang, "failed")
