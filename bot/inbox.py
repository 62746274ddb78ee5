"""The durable inbox: every update is on disk before Telegram may forget it.

Telegram drops a polled batch once the next getUpdates confirms it (and a webhook update
once it is answered 200), while its handlers may not have run yet. So an outer update
middleware first writes the raw update to SQLite (a short local insert, on the event
loop; with DATABASE_URL, the PostgreSQL database the replicas share: bot/pg_inbox.py),
and only then lets the dispatcher move on; the handlers run in a task, and the row is
marked done when they finish. Rows not done at the next start (the process was
killed) are fed again. A done row stays two days (Telegram keeps an update one), so an
update Telegram sends again (a batch it did not see confirmed, a late webhook answer)
is not handled twice. Where a handler was killed midway, it runs again: harmless where
it matters, as the journal keeps one job per (chat, message), so a /draw is never
drawn twice; a /help may be answered twice.

Polling must run with ``handle_as_tasks=False`` (the poll loop then waits for each
insert), and the webhook with ``handle_in_background=False`` (Telegram gets its 200
after the insert).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.dispatcher.middlewares.error import ErrorsMiddleware
from aiogram.types import TelegramObject, Update

from bot.journal import open_database

if TYPE_CHECKING:
    from bot.stores import UpdateStore

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    bot_id      INTEGER NOT NULL,   -- update ids count per bot: another token, another row
    update_id   INTEGER NOT NULL,
    version     INTEGER NOT NULL,   -- format of body
    body        TEXT    NOT NULL,   -- the Update as Telegram's JSON
    attempts    INTEGER NOT NULL DEFAULT 0,   -- starts that fed it again
    received_at REAL    NOT NULL,
    done_at     REAL,               -- handled (or given up); NULL: to be fed again
    PRIMARY KEY (bot_id, update_id)
);
"""
BODY_VERSION = 1
# An update whose handling killed the process this many times is given up.
MAX_REPLAYS = 3
# Passed to feed_update for an update that is in the inbox already.
REPLAYED = "inbox_replayed"
# How long a handled update is remembered. Telegram keeps an update 24 h, and picks the
# next update_id at random only after a week without updates.
KEEP_DONE_S = 2 * 24 * 3600
# A store that fails (a full disk, the database away): the update is handled unrecorded.
STORE_ERRORS = (sqlite3.Error, psycopg.Error)


class Inbox:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: str) -> Inbox:
        return cls(Path(data_dir) / "inbox.sqlite3")

    def close(self) -> None:
        self._db.close()

    def add(self, bot_id: int, update: Update) -> bool:
        """Record an update; False if it is recorded already (Telegram sent it again):
        being handled now, to be fed again, or handled."""
        body = update.model_dump_json(by_alias=True, exclude_unset=True, exclude_none=True)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO inbox (bot_id, update_id, version, body, received_at) VALUES (?, ?, ?, ?, ?)",
            (bot_id, update.update_id, BODY_VERSION, body, time.time()),
        )
        return cursor.rowcount > 0

    def done(self, bot_id: int, update_id: int) -> None:
        self._db.execute(
            "UPDATE inbox SET done_at = ? WHERE bot_id = ? AND update_id = ?", (time.time(), bot_id, update_id)
        )

    def take_leftovers(self, bot_id: int) -> list[tuple[int, int, str, int]]:
        """What a previous run left unhandled, oldest first: (update_id, version, body,
        attempts), each attempt counted now. Forgets updates received long ago."""
        self._db.execute("DELETE FROM inbox WHERE received_at < ?", (time.time() - KEEP_DONE_S,))
        self._db.execute("UPDATE inbox SET attempts = attempts + 1 WHERE bot_id = ? AND done_at IS NULL", (bot_id,))
        return self._db.execute(
            "SELECT update_id, version, body, attempts FROM inbox WHERE bot_id = ? AND done_at IS NULL"
            " ORDER BY update_id",
            (bot_id,),
        ).fetchall()

    def unhandled(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL").fetchone()[0]


class InboxMiddleware(BaseMiddleware):
    """Outer ``update`` middleware: record the update, then handle it in a task. Register
    it before any other outer update middleware of ours, so that they run in the task."""

    def __init__(self, inbox: Inbox | UpdateStore) -> None:
        from bot.stores import update_store  # bot.stores imports this module

        self._inbox = update_store(inbox)
        self._tasks: set[asyncio.Task] = set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        if not data.get(REPLAYED):
            try:
                fresh = await self._inbox.add(data["bot"].id, event)
            except STORE_ERRORS:  # a full disk must not stop the bot: handle it unrecorded
                log.exception("update %s not recorded in the inbox", event.update_id)
                return await handler(event, data)
            if not fresh:
                log.info("update %s is in the inbox already: not handled twice", event.update_id)
                return None
        task = asyncio.create_task(self._handle(handler, event, data), name=f"update {event.update_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def _handle(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        update: Update,
        data: dict[str, Any],
    ) -> None:
        try:
            # Outside the dispatcher's own ErrorsMiddleware now: errors go to our error
            # handlers the same way.
            await ErrorsMiddleware(data["dispatcher"])(handler, update, data)
        except Exception:
            log.exception("update %s failed", update.update_id)
        # Handled, or failed for good: not again. Cancelled (a stop): fed again next start.
        try:
            await self._inbox.done(data["bot"].id, update.update_id)
        except STORE_ERRORS:
            log.exception("update %s not marked done in the inbox", update.update_id)

    async def shutdown(self, grace_s: float) -> None:
        """Let handlers in progress finish within ``grace_s``; the rest stay in the inbox."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def feed_leftovers(inbox: Inbox | UpdateStore, dispatcher: Dispatcher, bot: Bot) -> int:
    """Feed again what a killed run left in the inbox (with PostgreSQL: what replicas that
    are gone left, bot/pg_inbox.py). Call it after the journal's own recovery has read its
    unfinished jobs, and before taking new updates."""
    from bot.stores import update_store  # bot.stores imports this module

    inbox = update_store(inbox)
    fed = 0
    for update_id, version, body, attempts in await inbox.take_leftovers(bot.id):
        if attempts > MAX_REPLAYS:
            log.error("update %s given up: its handling stopped the bot %d times", update_id, attempts - 1)
            await inbox.done(bot.id, update_id)
            continue
        try:
            if version != BODY_VERSION:
                raise ValueError(f"inbox format {version}")
            update = Update.model_validate_json(body, context={"bot": bot})
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.error("update %s in the inbox cannot be read, dropped: %s", update_id, exc)
            await inbox.done(bot.id, update_id)
            continue
        await dispatcher.feed_update(bot, update, **{REPLAYED: True})
        fed += 1
    if fed:
        log.info("fed again %d updates left unhandled by the last run", fed)
    return fed
