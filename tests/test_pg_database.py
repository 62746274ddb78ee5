"""The shared database's schema: created, migrated once by replicas starting together,
and refused when a newer version migrated it."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from bot.pg_database import MIGRATIONS, SCHEMA_VERSION, NewerSchema, migrate, open_pool, redacted, schema_version


async def test_the_schema_is_created_on_an_empty_database(database_url: str) -> None:
    pool = await open_pool(database_url)
    try:
        async with pool.connection() as conn:
            assert await schema_version(conn) == SCHEMA_VERSION
            tables = {r[0] for r in await (await conn.execute("SELECT tablename FROM pg_tables")).fetchall()}
        assert {"jobs", "job_images", "inbox", "user_settings", "replicas", "schema_version"} <= tables
    finally:
        await pool.close()


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    pools = await asyncio.gather(*(open_pool(database_url) for _ in range(3)))
    try:
        async with pools[0].connection() as conn:
            rows = await (await conn.execute("SELECT version FROM schema_version")).fetchall()
        assert rows == [(SCHEMA_VERSION,)]
    finally:
        await asyncio.gather(*(p.close() for p in pools))


async def test_a_later_migration_runs_on_a_database_of_an_older_version(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert await migrate(conn) == SCHEMA_VERSION
        newer = (*MIGRATIONS, "ALTER TABLE jobs ADD COLUMN extra TEXT")
        assert await migrate(conn, newer) == SCHEMA_VERSION + 1
        assert await schema_version(conn) == SCHEMA_VERSION + 1
        await conn.execute("SELECT extra FROM jobs")


async def test_a_replica_refuses_a_schema_a_newer_version_migrated(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await migrate(conn, (*MIGRATIONS, "SELECT 1"))
    with pytest.raises(NewerSchema, match=f"version {SCHEMA_VERSION + 1}"):
        await open_pool(database_url)


def test_the_password_never_reaches_a_log_line() -> None:
    assert redacted("postgresql://bot:s3cret@db:5432/bot") == "postgresql://bot:***@db:5432/bot"
    assert "s3cret" not in redacted("host=db user=bot password=s3cret dbname=bot")
    assert redacted("postgresql://bot@db/bot") == "postgresql://bot@db/bot"
