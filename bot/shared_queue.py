"""A replica's share of the PostgreSQL job queue (DATABASE_URL): claim, draw, deliver.

Every replica accepts requests into the shared ``jobs`` table (DrawService.submit only
writes the row there) and, while its own engine has room, claims the next batch in line
(bot/pg_jobs.py: round-robin by user, one batch key), draws it on its GPUs and delivers
it through the same DrawService code as the SQLite path. Its leases are renewed while it
holds rows; a replica that dies stops renewing, and another claims its rows once their
leases run out (a request drawn but not delivered before a crash is drawn again, once).
A graceful stop hands back what it claimed and did not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg
from aiogram import Bot

from bot.draw_service import DrawService
from bot.pg_jobs import PgJobs
from config import Settings
from generation import GenerationEngine, ModelState
from generation.translation import Translator

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 30.0  # a dead replica's requests wait this long before another draws them
CLAIM_INTERVAL_S = 0.25  # how often an idle replica looks for work
# Leases are renewed every lease / 4, at least this often: a request cancelled through
# another replica after this one claimed it is dropped within this time.
RENEW_MAX_S = 2.0
RETRY_S = 2.0  # after the database refused a claim


class SharedQueue:
    """The claim loop and lease keeper of one replica (see the module's doc)."""

    def __init__(
        self,
        draws: DrawService,
        engine: GenerationEngine,
        jobs: PgJobs,
        replica_id: str,
        *,
        max_batch: int,
        devices: int,
        lease_s: float = DEFAULT_LEASE_S,
        claim_interval_s: float = CLAIM_INTERVAL_S,
    ) -> None:
        self.draws, self.engine, self.jobs, self.replica_id = draws, engine, jobs, replica_id
        self.max_batch, self.devices = max_batch, max(1, devices)
        self.lease_s, self.claim_interval_s = lease_s, claim_interval_s
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="claim jobs"),
            asyncio.create_task(self._renew_loop(), name="renew leases"),
        ]

    async def close(self, *, release: bool = True) -> None:
        """Stop claiming and renewing; hand back every row this replica claimed and did not
        finish (call it after DrawService.shutdown, which finishes the running batch).
        ``release=False``: keep them until their leases run out, as a crash would."""
        self._stopped.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not release:
            return
        try:
            released = await self.jobs.release(self.replica_id)
        except Exception:  # the database is gone: the leases run out instead
            log.exception("releasing the claimed jobs failed; they wait for their leases to run out")
            return
        if released:
            log.info("handed back %d unfinished jobs to the shared queue", released)

    def room(self) -> int:
        """How many requests to claim now: a batch per GPU waiting at most, and none
        while the models are not ready (another replica may draw them meanwhile)."""
        if self.draws.stopping or self.engine.models_state is not ModelState.READY:
            return 0
        return max(0, self.max_batch * self.devices - self.engine.status().queued)

    async def claim_once(self) -> int:
        """Claim one batch if there is room; how many requests were claimed."""
        room = self.room()
        if room <= 0:
            return 0
        claimed = await self.jobs.claim(self.replica_id, min(room, self.max_batch), self.lease_s)
        for row in claimed:
            await self.draws.serve_claimed(row)
        return len(claimed)

    async def _claim_loop(self) -> None:
        while not self._stopped.is_set():
            pause = self.claim_interval_s
            try:
                claimed = await self.claim_once()
            except psycopg.Error as exc:  # the database away for a moment: try again, a little later
                log.warning("claiming jobs failed: %s: %s", type(exc).__name__, exc)
                claimed, pause = 0, max(pause, RETRY_S)
            except Exception:
                log.exception("claiming jobs failed")
                claimed, pause = 0, max(pause, RETRY_S)
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), pause)

    async def _renew_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                asked_at = time.monotonic()
                held = await self.jobs.renew(self.replica_id, self.lease_s)
                await self.draws.leases_renewed(held, asked_at)
            except psycopg.Error as exc:  # the leases may run out: fencing keeps the work right
                log.warning("renewing the leases failed: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("renewing the leases failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), min(self.lease_s / 4, RENEW_MAX_S))


async def start_shared_draws(
    bot: Bot,
    engine: GenerationEngine,
    jobs: PgJobs,
    settings: Settings,
    translator: Translator | None,
    replica_id: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
) -> tuple[DrawService, SharedQueue]:
    """The DrawService of a replica sharing ``jobs`` (PostgreSQL), and its claim loop,
    started. Wiring in bot/app.py run_bot, PostgreSQL mode (instead of
    ``DrawService(bot, engine, journal, ...)``)::

        jobs = PgJobs(pool, max_queue=settings.max_queue, max_pending_per_user=settings.max_pending_per_user)
        draws, shared = await start_shared_draws(
            bot, engine, jobs, settings, translator, replica_id, lease_s=settings.job_lease_s
        )
        dispatcher = create_dispatcher(settings, engine, draws, ...)  # as today
        await engine.start()
        draws.start_recovery()  # a no-op in this mode: the claim loop takes over rows of dead replicas
        ...
        finally:
            await draws.shutdown(settings.shutdown_grace_s)  # stops claiming, finishes the running batch
            await shared.close()  # hands back what it claimed and did not finish
            await engine.close()

    The claim loop claims only once the engine's models are ready, so it may start
    before ``engine.start()``. ``lease_s``: how long a dead replica's requests wait
    before another replica draws them (renewed every lease_s / 4, at most 2 s, while alive)."""
    draws = DrawService(
        bot, engine, jobs, settings.progress_interval_s, translator, replica_id=replica_id, lease_s=lease_s
    )
    shared = SharedQueue(
        draws,
        engine,
        jobs,
        replica_id,
        max_batch=settings.max_batch,
        devices=len(engine.status().devices),
        lease_s=lease_s,
    )
    shared.start()
    return draws, shared
