"""The job queue shared by several bot replicas: the ``jobs`` table in PostgreSQL.

A JobStore (bot/stores.py) like the SQLite journal, plus what replicas need to share the
work: each replica *claims* batches of waiting rows under a *lease* it renews while it
draws them; a replica that dies stops renewing, and once its leases expire another
replica claims (and draws) its rows again.

- Claims take rows round-robin by user (each user's first waiting request, then each
  user's second, ...; the users served least recently first), like generation's
  FairQueue, and only rows that can share a batch with the first one
  (``GenerationParams.batch_key``). ``FOR UPDATE SKIP LOCKED``: two replicas claiming at
  once never take the same row.
- Fencing: a replica records how a request ended (``settle``), or that it started
  drawing it, only while it still owns the row; a replica whose lease ran out (stalled,
  cut off) can't overwrite the work of the one that took the row over.
- The per-user and global caps hold across replicas: ``add`` counts and inserts under
  one transaction-scoped advisory lock.

States are bot.journal.State's. A row is ``queued`` while it waits, unclaimed (owner
NULL) or claimed by a replica whose engine queues it; ``running`` once its batch started;
then sent, failed or cancelled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from bot.journal import PARAMS_VERSION, Entry, State, Unreadable, _entry, encode_params
from generation import GenerationParams, QueueFull, UserQueueFull

log = logging.getLogger(__name__)

# Taken (transaction-scoped) by ``add``: counting the waiting requests and inserting one
# is atomic across replicas, so the caps hold. Any constant of ours, beside
# bot.pg_database's MIGRATION_LOCK and POLLER_LOCK.
QUEUE_LOCK = 0x6B32_3210

_COLUMNS = "id, chat_id, message_id, user_id, lang, params, params_version, as_document, state, reply_to"
# A row another replica may claim: waiting and unclaimed, or claimed (or being drawn) by a
# replica whose lease ran out.
_CLAIMABLE = "state IN ('queued', 'running') AND (owner IS NULL OR lease_until < now())"
# The claimable rows in the order they are served: each user's 1st, then each user's 2nd,
# ...; within a turn the user served least recently first (never served: first), then the
# one waiting longest.
_ORDERED = f"""
    WITH waiting AS (
        SELECT id, user_id, batch_key,
               row_number() OVER (PARTITION BY user_id ORDER BY id) AS turn,
               min(id) OVER (PARTITION BY user_id) AS head
        FROM jobs WHERE {_CLAIMABLE}
    ), served AS (
        SELECT user_id, max(claimed_at) AS last FROM jobs
        WHERE claimed_at IS NOT NULL AND user_id IN (SELECT user_id FROM waiting)
        GROUP BY user_id
    )
    SELECT w.id, w.batch_key,
           row_number() OVER (ORDER BY w.turn, s.last NULLS FIRST, w.head, w.id) AS place
    FROM waiting w LEFT JOIN served s USING (user_id)
"""
CANDIDATES = 1000  # a claim looks this far down the line for requests sharing a batch
# A request claimed this many times was never finished by any replica that took it (each
# died or lost it while drawing): it may be what kills them, so it is failed, not drawn.
MAX_CLAIMS = 4


def batch_key_text(params: GenerationParams) -> str:
    """``params.batch_key`` as stored in jobs.batch_key: equal keys, equal strings."""
    return json.dumps(list(params.batch_key))


@dataclass(frozen=True)
class Claimed:
    """A row a replica claimed: the request (with its pictures) or why it can't be read."""

    item: Entry | Unreadable
    status_message_id: int | None  # the message showing its place and progress, if sent yet
    attempts: int  # times it was claimed, this one included


class PgJobs:
    """Accepted requests in PostgreSQL, shared by every replica (see the module's doc)."""

    def __init__(self, pool: AsyncConnectionPool, *, max_queue: int, max_pending_per_user: int) -> None:
        self._pool = pool
        self.max_queue = max_queue
        self.max_pending_per_user = max_pending_per_user

    async def close(self) -> None:
        """Nothing of its own to close: the pool belongs to whoever opened it."""

    # -- the JobStore interface ------------------------------------------------------

    async def add(
        self,
        *,
        chat_id: int,
        message_id: int,
        user_id: int,
        lang: str,
        params: GenerationParams,
        as_document: bool,
        images: Sequence[bytes] = (),
        reply_to: int | None = None,
        enforce_limits: bool = True,
    ) -> int | None:
        """Record an accepted request with its pictures, waiting to be claimed; None if
        this message was recorded before. Raises UserQueueFull or QueueFull (and records
        nothing) when the user, or everyone, has as many requests waiting as allowed."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (QUEUE_LOCK,))
            seen = await conn.execute(
                "SELECT 1 FROM jobs WHERE chat_id = %s AND message_id = %s", (chat_id, message_id)
            )
            if await seen.fetchone() is not None:
                return None
            if enforce_limits:
                counted = await conn.execute(
                    "SELECT count(*) FILTER (WHERE user_id = %s), count(*) FROM jobs WHERE state = 'queued'", (user_id,)
                )
                mine, everyone = await counted.fetchone()
                if mine >= self.max_pending_per_user:
                    raise UserQueueFull()
                if everyone >= self.max_queue:
                    raise QueueFull()
            inserted = await conn.execute(
                "INSERT INTO jobs (chat_id, message_id, user_id, lang, params, params_version, images, as_document,"
                " reply_to, batch_key, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    chat_id,
                    message_id,
                    user_id,
                    lang,
                    encode_params(params),
                    PARAMS_VERSION,
                    len(images),
                    as_document,
                    reply_to,
                    batch_key_text(params),
                    State.QUEUED.value,
                ),
            )
            (job_id,) = await inserted.fetchone()
            if images:
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO job_images (job_id, n, data) VALUES (%s, %s, %s)",
                        [(job_id, n, data) for n, data in enumerate(images)],
                    )
        return job_id

    async def remove(self, job_id: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))

    async def mark(self, job_id: int, state: State, error: str | None = None) -> None:
        """Record a state whoever owns the row (a cancel before any claim, an unreadable
        row); a replica drawing it uses ``settle``."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET state = %s, error = %s, updated_at = now() WHERE id = %s",
                (State(state).value, error, job_id),
            )
            if state in (State.SENT, State.FAILED, State.CANCELLED):
                await conn.execute("DELETE FROM job_images WHERE job_id = %s", (job_id,))

    async def unfinished(self) -> list[Entry | Unreadable]:
        """Every row neither sent, failed nor cancelled (whoever draws it), oldest first."""
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {_COLUMNS}, images FROM jobs WHERE state IN ('queued', 'running') ORDER BY id"
                )
            ).fetchall()
            return [await self._with_images(conn, _entry(row[:-1]), row[-1]) for row in rows]

    async def get(self, job_id: int) -> Entry | Unreadable | None:
        """One request, whatever its state (its pictures not read); None when there is none."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = %s", (job_id,))).fetchone()
        return None if row is None else _entry(row)

    async def counts(self) -> dict[str, int]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute("SELECT state, count(*) FROM jobs GROUP BY state")).fetchall()
        return {state: int(n) for state, n in rows}

    async def _with_images(self, conn, item: Entry | Unreadable, count: object) -> Entry | Unreadable:
        """The entry with its pictures read back; Unreadable when some are missing."""
        if isinstance(item, Unreadable):
            return item
        stored = count if isinstance(count, int) and not isinstance(count, bool) else 0
        needed = max(stored, item.params.image_count)
        if not needed:
            return item
        rows = await (
            await conn.execute("SELECT n, data FROM job_images WHERE job_id = %s AND n < %s", (item.id, needed))
        ).fetchall()
        found = {n: bytes(data) for n, data in rows}
        missing = [n for n in range(needed) if n not in found]
        if missing:
            return Unreadable(
                item.id,
                item.chat_id,
                item.message_id,
                item.lang,
                f"pictures missing: {missing}",
                message="pics-core-missing-pictures",
            )
        return dataclasses.replace(item, images=tuple(found[n] for n in range(needed)))

    # -- sharing the work ------------------------------------------------------------

    async def claim(self, replica_id: str, limit: int, lease_s: float) -> list[Claimed]:
        """Up to ``limit`` waiting requests that can share one batch, now ``replica_id``'s
        for ``lease_s`` seconds (renew them while drawing): the first in line (round-robin
        by user) and the next ones in line with its batch key. Rows another replica is
        claiming at this moment are skipped, never waited for."""
        async with self._pool.connection() as conn, conn.transaction():
            order = await (await conn.execute(f"{_ORDERED} ORDER BY place LIMIT %s", (CANDIDATES,))).fetchall()
            if not order:
                return []
            ids = [row[0] for row in order]
            first = await (
                await conn.execute(
                    f"SELECT id, batch_key FROM jobs WHERE id = ANY(%s) AND {_CLAIMABLE}"
                    " ORDER BY array_position(%s::bigint[], id) LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (ids, ids),
                )
            ).fetchone()
            if first is None:  # all of them being claimed by others right now
                return []
            first_id, key = first
            chosen = [first_id]
            if limit > 1:
                same = [i for i, k, _ in order if k == key and i != first_id]
                more = await (
                    await conn.execute(
                        f"SELECT id FROM jobs WHERE id = ANY(%s) AND {_CLAIMABLE}"
                        " ORDER BY array_position(%s::bigint[], id) LIMIT %s FOR UPDATE SKIP LOCKED",
                        (same, same, limit - 1),
                    )
                ).fetchall()
                chosen += [row[0] for row in more]
            rows = await (
                await conn.execute(
                    "UPDATE jobs SET owner = %s, lease_until = now() + make_interval(secs => %s), state = 'queued',"
                    " attempts = attempts + 1, claimed_at = now(), updated_at = now()"
                    f" WHERE id = ANY(%s) RETURNING {_COLUMNS}, images, status_message_id, attempts",
                    (replica_id, lease_s, chosen),
                )
            ).fetchall()
            by_id = {row[0]: row for row in rows}
            claimed = []
            for job_id in chosen:
                row = by_id[job_id]
                item = await self._with_images(conn, _entry(row[:10]), row[10])
                if row[12] > MAX_CLAIMS and isinstance(item, Entry):
                    reason = f"claimed {row[12]} times, never finished: the replicas drawing it stopped"
                    item = Unreadable(item.id, item.chat_id, item.reply_id, item.lang, reason, message="failed")
                claimed.append(Claimed(item, row[11], row[12]))
        return claimed

    async def renew(self, replica_id: str, lease_s: float) -> dict[int, int | None]:
        """Extend the leases of every unfinished row ``replica_id`` owns; those rows, each
        with its status message's id (sent by the replica that accepted it, maybe after
        the claim). A row missing from the answer is no longer this replica's."""
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "UPDATE jobs SET lease_until = now() + make_interval(secs => %s)"
                    " WHERE owner = %s AND state IN ('queued', 'running') RETURNING id, status_message_id",
                    (lease_s, replica_id),
                )
            ).fetchall()
        return dict(rows)

    @staticmethod
    async def _update_owned(conn, assignments: str, values: tuple, job_id: int, replica_id: str) -> bool:
        """``UPDATE jobs SET <assignments>`` on one unfinished row, only while it is still
        ``replica_id``'s (fencing: its lease may have run out and another replica taken it);
        whether it was."""
        cursor = await conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = %s AND owner = %s AND state IN ('queued', 'running')",
            (*values, job_id, replica_id),
        )
        return cursor.rowcount == 1

    async def start(self, job_id: int, replica_id: str) -> bool:
        """Its batch started drawing; False when the row is no longer this replica's."""
        async with self._pool.connection() as conn:
            return await self._update_owned(conn, "state = 'running', updated_at = now()", (), job_id, replica_id)

    async def settle(self, job_id: int, replica_id: str, state: State, error: str | None = None) -> bool:
        """Record how a request this replica drew ended, only while the row is still its
        own (fencing); False when it is not (its lease ran out and another replica took
        it, or it was settled already)."""
        async with self._pool.connection() as conn, conn.transaction():
            assignments = "state = %s, error = %s, lease_until = NULL, updated_at = now()"
            if not await self._update_owned(conn, assignments, (State(state).value, error), job_id, replica_id):
                return False
            if state in (State.SENT, State.FAILED, State.CANCELLED):
                await conn.execute("DELETE FROM job_images WHERE job_id = %s", (job_id,))
        return True

    async def keep(self, job_id: int, replica_id: str, lease_s: float) -> bool:
        """Whether the row is still this replica's, its lease extended by ``lease_s`` if so
        (checked just before delivering: no other replica takes it meanwhile)."""
        async with self._pool.connection() as conn:
            assignments = "lease_until = now() + make_interval(secs => %s)"
            return await self._update_owned(conn, assignments, (lease_s,), job_id, replica_id)

    async def release(self, replica_id: str) -> int:
        """Hand back every unfinished row of ``replica_id`` (a graceful stop): waiting
        again, for any replica to claim at once; how many."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET owner = NULL, lease_until = NULL, state = 'queued', updated_at = now()"
                " WHERE owner = %s AND state IN ('queued', 'running')",
                (replica_id,),
            )
            return cursor.rowcount

    async def give_back(self, job_id: int, replica_id: str) -> bool:
        """Hand back one row this replica claimed and can't draw (its models failed)."""
        async with self._pool.connection() as conn:
            assignments = "owner = NULL, lease_until = NULL, state = 'queued', updated_at = now()"
            return await self._update_owned(conn, assignments, (), job_id, replica_id)

    async def cancel(self, job_id: int, user_id: int) -> str:
        """Cancel a request for ``user_id`` while it waits, claimed by a replica or not
        (the replica that claimed it learns it at its next renewal, and neither draws nor
        sends it): "cancelled", "not_yours", "too_late" (being drawn) or "gone" (ended, or
        no such request)."""
        async with self._pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute("SELECT user_id, state FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            ).fetchone()
            if row is None or row[1] not in (State.QUEUED, State.RUNNING):
                return "gone"
            asker, state = row
            if asker != user_id:
                return "not_yours"
            if state != State.QUEUED:
                return "too_late"
            await conn.execute(
                "UPDATE jobs SET state = 'cancelled', lease_until = NULL, updated_at = now() WHERE id = %s", (job_id,)
            )
            await conn.execute("DELETE FROM job_images WHERE job_id = %s", (job_id,))
        return "cancelled"

    async def waiting(self, job_id: int) -> tuple[int, int] | None:
        """(place, how many wait) of a request waiting to be claimed, in the order claims
        take them; None once it is claimed or ended."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT place, total FROM (SELECT id, place, count(*) OVER () AS total FROM ({_ORDERED}) o) p"
                    " WHERE id = %s",
                    (job_id,),
                )
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    async def position(self, job_id: int) -> int | None:
        """1-based place of a request in the shared line; None once claimed or ended."""
        place = await self.waiting(job_id)
        return None if place is None else place[0]

    async def depth(self) -> int:
        """Requests waiting in the shared queue (claimed by a replica or not, not drawing)."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) FROM jobs WHERE state = 'queued'")).fetchone()
        return int(row[0])

    async def set_status_message(self, job_id: int, message_id: int) -> State | None:
        """Remember the message showing a request's place (the replica that draws it edits
        it); the row's state now (None: no such row)."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE jobs SET status_message_id = %s WHERE id = %s RETURNING state", (message_id, job_id)
                )
            ).fetchone()
        return None if row is None else _state(row[0])

    async def states(self, job_ids: Sequence[int]) -> dict[int, State | None]:
        """The state of each of these requests (those that exist)."""
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (list(job_ids),))
            ).fetchall()
        return {job_id: _state(state) for job_id, state in rows}

    async def status_message(self, job_id: int) -> int | None:
        """The id of the message showing a request's place and progress, once sent."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute("SELECT status_message_id FROM jobs WHERE id = %s", (job_id,))).fetchone()
        return None if row is None else row[0]

    async def progress_of(self, job_id: int) -> tuple[State | None, bool]:
        """(state, claimed by a live replica) of a request, as its acceptor follows it."""
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT state, owner IS NOT NULL AND lease_until >= now() FROM jobs WHERE id = %s", (job_id,)
                )
            ).fetchone()
        return (None, False) if row is None else (_state(row[0]), bool(row[1]))


def _state(value: object) -> State | None:
    try:
        return State(value)
    except ValueError:
        return None
