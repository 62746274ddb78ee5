"""Where the bot keeps what it must not lose, chosen in one place from the settings:
SQLite files under DATA_DIR (one process, the default) or, with DATABASE_URL, the
PostgreSQL database that several replicas share (bot/pg_database.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.inbox import Inbox
from bot.journal import Journal
from bot.startup_checks import StartupError
from bot.user_settings import UserSettings
from config import Settings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from bot.pg_inbox import PgUpdates
    from bot.pg_jobs import PgJobs
    from bot.pg_settings import PgSettings

log = logging.getLogger(__name__)


@dataclass
class Stores:
    """The journal of requests, the inbox of updates and the users' settings. SQLite: the
    synchronous classes as before; PostgreSQL: PgJobs, PgUpdates and PgSettings over one
    pool, and the id this replica is known by."""

    journal: Journal | PgJobs
    inbox: Inbox | PgUpdates
    user_settings: UserSettings | PgSettings
    pool: AsyncConnectionPool | None = None
    replica_id: str = ""

    @property
    def shared(self) -> bool:
        """Several replicas on one PostgreSQL database."""
        return self.pool is not None

    async def close(self) -> None:
        if self.pool is None:
            self.inbox.close()
            self.user_settings.close()
            self.journal.close()
            return
        await self.pool.close()


def gone_after_s(settings: Settings) -> float:
    """How long a replica may stay silent before the others take what it held: its
    unhandled updates as soon as its jobs (JOB_LEASE_S), and at most GONE_AFTER_S."""
    from bot.replicas import GONE_AFTER_S

    return min(GONE_AFTER_S, float(settings.job_lease_s))


def heartbeat_s(settings: Settings) -> float:
    """A replica's heartbeat comes at least three times within gone_after_s."""
    from bot.replicas import HEARTBEAT_S

    return min(HEARTBEAT_S, gone_after_s(settings) / 3)


async def open_stores(settings: Settings) -> Stores:
    """The stores the settings ask for. With DATABASE_URL: the schema created or migrated
    first; a database that can't be reached or whose schema is newer than this version
    knows stops the start with a StartupError (the URL's password is never in it)."""
    if settings.database_url is None:
        return Stores(
            Journal.in_dir(settings.data_dir), Inbox.in_dir(settings.data_dir), UserSettings.in_dir(settings.data_dir)
        )
    import psycopg
    from psycopg_pool import PoolTimeout

    from bot.pg_database import NewerSchema, open_pool, redacted

    url = settings.database_url.get_secret_value()
    try:
        # One connection first: a wrong host, port or password is said at once (the pool
        # would retry it for its whole timeout and then only say it timed out).
        probe = await psycopg.AsyncConnection.connect(url, connect_timeout=10)
        await probe.close()
        pool = await open_pool(url)
    except NewerSchema as exc:
        raise StartupError(f"DATABASE_URL: {exc}") from None
    except (psycopg.Error, PoolTimeout, OSError) as exc:
        reason = " ".join(str(exc).split())  # psycopg's message spans lines
        raise StartupError(f"DATABASE_URL {redacted(url)} can't be used: {reason}") from None
    from bot.pg_inbox import PgUpdates
    from bot.pg_jobs import PgJobs
    from bot.pg_settings import PgSettings
    from bot.replicas import make_replica_id

    replica_id = make_replica_id()
    log.info("replica %s on the shared database", replica_id)
    return Stores(
        journal=PgJobs(pool, max_queue=settings.max_queue, max_pending_per_user=settings.max_pending_per_user),
        inbox=PgUpdates(pool, replica_id, gone_after_s=gone_after_s(settings)),
        user_settings=PgSettings(pool),
        pool=pool,
        replica_id=replica_id,
    )
