"""The durable inbox of several replicas: one PostgreSQL table (DATABASE_URL), the
UpdateStore that bot/inbox.py's InboxMiddleware and feed_leftovers use.

Every row says which replica is handling it (``owner``). An update Telegram sends
twice (a batch the old poller did not confirm reaches the new one; a webhook retried on
another replica) is one row: the second ``add`` is refused. What a replica leaves
unhandled when it dies is taken by another once that replica is gone (its heartbeat,
bot/replicas.py, older than GONE_AFTER_S): never what a live replica is handling, and
each row by one taker only (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from psycopg_pool import AsyncConnectionPool

from bot.inbox import BODY_VERSION, KEEP_DONE_S, feed_leftovers
from bot.replicas import GONE_AFTER_S

log = logging.getLogger(__name__)

# take_leftovers runs every few seconds; forgetting old updates (a scan) needs doing rarely.
FORGET_EVERY_S = 600.0


class PgUpdates:
    """An UpdateStore over ``pool`` (whose owner closes it) for replica ``replica_id``."""

    def __init__(self, pool: AsyncConnectionPool, replica_id: str, *, gone_after_s: float = GONE_AFTER_S) -> None:
        self.pool = pool
        self.replica_id = replica_id
        self.gone_after_s = gone_after_s
        self._forgot_at = -FORGET_EVERY_S

    async def add(self, bot_id: int, update: Update) -> bool:
        """Record an update as this replica's; False if any replica recorded it already."""
        body = update.model_dump_json(by_alias=True, exclude_unset=True, exclude_none=True)
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO inbox (bot_id, update_id, version, body, owner) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (bot_id, update_id) DO NOTHING",
                (bot_id, update.update_id, BODY_VERSION, body, self.replica_id),
            )
            return cursor.rowcount > 0

    async def done(self, bot_id: int, update_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE inbox SET done_at = now() WHERE bot_id = %s AND update_id = %s", (bot_id, update_id)
            )

    async def take_leftovers(self, bot_id: int) -> list[tuple[int, int, str, int]]:
        """The unhandled updates of replicas that are gone (or of none), oldest first:
        (update_id, version, body, attempts), each now this replica's with its attempt
        counted. Forgets updates received long ago."""
        async with self.pool.connection() as conn:
            if time.monotonic() - self._forgot_at >= FORGET_EVERY_S:
                await conn.execute(
                    "DELETE FROM inbox WHERE received_at < now() - make_interval(secs => %s)", (KEEP_DONE_S,)
                )
                self._forgot_at = time.monotonic()
            rows = await (
                await conn.execute(
                    """
                    WITH orphans AS (
                        SELECT bot_id, update_id FROM inbox i
                        WHERE bot_id = %(bot)s AND done_at IS NULL
                          AND (owner IS NULL OR (owner <> %(me)s AND NOT EXISTS (
                                SELECT 1 FROM replicas r
                                WHERE r.id = i.owner AND r.last_seen > now() - make_interval(secs => %(gone)s))))
                        FOR UPDATE OF i SKIP LOCKED
                    )
                    UPDATE inbox SET attempts = inbox.attempts + 1, owner = %(me)s
                    FROM orphans WHERE inbox.bot_id = orphans.bot_id AND inbox.update_id = orphans.update_id
                    RETURNING inbox.update_id, inbox.version, inbox.body, inbox.attempts
                    """,
                    {"bot": bot_id, "me": self.replica_id, "gone": self.gone_after_s},
                )
            ).fetchall()
        return sorted((int(u), int(v), b, int(a)) for u, v, b, a in rows)

    async def unhandled(self) -> int:
        """Updates not handled yet, by every replica."""
        async with self.pool.connection() as conn:
            row = await (await conn.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")).fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        """Nothing of its own to close: the pool is shared by every store."""


async def keep_feeding_leftovers(
    store: PgUpdates, dispatcher: Dispatcher, bot: Bot, stop: asyncio.Event, interval_s: float = GONE_AFTER_S / 3
) -> None:
    """Until ``stop``: every ``interval_s``, feed again what replicas that died left
    unhandled. A replica dies at any time, not only before this one starts; every replica
    may run this (each update goes to one taker), in polling and webhook mode alike."""
    while not stop.is_set():
        try:
            await feed_leftovers(store, dispatcher, bot)
        except Exception:  # the database away for a moment: next time
            log.exception("inbox leftovers of other replicas not taken")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
