"""Each user's saved /draw defaults in the shared PostgreSQL database (DATABASE_URL): the
SettingsStore of replicas, read and written exactly as bot/user_settings.py's SQLite
store (same JSON, same tolerant decoding of a row another version wrote)."""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import AsyncConnectionPool

from bot.user_settings import CHOICES_VERSION, UserChoices, decode_choices

log = logging.getLogger(__name__)


class PgSettings:
    """A SettingsStore over ``pool`` (whose owner closes it)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def get(self, owner_id: int) -> UserChoices:
        """The owner's choices; none when they can't be read (every message asks for the
        language: a database hiccup must not stop them)."""
        try:
            async with self.pool.connection() as conn:
                row = await (
                    await conn.execute("SELECT choices, version FROM user_settings WHERE owner_id = %s", (owner_id,))
                ).fetchone()
        except psycopg.Error as exc:
            log.error("settings of %s can't be read: %s", owner_id, exc)
            return UserChoices()
        return UserChoices() if row is None else decode_choices(row[0], row[1], owner_id)

    async def save(self, owner_id: int, choices: UserChoices) -> None:
        if choices == UserChoices():
            await self.clear(owner_id)  # nothing chosen: nothing kept
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO user_settings (owner_id, version, choices) VALUES (%s, %s, %s)"
                " ON CONFLICT (owner_id) DO UPDATE SET version = excluded.version, choices = excluded.choices,"
                " updated_at = now()",
                (owner_id, CHOICES_VERSION, choices.to_json()),
            )

    async def clear(self, owner_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM user_settings WHERE owner_id = %s", (owner_id,))

    async def close(self) -> None:
        """Nothing of its own to close: the pool is shared by every store."""
