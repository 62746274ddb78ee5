"""Several bot replicas on one PostgreSQL database (DATABASE_URL): who they are, which
are alive, and which one polls Telegram.

- Each replica has an id made at start (``make_replica_id``) and a row in ``replicas``
  that its ``Heartbeat`` refreshes every few seconds: its host, GPUs and a little state
  for /status. A replica whose row was not refreshed for ``GONE_AFTER_S`` is gone: what
  it held (the updates it was handling, bot/pg_inbox.py) may be taken by another.
- Only one process may call getUpdates. ``PollerElection`` elects it with a session-level
  advisory lock (``POLLER_LOCK``) held on a connection of its own: when the poller dies,
  its session ends and PostgreSQL frees the lock, so another replica (trying every
  second) takes over within a few seconds. No coordination service of our own.

Times are the database's (``now()``), never a replica's clock: hosts' clocks differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from bot.pg_database import POLLER_LOCK

log = logging.getLogger(__name__)

# How often a replica refreshes its row, and after how long without it the replica is gone.
HEARTBEAT_S = 5.0
GONE_AFTER_S = 15.0
# The election's own connection: how long connecting may take.
CONNECT_TIMEOUT_S = 5


def make_replica_id(host: str | None = None) -> str:
    """``host-pid-random``: unique even where containers all run as pid 1 on one host name."""
    return f"{host or socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Replica:
    """A replica as its last heartbeat described it."""

    id: str
    host: str
    devices: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    last_seen: datetime | None = None
    age_s: float = 0.0  # seconds since its last heartbeat, by the database's clock


def _json_or(raw: str, default: Any, expected: type) -> Any:
    """A column written by another version, read tolerantly: ``default`` when unreadable."""
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return default
    return value if isinstance(value, expected) else default


async def seen(pool: AsyncConnectionPool, within_s: float = 60.0) -> list[Replica]:
    """The replicas whose heartbeat came within the last ``within_s`` seconds (for /status),
    by host and id."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT id, host, devices, info, started_at, last_seen,"
                " EXTRACT(EPOCH FROM now() - last_seen)::float8 FROM replicas"
                " WHERE last_seen > now() - make_interval(secs => %s) ORDER BY host, id",
                (within_s,),
            )
        ).fetchall()
    return [
        Replica(
            id=row[0],
            host=row[1],
            devices=[str(d) for d in _json_or(row[2], [], list)],
            info=_json_or(row[3], {}, dict),
            started_at=row[4],
            last_seen=row[5],
            age_s=max(0.0, row[6]),
        )
        for row in rows
    ]


class Heartbeat:
    """Keeps this replica's row in ``replicas`` fresh: written at ``start()``, every
    ``interval_s`` after, removed at ``close()`` (a replica that stopped is gone at once).
    ``info_fn`` is asked each time for what /status shows (version, model state, ...);
    it must be quick and JSON-able. A failed write is logged, never raised: the next one
    may pass, and until GONE_AFTER_S nobody takes what this replica holds."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        replica_id: str,
        host: str,
        devices: Sequence[str],
        info_fn: Callable[[], Mapping[str, Any]] | None = None,
        *,
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self.pool = pool
        self.replica_id = replica_id
        self.host = host
        self.devices = [str(d) for d in devices]
        self.info_fn = info_fn
        self.interval_s = interval_s
        self._task: asyncio.Task | None = None

    def _info(self) -> str:
        try:
            return json.dumps(dict(self.info_fn()) if self.info_fn else {}, default=str)
        except Exception:  # a bad info_fn must not stop the heartbeat
            log.exception("replica info could not be made")
            return "{}"

    async def beat(self) -> None:
        """Write the row now (raises what the database raised)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO replicas (id, host, devices, info) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET host = excluded.host, devices = excluded.devices,"
                " info = excluded.info, last_seen = now()",
                (self.replica_id, self.host, json.dumps(self.devices), self._info()),
            )

    async def start(self) -> None:
        """The first beat (raises: a replica that can't write its row should not start),
        then one every ``interval_s`` in the background."""
        await self.beat()
        self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.replica_id}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.beat()
            except Exception as exc:
                log.warning("heartbeat of replica %s not written: %s", self.replica_id, exc)

    async def close(self) -> None:
        """Stop beating and remove the row: other replicas may take what this one left
        at once, so close it after the inbox's handlers and the draws have stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with self.pool.connection() as conn:
                await conn.execute("DELETE FROM replicas WHERE id = %s", (self.replica_id,))
        except Exception as exc:  # it goes stale on its own
            log.warning("replica %s not removed from replicas: %s", self.replica_id, exc)


class PollerElection:
    """Elects the one replica that polls Telegram: whoever holds the session-level
    advisory lock ``POLLER_LOCK`` on a DEDICATED connection (never a pool's: the lock
    lives as long as the session).

    ``await wait_until_elected(stop)`` tries every ``retry_s`` until it holds the lock
    (True) or ``stop`` is set (False). While elected, the connection is checked every
    ``check_s`` (``SELECT 1``); when it fails (the database restarted, the network broke,
    our backend was terminated) the lock may be someone else's now: ``lost`` is set and
    the holder must stop polling. It may then call ``wait_until_elected`` again.
    ``close()`` gives the lock up (a graceful stop hands the role over at once).
    """

    def __init__(
        self,
        database: str | AsyncConnectionPool,
        *,
        name: str = "",
        retry_s: float = 1.0,
        check_s: float = 2.0,
        key: int = POLLER_LOCK,
    ) -> None:
        self._conninfo = database.conninfo if isinstance(database, AsyncConnectionPool) else database
        self.name = name
        self.retry_s = retry_s
        self.check_s = check_s
        self.key = key
        self.lost = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._watch: asyncio.Task | None = None

    @property
    def elected(self) -> bool:
        return self._watch is not None and not self.lost.is_set()

    async def _connect(self) -> AsyncConnection:
        return await AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=f"poller election {self.name}"[:63],
            # A dead server or network is noticed by the kernel too, not only by our checks.
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )

    async def _try(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = await self._connect()
        row = await (await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))).fetchone()
        return bool(row and row[0])

    async def wait_until_elected(self, stop: asyncio.Event) -> bool:
        """Hold the poller lock: True once held (at once if held already), False when
        ``stop`` was set first."""
        if self.elected:
            return True
        await self._drop()  # after a loss: a fresh connection, ``lost`` cleared
        self.lost.clear()
        while not stop.is_set():
            try:
                if await asyncio.wait_for(self._try(), timeout=CONNECT_TIMEOUT_S * 2):
                    log.info("elected to poll Telegram (%s)", self.name or "this replica")
                    self._watch = asyncio.create_task(self._check(), name="poller election check")
                    return True
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("poller election: database not reached (%s); trying again", exc or type(exc).__name__)
                await self._close_connection()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry_s)
        return False

    async def _check(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            try:
                assert self._conn is not None
                await asyncio.wait_for(self._conn.execute("SELECT 1"), timeout=max(self.check_s, 5.0))
            except (psycopg.Error, OSError, TimeoutError, AssertionError) as exc:
                log.error("poller lock lost (%s): another replica may poll now", exc or type(exc).__name__)
                self.lost.set()
                await self._close_connection()
                return

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()  # the session ends: PostgreSQL frees the lock

    async def _drop(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        await self._close_connection()

    async def close(self) -> None:
        """Give the role up (if held) and close the connection."""
        await self._drop()


async def while_elected(
    election: PollerElection, stop: asyncio.Event, work: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Until ``stop``: wait to be elected, then run ``work(until)``, where ``until`` is set
    when the role is lost or ``stop`` is set (``work`` returns then: polling stops), and
    stand again. E.g. ``await while_elected(election, stop, lambda until:
    take_polled_updates(bot, dispatcher, until))``. The caller closes ``election``.

    A poller whose connection broke stops within ``check_s``; the next one may start a
    little earlier (Telegram answers one of two getUpdates 409 Conflict, which aiogram
    retries, and the inbox records an update both got once)."""
    while not stop.is_set():
        if not await election.wait_until_elected(stop):
            return
        until = asyncio.Event()
        watcher = asyncio.create_task(_set_on_first(until, stop, election.lost), name="poller role watch")
        try:
            await work(until)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if not until.is_set():  # work ended on its own while still elected: not in a tight loop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), election.retry_s)


async def _set_on_first(target: asyncio.Event, *events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        target.set()
    finally:
        for wait in waits:
            wait.cancel()
