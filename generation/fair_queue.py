"""Waiting requests, served round-robin by user and grouped into batches.

Lives on the event loop (not thread-safe by design: only coroutines touch it).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    user_id: int

    @property
    def batch_key(self) -> Hashable: ...


J = TypeVar("J", bound=Queued)


class FairQueue(Generic[J]):
    """One FIFO per user; users take turns, so one user's ten requests do not hold back
    another user's one. ``take_batch`` waits while the queue is empty or paused."""

    def __init__(self) -> None:
        self._by_user: OrderedDict[int, deque[J]] = OrderedDict()  # order = turn order
        self._changed = asyncio.Condition()
        self._paused = False

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_user.values())

    def pending_for(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def order(self) -> list[J]:
        """Waiting jobs in the order they would be served: each user's first, then
        each user's second, and so on."""
        queues = list(self._by_user.values())
        served: list[J] = []
        depth = 0
        while True:
            row = [q[depth] for q in queues if len(q) > depth]
            if not row:
                return served
            served.extend(row)
            depth += 1

    def position(self, job: J) -> int | None:
        """1-based place in line, or None when the job is no longer waiting."""
        for i, queued in enumerate(self.order()):
            if queued is job:
                return i + 1
        return None

    async def put(self, job: J) -> None:
        self._by_user.setdefault(job.user_id, deque()).append(job)
        async with self._changed:
            self._changed.notify_all()

    def remove(self, job: J) -> bool:
        queue = self._by_user.get(job.user_id)
        if queue is None or job not in queue:
            return False
        queue.remove(job)
        if not queue:
            del self._by_user[job.user_id]
        return True

    def drain(self) -> list[J]:
        jobs = self.order()
        self._by_user.clear()
        return jobs

    async def set_paused(self, paused: bool) -> None:
        self._paused = paused
        async with self._changed:
            self._changed.notify_all()

    async def take_batch(self, max_size: int, may_take: Callable[[], bool] | None = None) -> list[J]:
        """Wait for work (and for ``may_take``, checked whenever the queue changes), then
        take up to ``max_size`` jobs that can share a batch.

        The batch starts with the head of the user whose turn it is; it fills with the
        matching jobs of the following users in turn order, then with their later ones.
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._paused and bool(self._by_user) and (may_take is None or may_take())
            )
        first_user = next(iter(self._by_user))
        key = self._by_user[first_user][0].batch_key
        batch: list[J] = []
        for job in self.order():
            if len(batch) == max_size:
                break
            if job.batch_key == key:
                batch.append(job)
        for job in batch:
            self.remove(job)
        # Users just served go to the back of the line, in the order they were served.
        for job in batch:
            if job.user_id in self._by_user:
                self._by_user.move_to_end(job.user_id)
        if self._by_user:  # a taker that declined (may_take) looks again
            async with self._changed:
                self._changed.notify_all()
        return batch
