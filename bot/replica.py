"""One replica of several sharing a PostgreSQL database (DATABASE_URL), as run_bot runs
it: the shared queue's draws, the heartbeat, the poller election, and taking over the
updates that replicas which died left unhandled. bot/app.py wires it; the parts are in
bot/shared_queue.py, bot/replicas.py and bot/pg_inbox.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher

from bot.draw_service import DrawService
from bot.handlers.status import SharedView
from bot.pg_inbox import keep_feeding_leftovers
from bot.replicas import Heartbeat, PollerElection, seen, while_elected
from bot.shared_queue import SharedQueue, start_shared_draws
from bot.storage import Stores, gone_after_s, heartbeat_s
from bot.web.metrics import SharedCollector
from config import Settings
from generation import GenerationEngine
from generation.translation import Translator

log = logging.getLogger(__name__)

# /status lists the replicas whose heartbeat came within this many seconds.
SEEN_WITHIN_S = 60.0


class Replica:
    def __init__(self, stores: Stores, settings: Settings, engine: GenerationEngine) -> None:
        assert stores.pool is not None and settings.database_url is not None
        self.stores, self.settings, self.engine = stores, settings, engine
        self.pool = stores.pool
        self.id = stores.replica_id
        self.election = PollerElection(settings.database_url.get_secret_value(), name=self.id)
        self.heartbeat: Heartbeat | None = None
        self.queue: SharedQueue | None = None
        self._updates_stopped = asyncio.Event()
        self._leftovers: asyncio.Task | None = None

    async def start_draws(self, bot: Bot, translator: Translator | None) -> DrawService:
        """This replica's DrawService (requests go into the shared queue) and its claim
        loop (it draws what it claims, while its engine has room)."""
        draws, self.queue = await start_shared_draws(
            bot,
            self.engine,
            self.stores.journal,
            self.settings,
            translator,
            self.id,
            lease_s=float(self.settings.job_lease_s),
        )
        return draws

    async def start_heartbeat(self) -> None:
        """Seen by the others from now on: before any update is taken, since an update
        of a replica without a fresh heartbeat may be taken over."""
        self.heartbeat = Heartbeat(
            self.pool,
            self.id,
            socket.gethostname(),
            self.engine.status().devices,
            self._info,
            interval_s=heartbeat_s(self.settings),
        )
        await self.heartbeat.start()

    def _info(self) -> dict[str, Any]:
        status = self.engine.status()
        return {
            "pid": os.getpid(),
            "poller": self.election.elected,
            "models": status.models.value,
            "queued": status.queued,
            "running": status.running,
        }

    def status_view(self) -> SharedView:
        async def replicas() -> list:
            return await seen(self.pool, SEEN_WITHIN_S)

        return SharedView(replica_id=self.id, replicas=replicas, depth=self.stores.journal.depth)

    def metrics(self) -> SharedCollector:
        return SharedCollector(self.stores.journal.depth, lambda: self.election.elected)

    def keep_feeding_leftovers(self, dispatcher: Dispatcher, bot: Bot) -> None:
        """In the background until stop_taking_updates: the unhandled updates of
        replicas that went silent, each fed to this replica's dispatcher by one taker."""
        self._leftovers = asyncio.create_task(
            keep_feeding_leftovers(
                self.stores.inbox, dispatcher, bot, self._updates_stopped, interval_s=gone_after_s(self.settings) / 3
            ),
            name="inbox leftovers",
        )

    async def poll_while_elected(self, poll: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event) -> None:
        """Poll Telegram (``poll(until)``) only while this replica holds the poller role;
        when the role is lost (its database connection broke), stop polling at once and
        wait to be elected again (bot/replicas.py while_elected). Returns once ``stop`` is set."""

        async def as_poller(until: asyncio.Event) -> None:
            await self._beat()  # /status everywhere says who polls now, not a heartbeat later
            await poll(until)
            if not stop.is_set():
                log.warning("no longer the poller: another replica may poll Telegram; waiting to be elected again")
                await self._beat()

        await while_elected(self.election, stop, as_poller)

    async def _beat(self) -> None:
        if self.heartbeat is not None:
            with contextlib.suppress(Exception):  # the next regular beat says it then
                await self.heartbeat.beat()

    async def stop_taking_updates(self) -> None:
        """No more leftovers taken, and the poller role given up (another replica takes it
        at once instead of after this one is gone)."""
        self._updates_stopped.set()
        if self._leftovers is not None:
            with contextlib.suppress(Exception):
                await self._leftovers
        await self.election.close()

    async def close(self) -> None:
        """After the running batch was delivered: hand back the jobs this replica claimed
        and did not finish, and leave the list of replicas."""
        if self.queue is not None:
            await self.queue.close()
        if self.heartbeat is not None:
            await self.heartbeat.close()
