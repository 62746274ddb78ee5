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
import contextlib
import enum
import html
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import Chat, InlineKeyboardMarkup, Message
from aiogram.utils.chat_action import ChatActionSender

from bot.delivery import reply_to, send_picture, shorten
from bot.journal import FINAL_STATES, Entry, Journal, State, Unreadable
from bot.keyboards import cancel_keyboard
from bot.progress import progress_text, track_progress
from bot.stores import JobStore, LocalJobs, job_store
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

if TYPE_CHECKING:
    from bot.pg_jobs import Claimed, PgJobs

log = logging.getLogger(__name__)

# A notice with no picture behind it (e.g. "your old request can't be read") is tried
# about five minutes, like a picture; a "back in line" notice as long as its job lasts.
NOTICE_ATTEMPTS = 12
# Restart notices sent at once: a restart with hundreds of waiting requests must not
# run into Telegram's flood control all at once.
NOTICES_AT_ONCE = 8
# The errors of a store refusing a write: the SQLite journal's, PostgreSQL's.
STORE_ERRORS = (sqlite3.Error, psycopg.Error)


@dataclass
class Ticket:
    """An accepted request: its journal row and its engine job (None for a request only
    written to the shared queue, which some replica claims and draws)."""

    journal_id: int
    job: Job | None
    chat_id: int
    message_id: int  # what its answers reply to: the /draw, or the picture whose button was pressed
    lang: str
    as_document: bool
    status: Message | None = None  # the message showing its progress, once there is one
    settled: bool = False  # its journal row is final (sent, failed or cancelled)
    request_params: GenerationParams | None = None  # what was asked, while there is no job
    claimed_at: float = 0.0  # time.monotonic() of the claim, for a job from the shared queue
    lost: bool = False  # its lease ran out: another replica has its row now
    cancelled_elsewhere: bool = False  # cancelled through another replica after this one claimed it

    @property
    def params(self) -> GenerationParams:
        if self.job is not None:
            return self.job.params
        assert self.request_params is not None
        return self.request_params


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
        journal: Journal | JobStore,
        progress_interval_s: float,
        translator: Translator | None = None,
        *,
        replica_id: str | None = None,
        lease_s: float = 30.0,
    ) -> None:
        """``journal``: the SQLite journal (or any JobStore) of a single process; with
        ``replica_id``, a bot.pg_jobs.PgJobs shared by replicas: ``submit`` then only
        writes the row, and bot/shared_queue.py's claim loop hands this service the rows
        this replica draws (``serve_claimed``); ``lease_s`` is their lease."""
        self._bot = bot
        self._engine = engine
        # Russian prompts to English before drawing; None: drawn as typed.
        self.translator = translator
        self._journal = job_store(journal)
        self.replica_id = replica_id
        self.lease_s = lease_s
        self.stopping = False  # shutdown began: the claim loop takes no more work
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
        journal_id = await self._journal.add(
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
        answer_to = message_id if reply_to is None else reply_to
        if self.shared:  # whichever replica has room claims and draws it
            return Ticket(journal_id, None, chat_id, answer_to, lang, as_document, request_params=params)
        try:
            job = await self._engine.submit(params, user_id=user_id, images=images)
        except GenerationError:
            await self._journal.remove(journal_id)
            raise
        return Ticket(journal_id, job, chat_id, answer_to, lang, as_document)

    @property
    def shared(self) -> bool:
        """Whether requests go through the queue shared by replicas (PostgreSQL)."""
        return self.replica_id is not None

    @property
    def _shared_jobs(self) -> PgJobs:
        assert self.shared
        return self._journal  # type: ignore[return-value]

    async def request(self, journal_id: int) -> Entry | Unreadable | None:
        """A request as the journal keeps it, whatever its state (for a picture's buttons)."""
        return await self._journal.get(journal_id)

    async def status_text(self, ticket: Ticket) -> str:
        """What a just accepted request's status message says: its place in line."""
        if ticket.job is not None:
            return progress_text(ticket.job, self._engine, ticket.lang)
        place, total = await self._shared_jobs.waiting(ticket.journal_id) or (1, 1)
        return text(ticket.lang, "queued", position=place, total=total)

    def follow(self, ticket: Ticket, status: Message | None, notice: str | None = None) -> None:
        """Serve the ticket in the background: progress, then the picture or the error.
        Without a ``status`` message, ``notice`` (if given) is sent as one, and tried again
        until it gets through or the job is over."""
        ticket.status = status
        if ticket.job is None:  # in the shared queue: its place shown until a replica claims it
            self._chore(self._follow_shared(ticket), f"place of job {ticket.journal_id}")
            return
        task = asyncio.create_task(self._serve(ticket, notice), name=f"job {ticket.journal_id}")
        self._tasks[task] = ticket
        self._tickets[ticket.journal_id] = ticket
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        ticket = self._tasks.pop(task, None)
        if ticket is not None:
            self._tickets.pop(ticket.journal_id, None)

    async def _follow_shared(self, ticket: Ticket) -> None:
        """Keep a request's place in the shared line on its status message until a replica
        claims it (that replica then edits the message with its progress)."""
        jobs = self._shared_jobs
        if ticket.status is None:
            return  # the replica that draws it finds no message to edit, and answers anyway
        state = await jobs.set_status_message(ticket.journal_id, ticket.status.message_id)
        shown = ticket.status.text or ""
        while state not in FINAL_STATES:
            await asyncio.sleep(self._interval)
            state, claimed = await jobs.progress_of(ticket.journal_id)
            place = None if claimed or state in FINAL_STATES else await jobs.waiting(ticket.journal_id)
            if place is None:
                break
            line = text(ticket.lang, "queued", position=place[0], total=place[1])
            if line != shown:
                with contextlib.suppress(TelegramAPIError):
                    await ticket.status.edit_text(line, reply_markup=cancel_keyboard(ticket.journal_id, ticket.lang))
                    shown = line
        if state is State.SENT:
            # Drawn and sent before the replica that drew it knew of this message.
            with contextlib.suppress(TelegramAPIError):
                await ticket.status.delete()

    async def owner_of(self, journal_id: int) -> int | None:
        """Who asked for a request that is still waiting or drawing (a chat's id for an
        anonymous admin); None once it has ended."""
        ticket = self._tickets.get(journal_id)
        if ticket is not None and ticket.job is not None and not ticket.job.future.done():
            return ticket.job.user_id
        if not self.shared:
            return None
        entry = await self._journal.get(journal_id)
        return entry.user_id if isinstance(entry, Entry) and entry.state not in FINAL_STATES else None

    async def cancel_request(self, journal_id: int, user_id: int) -> CancelOutcome:
        """Cancel a waiting request for the user who asked for it; with the shared queue,
        whichever replica accepted it or claimed it, while none draws it yet."""
        ticket = self._tickets.get(journal_id)
        if not self.shared or (ticket is not None and ticket.job is not None and not ticket.job.future.done()):
            return self.cancel(journal_id, user_id)
        return CancelOutcome(await self._shared_jobs.cancel(journal_id, user_id))

    def cancel(self, journal_id: int, user_id: int) -> CancelOutcome:
        """Cancel a waiting request for the user who asked for it."""
        ticket = self._tickets.get(journal_id)
        if ticket is None or ticket.job is None or ticket.job.future.done():
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
        inbox) after this is a new row or a duplicate, never queued twice.

        Nothing to do with the shared queue: rows of a replica that died are claimed again
        once their leases run out."""
        if self.shared:
            return
        if isinstance(self._journal, LocalJobs):
            self._chore(self.recover(self._journal.journal.unfinished()), "recovery")
        else:
            self._chore(self.recover(), "recovery")

    async def recover(self, items: list[Entry | Unreadable] | None = None) -> int:
        """Queue again what the journal holds unfinished (``items``, else read now) and tell
        each user (best effort). A row this version can't read is marked failed and its user
        told; it never stops the others."""
        items = await self._journal.unfinished() if items is None else items
        for item in items:
            try:
                if isinstance(item, Unreadable):
                    await self._settle_unreadable(item)
                else:
                    await self._requeue(item)
            except Exception:  # one row must never stop the rest
                log.exception("job %s: recovery failed", item.id)
                await self._mark_safely(item.id, State.FAILED, "recovery failed")
        if items:
            log.info("recovered %d unfinished jobs from the journal", len(items))
        return len(items)

    async def _requeue(self, entry: Entry) -> None:
        await self._journal.mark(entry.id, State.QUEUED)  # was it running: it starts over
        try:
            job = await self._engine.submit(
                entry.params, user_id=entry.user_id, images=entry.images, enforce_limits=False
            )
        except GenerationError as exc:  # the models failed to load: say so rather than wait forever
            await self._mark_safely(entry.id, State.FAILED, f"{type(exc).__name__}: {exc}")
            self._tell(entry.chat_id, entry.reply_id, failure_text(exc, entry.lang))
            return
        ticket = Ticket(entry.id, job, entry.chat_id, entry.reply_id, entry.lang, entry.as_document)
        # The words the user knows (typed, before translation); a mix of pictures only has none.
        named = (entry.params.typed_prompt or entry.params.prompt).strip() or text(entry.lang, "pics-core-untitled")
        notice = text(entry.lang, "recovered", prompt=html.escape(shorten(named, 100)))
        self.follow(ticket, None, notice)

    # -- the shared queue (bot/shared_queue.py) ------------------------------------------

    async def serve_claimed(self, claimed: Claimed) -> None:
        """Draw and deliver a row this replica claimed from the shared queue; the message
        showing its place (if the accepting replica sent one) now shows its progress."""
        item = claimed.item
        if self.stopping:  # claimed as the stop began: bot/shared_queue.py's close hands it back
            return
        if isinstance(item, Unreadable):
            await self._settle_unreadable(item)
            return
        try:
            job = await self._engine.submit(item.params, user_id=item.user_id, images=item.images, enforce_limits=False)
        except ModelsUnavailable:  # this replica's models failed meanwhile: another may draw it
            await self._shared_jobs.give_back(item.id, self.replica_id or "")
            return
        except Exception as exc:  # a request this version can't draw after all: never held forever
            log.exception("job %s: claimed but not drawable", item.id)
            if await self._mark_safely(item.id, State.FAILED, f"{type(exc).__name__}: {exc}"[:1000]):
                error = exc if isinstance(exc, GenerationError) else GenerationError(str(exc))
                self._tell(item.chat_id, item.reply_id, failure_text(error, item.lang))
            return
        ticket = Ticket(item.id, job, item.chat_id, item.reply_id, item.lang, item.as_document)
        ticket.claimed_at = time.monotonic()
        if claimed.attempts > 1:
            log.info("job %s: drawn again (claim %d): its last replica stopped or lost it", item.id, claimed.attempts)
        self.follow(ticket, self._status_message(item.chat_id, claimed.status_message_id))

    def _status_message(self, chat_id: int, message_id: int | None) -> Message | None:
        """The status message another replica sent, to edit and delete from here."""
        if message_id is None:
            return None
        message = Message(message_id=message_id, date=datetime.now(UTC), chat=Chat(id=chat_id, type="private"))
        return message.as_(self._bot)

    async def leases_renewed(self, held: dict[int, int | None], asked_at: float) -> None:
        """The rows still this replica's after a lease renewal (asked at ``asked_at``,
        time.monotonic()), each with its status message's id. A request whose row is no
        longer this replica's (cancelled through another replica, or its lease ran out and
        another replica took it) is dropped here if it still waits; one drawing is not
        delivered from here (``_deliver`` checks)."""
        gone = {}
        for journal_id, ticket in list(self._tickets.items()):
            if ticket.job is None or ticket.claimed_at > asked_at or ticket.settled or ticket.lost:
                continue
            if journal_id not in held:
                gone[journal_id] = ticket
            elif ticket.status is None and held[journal_id] is not None:
                ticket.status = self._status_message(ticket.chat_id, held[journal_id])
        if not gone:
            return
        states = await self._shared_jobs.states(list(gone))
        for journal_id, ticket in gone.items():
            ticket.lost = True
            if states.get(journal_id) is State.CANCELLED:
                log.info("job %s: cancelled through another replica", journal_id)
                ticket.cancelled_elsewhere = True
            else:
                log.warning("job %s: no longer this replica's (its lease ran out)", journal_id)
            if ticket.job is not None and ticket.job.state is JobState.QUEUED:
                self._engine.cancel(ticket.job)

    async def _settle_unreadable(self, row: Unreadable) -> None:
        log.error("job %s: journal row unreadable, marked failed: %s", row.id, row.reason)
        if not await self._mark_safely(row.id, State.FAILED, f"unreadable: {row.reason}"[:1000]):
            return  # another replica's now (its lease ran out): it tells
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
        ``grace_s``; leave everything else in the journal for the next start (or, shared,
        for bot/shared_queue.py's close to hand back)."""
        self.stopping = True
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
                await self._settle(ticket, State.FAILED, f"{type(exc).__name__}: {exc}"[:1000])

    async def _deliver(self, ticket: Ticket, notice: str | None) -> None:
        tracker = _helper_task(self._show_progress(ticket, notice), ticket)
        started = _helper_task(self._mark_running(ticket), ticket)
        try:
            result = await self._drawn(ticket)
        except JobCancelled:
            await self._settle(ticket, State.CANCELLED)
            _log_job(ticket, "cancelled")
            if ticket.cancelled_elsewhere:  # the progress shown here may have hidden the word
                await self._finish_status(ticket, text(ticket.lang, "cancelled"))
            return
        except GenerationError as exc:
            if self.shared and isinstance(exc, ModelsUnavailable):
                # This replica's models failed to load again: another replica may draw it.
                ticket.settled = True
                with contextlib.suppress(*STORE_ERRORS):
                    await self._shared_jobs.give_back(ticket.journal_id, self.replica_id or "")
                _log_job(ticket, "handed back")
                return
            if not await self._settle(ticket, State.FAILED, f"{type(exc).__name__}: {exc}"):
                return  # another replica's now: it answers
            _log_job(ticket, type(exc).__name__)
            await self._finish_status(ticket, failure_text(exc, ticket.lang))
            return
        finally:
            tracker.cancel()
            started.cancel()
        if self.shared and (ticket.lost or not await self._still_ours(ticket)):
            ticket.settled = True
            with contextlib.suppress(*STORE_ERRORS):
                state = (await self._shared_jobs.states([ticket.journal_id])).get(ticket.journal_id)
                ticket.cancelled_elsewhere = state is State.CANCELLED
            if ticket.cancelled_elsewhere:
                _log_job(ticket, "cancelled")
                await self._finish_status(ticket, text(ticket.lang, "cancelled"))
            else:
                log.warning("job %s: drawn, but another replica has it now: not sent from here", ticket.journal_id)
            return
        await self._find_status(ticket)  # to delete once the picture is sent
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
            await self._settle(ticket, State.FAILED, f"send: {exc}")
            _log_job(ticket, "undeliverable", result.seconds)
            await self._finish_status(ticket, text(ticket.lang, "failed"))
            return
        await self._settle(ticket, State.SENT)
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
        if ticket.status is None and notice is not None and ticket.job is not None:
            job = ticket.job
            line = notice + "\n" + progress_text(job, self._engine, ticket.lang)
            keyboard = cancel_keyboard(ticket.journal_id, ticket.lang)
            ticket.status = await self._send_notice(ticket.chat_id, ticket.message_id, line, keyboard, job.future)
        job = ticket.job
        assert job is not None
        # Shared: the accepting replica may send the status message after the claim.
        while self.shared and ticket.status is None and not job.future.done():
            await asyncio.wait({job.future}, timeout=self._interval)
            await self._find_status(ticket)
        if ticket.status is not None:
            await track_progress(ticket.status, job, self._engine, ticket.lang, self._interval, ticket.journal_id)

    async def _mark_running(self, ticket: Ticket) -> None:
        assert ticket.job is not None
        await ticket.job.started.wait()
        await self._mark_safely(ticket.journal_id, State.RUNNING)

    async def _find_status(self, ticket: Ticket) -> None:
        """Shared: the status message the accepting replica sent, if it has by now."""
        if not self.shared or ticket.status is not None:
            return
        try:
            message_id = await self._shared_jobs.status_message(ticket.journal_id)
        except psycopg.Error as exc:
            log.warning("job %s: status message not looked up: %s", ticket.journal_id, exc)
            return
        ticket.status = self._status_message(ticket.chat_id, message_id)

    async def _still_ours(self, ticket: Ticket) -> bool:
        """Shared: the row is still this replica's (its lease extended for the delivery)."""
        try:
            return await self._shared_jobs.keep(ticket.journal_id, self.replica_id or "", self.lease_s)
        except psycopg.Error:
            log.exception("job %s: can't tell whether it is still ours; delivering it", ticket.journal_id)
            return True

    async def _settle(self, ticket: Ticket, state: State, error: str | None = None) -> bool:
        """Record how the request ended; False when the row is another replica's now
        (shared queue: its lease ran out). If the journal refuses that (an SQLite or
        PostgreSQL error), log it and at least mark the row failed, so it is not served
        again."""
        try:
            recorded = await self._record(ticket.journal_id, state, error)
        except STORE_ERRORS as exc:
            log.exception("job %s: cannot record %s in the journal", ticket.journal_id, state)
            if state is State.FAILED or not await self._mark_safely(
                ticket.journal_id, State.FAILED, f"journal refused {state}: {exc}"
            ):
                return True
            recorded = True
        if not recorded:
            log.warning("job %s: ended %s here, but another replica has it now", ticket.journal_id, state)
        ticket.settled = True
        return recorded

    async def _record(self, journal_id: int, state: State, error: str | None = None) -> bool:
        """Write a row's state: fenced to this replica's rows with the shared queue."""
        if not self.shared:
            await self._journal.mark(journal_id, state, error)
            return True
        jobs, replica = self._shared_jobs, self.replica_id or ""
        if state is State.RUNNING:
            return await jobs.start(journal_id, replica)
        return await jobs.settle(journal_id, replica, state, error)

    async def _mark_safely(self, journal_id: int, state: State, error: str | None = None) -> bool:
        try:
            return await self._record(journal_id, state, error)
        except STORE_ERRORS:
            log.exception("job %s: cannot record %s in the journal", journal_id, state)
            return False

    async def _finish_status(self, ticket: Ticket, line: str) -> None:
        """Replace the status message (and its cancel button) with the final word; best
        effort, since the row is settled already (the user may have blocked the bot)."""
        await self._find_status(ticket)
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
