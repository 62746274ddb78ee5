"""The shared PostgreSQL database of several bot replicas (DATABASE_URL): its schema,
created and migrated at start, and the connection pool every store of ours uses.

SQLite under DATA_DIR stays the default for one process. With DATABASE_URL every replica
keeps its jobs (with their pictures), the inbox of updates, the users' settings and its
own heartbeat here, so any replica can draw, deliver, or take over polling.

The schema has a version (``schema_version``); migrations run one after another in one
transaction under an advisory lock, so replicas starting together migrate once. A replica
refuses to start against a schema newer than it knows: it could not tell what a newer
version's rows mean.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

# Taken (transaction-scoped) while migrating: replicas starting at once migrate one at a time.
MIGRATION_LOCK = 0x6B32_3200  # "k2" 2.2, any constant of ours
# Held (session-scoped) by the replica that polls Telegram (bot/replicas.py).
POLLER_LOCK = 0x6B32_3201

# Each entry turns schema version n-1 into n. Never edit one that was released: add another.
MIGRATIONS: Sequence[str] = (
    # 1: jobs (the queue and journal), their pictures, the inbox, user settings, replicas.
    """
    CREATE TABLE jobs (
        id          BIGSERIAL PRIMARY KEY,      -- never reused: buttons carry it
        chat_id     BIGINT  NOT NULL,
        message_id  BIGINT  NOT NULL,           -- the user's message (negative: a button press)
        user_id     BIGINT  NOT NULL,
        lang        TEXT    NOT NULL,
        params      TEXT    NOT NULL,           -- GenerationParams as JSON (bot.journal.encode_params)
        params_version INTEGER NOT NULL,        -- bot.journal.PARAMS_VERSION of the writer
        images      INTEGER NOT NULL DEFAULT 0, -- pictures it draws from, in job_images
        as_document BOOLEAN NOT NULL,
        reply_to    BIGINT,                     -- what its answers reply to, when not message_id
        batch_key   TEXT    NOT NULL DEFAULT '',-- requests with equal keys can share a decoder batch
        state       TEXT    NOT NULL,           -- bot.journal.State
        error       TEXT,
        status_message_id BIGINT,               -- the message showing its place and progress
        owner       TEXT,                       -- the replica drawing it (state running)
        lease_until TIMESTAMPTZ,                -- the owner renews it; expired: another may take it
        attempts    INTEGER NOT NULL DEFAULT 0, -- times it was claimed
        claimed_at  TIMESTAMPTZ,                -- its last claim: users served least recently go first
        created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
        UNIQUE (chat_id, message_id)            -- an update Telegram sends twice is one job
    );
    CREATE INDEX jobs_unfinished ON jobs (state, user_id, id) WHERE state IN ('queued', 'running');
    CREATE INDEX jobs_claims ON jobs (user_id, claimed_at);
    CREATE TABLE job_images (
        job_id  BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        n       INTEGER NOT NULL,
        data    BYTEA   NOT NULL,               -- the picture file as the user sent it
        PRIMARY KEY (job_id, n)
    );
    CREATE TABLE inbox (
        bot_id      BIGINT  NOT NULL,
        update_id   BIGINT  NOT NULL,
        version     INTEGER NOT NULL,           -- format of body (bot.inbox.BODY_VERSION)
        body        TEXT    NOT NULL,           -- the Update as Telegram's JSON
        attempts    INTEGER NOT NULL DEFAULT 0,
        owner       TEXT,                       -- the replica handling it
        received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        done_at     TIMESTAMPTZ,                -- handled (or given up); NULL: to be fed again
        PRIMARY KEY (bot_id, update_id)
    );
    -- Replicas look for a gone replica's leftovers every few seconds: only the few unhandled rows.
    CREATE INDEX inbox_unhandled ON inbox (bot_id, update_id) WHERE done_at IS NULL;
    CREATE TABLE user_settings (
        owner_id   BIGINT  PRIMARY KEY,         -- a user's id, or a chat's for an anonymous admin
        version    INTEGER NOT NULL,            -- bot.user_settings.CHOICES_VERSION of the writer
        choices    TEXT    NOT NULL,            -- JSON, as in the SQLite store
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE replicas (
        id         TEXT PRIMARY KEY,            -- host name and process id, made at start
        host       TEXT NOT NULL,
        devices    TEXT NOT NULL,               -- JSON list of the GPUs it draws on
        info       TEXT NOT NULL DEFAULT '{}',  -- JSON: version, state, what /status shows
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        last_seen  TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class NewerSchema(RuntimeError):
    """The database was migrated by a newer version of the bot."""


def redacted(url: str) -> str:
    """DATABASE_URL fit for a log line: the password replaced."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


async def schema_version(conn: AsyncConnection) -> int:
    """The version the database is at; 0 when it has no schema of ours yet."""
    exists = await (await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")).fetchone()
    if not exists or not exists[0]:
        return 0
    row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: AsyncConnection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Bring the schema to ``len(migrations)``; the version it is at. Raises NewerSchema
    when a newer version of the bot migrated it further."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await schema_version(conn)
        if current > len(migrations):
            raise NewerSchema(
                f"the database's schema is version {current}, this bot knows up to {len(migrations)}:"
                " a newer version of the bot migrated it; run that version (or a newer one)"
            )
        for version in range(current + 1, len(migrations) + 1):
            log.info("database: migrating the schema to version %d", version)
            await conn.execute(migrations[version - 1])
        if current == 0:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(migrations),))
        elif current < len(migrations):
            await conn.execute("UPDATE schema_version SET version = %s", (len(migrations),))
    return len(migrations)


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    """A pool of autocommit connections to ``url`` with the schema migrated. Raises
    NewerSchema, or psycopg's OperationalError when the server can't be reached."""
    pool = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, kwargs={"autocommit": True}, open=False, name="database"
    )
    await pool.open(wait=True, timeout=30)
    try:
        async with pool.connection() as conn:
            await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    log.info("database %s: schema version %d", redacted(url), SCHEMA_VERSION)
    return pool
