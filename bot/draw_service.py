"""Accepted /draw requests from journal to chat: queue, progress, delivery, recovery.

Delivery runs in tasks owned here, not in update handlers, so a request is served the
same way whether it arrived just now or was recovered from the journal after a restart,
and a graceful stop can wait for the pictures in flight.

Only the picture decides a request's fate: notices around it (the "back in line" after a
restart, progress, the final word on a failure) are best effort, and a notice Telegram
refuses for a while is tried again in the background while the picture is drawn.
"""

from __future__ import annotations

import asyncio
import enum
import html
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import InlineKeyboardMarkup, Message
from aiogram.utils.chat_action import ChatActionSender

from bot.delivery import reply_to, send_picture, shorten
from bot.journal import Entry, Journal, State, Unreadable
from bot.keyboards import cancel_keyboard
from bot.progress import progress_text, track_progress
from bot.telegram_retry import backoff_s
from bot.texts import text
from generation import (
    GenerationEngine,
    GenerationError,
    GenerationParams,
    Job,
    JobCancelled,
    JobState,
    ModelsUnavailable,
    OutOfMemory,
)
from generation.translation import Translator

log = logging.getLogger(__name__)

# A notice with no picture behind it (e.g. "your old request can't be read") is tried
# about five minutes, like a picture; a "back in line" notice as long as its job lasts.
NOTICE_ATTEMPTS = 12
# Restart notices sent at once: a restart with hundreds of waiting requests must not
# run into Telegram's flood control all at once.
NOTICES_AT_ONCE = 8


@dataclass
class Ticket:
    """An accepted request: its journal row and its engine job."""

    journal_id: int
    job: Job
    chat_id: int
    message_id: int  # what its answers reply to: the /draw, or the picture whose button was pressed
    lang: str
    as_document: bool
    status: Message | None = None  # the message showing its progress, once there is one
    settled: bool = False  # its journal row is final (sent, failed or cancelled)

    @property
    def params(self) -> GenerationParams:
        return self.job.params


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"
    NOT_YOURS = "not_yours"
    TOO_LATE = "too_late"  # drawing already
    GONE = "gone"  # finished, or not a request this journal serves


class DrawService:
    def __init__(
        self,
        bot: Bot,
        engine: GenerationEngine,
        journal: Journal,
        progress_interval_s: float,
        translator: Translator | None = None,
    ) -> None:
        self._bot = bot
        self._engine = engine
        # Russian prompts to English before drawing; None: drawn as typed.
        self.translator = translator
        self._journal = journal
        self._interval = progress_interval_s
        self._tasks: dict[asyncio.Task, Ticket] = {}
        self._tickets: dict[int, Ticket] = {}  # by journal id, while being served
        self._chores: set[asyncio.Task] = set()  # recovery and notices with no job behind them
        self._notice_slots = asyncio.Semaphore(NOTICES_AT_ONCE)

    async def submit(
        self,
        *,
        params: GenerationParams,
        as_document: bool,
        chat_id: int,
        message_id: int,
        user_id: int,
        lang: str,
        images: Sequence[bytes] = (),
        translate: bool = True,
        reply_to: int | None = None,
    ) -> Ticket | None:
        """Journal and queue a request; ``images``: the pictures it draws from (file bytes,
        checked already), kept under the data dir until it ends. None if this message was
        accepted before (Telegram sent the update again after a restart). Raises the
        engine's QueueFull, UserQueueFull or ModelsUnavailable, and then nothing stays in
        the journal. ``reply_to``: what the answers reply to, when not ``message_id`` (a
        button press).

        Texts with Cyrillic letters are translated first (unless ``translate`` is False:
        --raw, a user's setting), so the journal holds what is drawn and a request
        recovered after a restart is never translated again."""
        if self.translator is not None:
            params = await self.translator.translate_params(params, translate=translate)
        journal_id = self._journal.add(
            chat_id=chat_id,
            message_id=message_id,
            user_id=user_id,
            lang=lang,
            params=params,
            as_document=as_document,
            images=images,
            reply_to=reply_to,
        )
        if journal_id is None:
            return None
        try:
            job = await self._engine.submit(params, user_id=user_id, images=images)
        except GenerationError:
            self._journal.remove(journal_id)
            raise
        return Ticket(journal_id, job, chat_id, message_id if reply_to is None else reply_to, lang, as_document)

    def request(self, journal_id: int) -> Entry | Unreadable | None:
        """A request as the journal keeps it, whatever its state (for a picture's buttons)."""
        return self._journal.get(journal_id)

    def follow(self, ticket: Ticket, status: Message | None, notice: str | None = None) -> None:
        """Serve the ticket in the background: progress, then the picture or the error.
        Without a ``status`` message, ``notice`` (if given) is sent as one, and tried again
        until it gets through or the job is over."""
        ticket.status = status
        task = asyncio.create_task(self._serve(ticket, notice), name=f"job {ticket.journal_id}")
        self._tasks[task] = ticket
        self._tickets[ticket.journal_id] = ticket
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        ticket = self._tasks.pop(task, None)
        if ticket is not None:
            self._tickets.pop(ticket.journal_id, None)

    def owner_of(self, journal_id: int) -> int | None:
        """Who asked for a request that is still waiting or drawing (a chat's id for an
        anonymous admin); None once it has ended."""
        ticket = self._tickets.get(journal_id)
        return None if ticket is None or ticket.job.future.done() else ticket.job.user_id

    def cancel(self, journal_id: int, user_id: int) -> CancelOutcome:
        """Cancel a waiting request for the user who asked for it."""
        ticket = self._tickets.get(journal_id)
        if ticket is None or ticket.job.future.done():
            return CancelOutcome.GONE
        if ticket.job.user_id != user_id:
            return CancelOutcome.NOT_YOURS
        if ticket.job.state is not JobState.QUEUED or not self._engine.cancel(ticket.job):
            return CancelOutcome.TOO_LATE
        return CancelOutcome.CANCELLED

    # -- recovery -------------------------------------------------------------------

    def start_recovery(self) -> None:
        """Queue again, in the background, what the journal holds unfinished: updates are
        taken meanwhile, and a graceful stop ends it like any delivery. The journal is read
        now, before any update is taken: a /draw that arrives (or is fed again from the
        inbox) after this is a new row or a duplicate, never queued twice."""
        self._chore(self.recover(self._journal.unfinished()), "recovery")

    async def recover(self, items: list[Entry | Unreadable] | None = None) -> int:
        """Queue again what the journal holds unfinished (``items``, else read now) and tell
        each user (best effort). A row this version can't read is marked failed and its user
        told; it never stops the others."""
        items = self._journal.unfinished() if items is None else items
        for item in items:
            try:
                if isinstance(item, Unreadable):
                    self._settle_unreadable(item)
                else:
                    await self._requeue(item)
            except Exception:  # one row must never stop the rest
                log.exception("job %s: recovery failed", item.id)
                self._mark_safely(item.id, State.FAILED, "recovery failed")
        if items:
            log.info("recovered %d unfinished jobs from the journal", len(items))
        return len(items)

    async def _requeue(self, entry: Entry) -> None:
        self._journal.mark(entry.id, State.QUEUED)  # was it running: it starts over
        try:
            job = await self._engine.submit(
                entry.params, user_id=entry.user_id, images=entry.images, enforce_limits=False
            )
        except GenerationError as exc:  # the models failed to load: say so rather than wait forever
            self._mark_safely(entry.id, State.FAILED, f"{type(exc).__name__}: {exc}")
            self._tell(entry.chat_id, entry.reply_id, failure_text(exc, entry.lang))
            return
        ticket = Ticket(entry.id, job, entry.chat_id, entry.reply_id, entry.lang, entry.as_document)
        # The words the user knows (typed, before translation); a mix of pictures only has none.
        named = (entry.params.typed_prompt or entry.params.prompt).strip() or text(entry.lang, "pics-core-untitled")
        notice = text(entry.lang, "recovered", prompt=html.escape(shorten(named, 100)))
        self.follow(ticket, None, notice)

    def _settle_unreadable(self, row: Unreadable) -> None:
        log.error("job %s: journal row unreadable, marked failed: %s", row.id, row.reason)
        self._mark_safely(row.id, State.FAILED, f"unreadable: {row.reason}"[:1000])
        if row.chat_id is not None and row.message_id is not None:
            self._tell(row.chat_id, row.message_id, text(row.lang, row.message))

    def _tell(self, chat_id: int, message_id: int, line: str) -> None:
        """A notice with no job behind it, in the background, best effort."""
        done: asyncio.Future = asyncio.get_running_loop().create_future()  # never: only attempts end it
        self._chore(self._send_notice(chat_id, message_id, line, None, done, NOTICE_ATTEMPTS), "notice")

    def _chore(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._chores.add(task)
        task.add_done_callback(self._chore_done)

    def _chore_done(self, task: asyncio.Task) -> None:
        self._chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _send_notice(
        self,
        chat_id: int,
        message_id: int,
        line: str,
        keyboard: InlineKeyboardMarkup | None,
        until: asyncio.Future,
        attempts: int | None = None,
    ) -> Message | None:
        """Send ``line``, trying again with the delivery backoff through flood control and
        server or network faults, until it is sent, ``until`` is done or ``attempts`` ran
        out. None when not sent: a notice never decides a request's fate."""
        attempt = 0
        while not until.done():
            try:
                async with self._notice_slots:
                    return await self._bot.send_message(
                        chat_id, line, reply_markup=keyboard, reply_parameters=reply_to(message_id)
                    )
            except TelegramRetryAfter as exc:
                delay: float = exc.retry_after
            except (TelegramServerError, TelegramNetworkError) as exc:
                delay = backoff_s(attempt)
                log.warning("notice to chat %s not sent (%s); trying again in %.1f s", chat_id, exc, delay)
            except TelegramAPIError as exc:  # blocked, chat gone: nobody to tell
                log.warning("notice to chat %s not sent: %s", chat_id, exc)
                return None
            attempt += 1
            if attempts is not None and attempt >= attempts:
                log.warning("notice to chat %s given up after %d attempts", chat_id, attempt)
                return None
            await asyncio.wait({until}, timeout=delay)
        return None

    # -- shutdown -------------------------------------------------------------------

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
        pending = [*self._tasks, *self._chores]
        for task in pending:
            task.cancel()  # unfinished: the journal keeps it for the next start
        await asyncio.gather(*pending, return_exceptions=True)

    # -- serving one request --------------------------------------------------------

    async def _serve(self, ticket: Ticket, notice: str | None) -> None:
        """Serve a request; whatever goes wrong is logged and its row settled, so a
        failure never hides in an unretrieved task exception."""
        try:
            await self._deliver(ticket, notice)
        except Exception as exc:
            log.exception("job %s: serving it failed", ticket.journal_id)
            if not ticket.settled:
                self._settle(ticket, State.FAILED, f"{type(exc).__name__}: {exc}"[:1000])

    async def _deliver(self, ticket: Ticket, notice: str | None) -> None:
        tracker = _helper_task(self._show_progress(ticket, notice), ticket)
        started = _helper_task(self._mark_running(ticket), ticket)
        try:
            result = await self._drawn(ticket)
        except JobCancelled:
            self._settle(ticket, State.CANCELLED)
            _log_job(ticket, "cancelled")
            return
        except GenerationError as exc:
            self._settle(ticket, State.FAILED, f"{type(exc).__name__}: {exc}")
            _log_job(ticket, type(exc).__name__)
            await self._finish_status(ticket, failure_text(exc, ticket.lang))
            return
        finally:
            tracker.cancel()
            started.cancel()
        try:
            await send_picture(
                self._bot,
                ticket.chat_id,
                ticket.message_id,
                ticket.params,
                result,
                ticket.lang,
                ticket.as_document,
                journal_id=ticket.journal_id,
            )
        except TelegramAPIError as exc:  # final: blocked, chat gone, or Telegram down for minutes
            log.error("job %s: picture not delivered: %s", ticket.journal_id, exc)
            self._settle(ticket, State.FAILED, f"send: {exc}")
            _log_job(ticket, "undeliverable", result.seconds)
            await self._finish_status(ticket, text(ticket.lang, "failed"))
            return
        self._settle(ticket, State.SENT)
        _log_job(ticket, "sent", result.seconds)
        if ticket.status is not None:
            try:
                await ticket.status.delete()
            except TelegramAPIError as exc:
                log.debug("job %s: status message not deleted: %s", ticket.journal_id, exc)

    async def _drawn(self, ticket: Ticket):
        """The job's result; "sending photo…" shows in the chat only while it is drawn,
        not while it waits in line."""
        job = ticket.job
        started = asyncio.ensure_future(job.started.wait())
        try:
            await asyncio.wait({started, job.future}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if job.future.done():
            return await job.result()
        async with ChatActionSender.upload_photo(bot=self._bot, chat_id=ticket.chat_id):
            return await job.result()

    async def _show_progress(self, ticket: Ticket, notice: str | None) -> None:
        """Keep the status message up to date; first send ``notice`` as one if given."""
        if ticket.status is None and notice is not None:
            job = ticket.job
            line = notice + "\n" + progress_text(job, self._engine, ticket.lang)
            keyboard = cancel_keyboard(ticket.journal_id, ticket.lang)
            ticket.status = await self._send_notice(ticket.chat_id, ticket.message_id, line, keyboard, job.future)
        if ticket.status is not None:
            job, lang = ticket.job, ticket.lang
            await track_progress(ticket.status, job, self._engine, lang, self._interval, ticket.journal_id)

    async def _mark_running(self, ticket: Ticket) -> None:
        await ticket.job.started.wait()
        self._mark_safely(ticket.journal_id, State.RUNNING)

    def _settle(self, ticket: Ticket, state: State, error: str | None = None) -> None:
        """Record how the request ended. If the journal refuses that (an SQLite error),
        log it and at least mark the row failed, so it is not served again."""
        try:
            self._journal.mark(ticket.journal_id, state, error)
        except sqlite3.Error as exc:
            log.exception("job %s: cannot record %s in the journal", ticket.journal_id, state)
            if state is State.FAILED or not self._mark_safely(
                ticket.journal_id, State.FAILED, f"journal refused {state}: {exc}"
            ):
                return
        ticket.settled = True

    def _mark_safely(self, journal_id: int, state: State, error: str | None = None) -> bool:
        try:
            self._journal.mark(journal_id, state, error)
            return True
        except sqlite3.Error:
            log.exception("job %s: cannot record %s in the journal", journal_id, state)
            return False

    async def _finish_status(self, ticket: Ticket, line: str) -> None:
        """Replace the status message (and its cancel button) with the final word; best
        effort, since the row is settled already (the user may have blocked the bot)."""
        try:
            if ticket.status is not None:
                try:
                    await ticket.status.edit_text(line, reply_markup=None)  # retried by the session middleware
                    return
                except TelegramBadRequest:  # the status message is gone: say it anew
                    pass
            reply = reply_to(ticket.message_id)
            await self._bot.send_message(ticket.chat_id, line, reply_parameters=reply)
        except TelegramAPIError as exc:
            log.warning("job %s: final word not delivered: %s", ticket.journal_id, exc)


def _helper_task(coro, ticket: Ticket) -> asyncio.Task:
    """A side task of serving a request; its failure is logged, never lost."""

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: %s failed", ticket.journal_id, coro.__qualname__, exc_info=task.exception())

    task = asyncio.create_task(coro)
    task.add_done_callback(done)
    return task


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
