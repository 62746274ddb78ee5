"""The job queue replicas share (bot/pg_jobs.py) on a real PostgreSQL 16: claims, leases,
fencing, caps across replicas, and rows as another version wrote them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest_asyncio

from bot.journal import Entry, State, Unreadable
from bot.pg_database import open_pool
from bot.pg_jobs import MAX_CLAIMS, PgJobs
from generation import GenerationParams, QueueFull, UserQueueFull
from generation.params import MixPart


def params(prompt: str = "a fox", size: int = 64, **extra) -> GenerationParams:
    return GenerationParams(prompt, size, size, 2, 4.0, 1.0, seed=1, **extra)


@pytest_asyncio.fixture
async def replicas(database_url: str) -> AsyncIterator[tuple[PgJobs, PgJobs]]:
    """Two replicas' stores, each with its own pool, on one database."""
    pools = [await open_pool(database_url), await open_pool(database_url)]
    try:
        yield tuple(PgJobs(pool, max_queue=100, max_pending_per_user=100) for pool in pools)
    finally:
        for pool in pools:
            await pool.close()


_message_ids = iter(range(1, 10**6))


async def add(jobs: PgJobs, user: int, p: GenerationParams | None = None, images=()) -> int:
    job_id = await jobs.add(
        chat_id=user, message_id=next(_message_ids), user_id=user, lang="en", params=p or params(), as_document=False,
        images=images,
    )  # fmt: skip
    assert job_id is not None
    return job_id


async def claim_ids(jobs: PgJobs, replica: str, limit: int = 1, lease_s: float = 30) -> list[int]:
    return [c.item.id for c in await jobs.claim(replica, limit, lease_s)]


async def test_two_replicas_claiming_at_once_take_disjoint_rows(replicas) -> None:
    one, two = replicas
    ids = {await add(one, user) for user in range(1, 41)}
    taken: list[int] = []
    for _ in range(10):
        got = await asyncio.gather(*(claim_ids(jobs, name, 3) for jobs, name in ((one, "r1"), (two, "r2")) * 2))
        taken += [i for batch in got for i in batch]
    assert len(taken) == len(set(taken)) == len(ids)  # every row once, none twice
    assert set(taken) == ids


async def test_claims_take_users_round_robin_not_first_come(replicas) -> None:
    jobs, _ = replicas
    a = [await add(jobs, 1) for _ in range(3)]  # user 1 asks three times first
    b = await add(jobs, 2)
    c = await add(jobs, 3)
    assert await jobs.waiting(b) == (2, 5)  # the place shown is the order claims take
    order = [i for _ in range(5) for i in await claim_ids(jobs, "r1")]
    assert order == [a[0], b, c, a[1], a[2]]


async def test_a_user_just_served_waits_behind_the_others(replicas) -> None:
    jobs, _ = replicas
    first = await add(jobs, 1)
    assert await claim_ids(jobs, "r1") == [first]
    again = await add(jobs, 1)  # user 1 asks again, before user 2 does
    other = await add(jobs, 2)
    assert [i for _ in range(2) for i in await claim_ids(jobs, "r1")] == [other, again]


async def test_a_claim_is_one_batch_of_requests_that_can_share_it(replicas) -> None:
    jobs, _ = replicas
    small = await add(jobs, 1, params(size=64))
    big = await add(jobs, 2, params(size=128))
    small_too = await add(jobs, 3, params("another", size=64))
    img2img = await add(jobs, 4, params(size=64, init_image=0, strength=0.5), images=[b"picture"])
    assert await claim_ids(jobs, "r1", limit=8) == [small, small_too]
    assert await claim_ids(jobs, "r1", limit=8) == [big]
    assert await claim_ids(jobs, "r1", limit=8) == [img2img]


async def test_an_expired_lease_hands_the_job_to_another_replica_and_fences_the_first(replicas) -> None:
    one, two = replicas
    job = await add(one, 1)
    [claimed] = await one.claim("r1", 1, lease_s=1)
    assert claimed.attempts == 1
    assert await one.start(job, "r1")
    assert await two.claim("r2", 1, lease_s=30) == []  # r1 holds it
    assert await one.renew("r1", lease_s=1) == {job: None}
    await asyncio.sleep(1.2)  # r1 stops renewing: it died, or stalled
    [again] = await two.claim("r2", 1, lease_s=30)
    assert again.item.id == job and again.attempts == 2
    assert await one.renew("r1", lease_s=30) == {}  # r1 learns it lost the row
    assert not await one.keep(job, "r1", 30)
    assert not await one.settle(job, "r1", State.SENT)  # fenced: r1's word no longer counts
    assert await two.settle(job, "r2", State.SENT)
    assert not await two.settle(job, "r2", State.FAILED)  # settled once
    assert (await one.get(job)).state is State.SENT


async def test_a_request_no_replica_ever_finishes_is_given_up(replicas) -> None:
    """A request that kills each replica drawing it (say, out of host memory) must not go
    round the fleet forever."""
    jobs, _ = replicas
    job = await add(jobs, 1)
    for attempt in range(1, MAX_CLAIMS + 1):
        [claimed] = await jobs.claim(f"r{attempt}", 1, lease_s=0.01)
        assert isinstance(claimed.item, Entry)
        await asyncio.sleep(0.02)  # that replica died drawing it
    [last] = await jobs.claim("r9", 1, lease_s=30)
    assert isinstance(last.item, Unreadable) and last.item.message == "failed"
    assert last.item.id == job and "claimed 5 times" in last.item.reason


async def test_a_graceful_stop_hands_back_its_rows_at_once(replicas) -> None:
    one, two = replicas
    jobs = [await add(one, user) for user in (1, 2)]
    assert await claim_ids(one, "r1", limit=2) == jobs
    assert await one.start(jobs[0], "r1")
    assert await one.release("r1") == 2
    assert await claim_ids(two, "r2", limit=2) == jobs  # no lease to wait for
    assert not await one.give_back(jobs[0], "r1")  # not r1's any more
    assert await two.give_back(jobs[0], "r2")  # r2's models failed: one row back
    assert await claim_ids(one, "r1", limit=2) == [jobs[0]]


async def test_the_caps_hold_across_replicas(database_url: str) -> None:
    pools = [await open_pool(database_url) for _ in range(3)]
    try:
        stores = [PgJobs(pool, max_queue=5, max_pending_per_user=2) for pool in pools]

        async def ask(n: int, user: int) -> str:
            try:
                await stores[n % 3].add(
                    chat_id=user, message_id=1000 + n, user_id=user, lang="en", params=params(), as_document=False
                )
            except UserQueueFull:
                return "user"
            except QueueFull:
                return "global"
            return "ok"

        same_user = await asyncio.gather(*(ask(n, 7) for n in range(6)))
        assert sorted(same_user) == ["ok"] * 2 + ["user"] * 4
        others = await asyncio.gather(*(ask(100 + n, 10 + n) for n in range(6)))
        assert sorted(others) == ["global"] * 3 + ["ok"] * 3
        assert await stores[0].depth() == 5
        # A claimed row still waits (in a replica's engine); once drawing, it no longer counts.
        [claimed] = await stores[1].claim("r1", 1, 30)
        assert await stores[1].start(claimed.item.id, "r1")
        assert await ask(200, 50) == "ok"
    finally:
        for pool in pools:
            await pool.close()


async def test_a_message_accepted_twice_is_one_job(replicas) -> None:
    one, two = replicas
    request = dict(chat_id=5, message_id=9, user_id=5, lang="en", params=params(), as_document=False)
    assert await one.add(**request) is not None
    assert await two.add(**request) is None


async def test_pictures_round_trip_and_leave_with_the_job(replicas, database_url: str) -> None:
    one, two = replicas
    mix = params("", mix=(MixPart(0.5, image=0), MixPart(0.5, image=1)))
    pictures = (b"\x89PNG first", bytes(range(256)) * 1000)
    job = await add(one, 1, mix, images=pictures)
    [claimed] = await two.claim("r2", 1, 30)
    assert isinstance(claimed.item, Entry) and claimed.item.images == pictures and claimed.item.params == mix
    assert await two.settle(job, "r2", State.SENT)
    async with two._pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM job_images")).fetchone() == (0,)


async def test_rows_as_another_version_wrote_them(replicas) -> None:
    jobs, _ = replicas
    newer = await add(jobs, 1)
    garbled = await add(jobs, 2)
    lost = await add(jobs, 3, params(init_image=0, strength=0.5), images=[b"x"])
    async with jobs._pool.connection() as conn:
        [(stored,)] = await (await conn.execute("SELECT params FROM jobs WHERE id = %s", (newer,))).fetchall()
        future = json.dumps({**json.loads(stored), "from_the_future": 1})
        await conn.execute("UPDATE jobs SET params = %s, params_version = 99 WHERE id = %s", (future, newer))
        await conn.execute("UPDATE jobs SET params = '[garbled' WHERE id = %s", (garbled,))
        await conn.execute("DELETE FROM job_images WHERE job_id = %s", (lost,))
    claimed = {c.item.id: c.item for _ in range(3) for c in await jobs.claim("r1", 1, 30)}
    assert isinstance(claimed[newer], Entry) and claimed[newer].params == params()
    assert isinstance(claimed[garbled], Unreadable) and claimed[garbled].chat_id == 2
    assert isinstance(claimed[lost], Unreadable) and claimed[lost].message == "pics-core-missing-pictures"


async def test_cancel_only_while_waiting(replicas) -> None:
    one, two = replicas
    drawing, claimed, waiting = [await add(one, 1) for _ in range(3)]
    assert await two.cancel(waiting, 2) == "not_yours"
    assert await claim_ids(one, "r1", limit=2) == [drawing, claimed]
    assert await one.start(drawing, "r1")
    assert await two.cancel(drawing, 1) == "too_late"  # r1 draws it
    assert await two.cancel(claimed, 1) == "cancelled"  # r1 holds it, not drawing yet
    assert await two.cancel(waiting, 1) == "cancelled"  # accepted by r1, cancelled through r2
    assert await one.cancel(waiting, 1) == "gone"
    assert await one.renew("r1", 30) == {drawing: None}  # r1 learns it need not draw it
    assert not await one.start(claimed, "r1") and not await one.settle(claimed, "r1", State.SENT)
    assert await claim_ids(one, "r1") == []  # never drawn
    assert await one.set_status_message(waiting, 77) is State.CANCELLED
    assert await one.states([drawing, claimed, 404]) == {drawing: State.RUNNING, claimed: State.CANCELLED}
    assert await one.counts() == {"running": 1, "cancelled": 2}


async def test_status_message_reaches_the_replica_that_draws(replicas) -> None:
    one, two = replicas
    job = await add(one, 1)
    assert await claim_ids(two, "r2") == [job]
    assert await one.progress_of(job) == (State.QUEUED, True)
    assert await one.set_status_message(job, 42) is State.QUEUED  # sent after the claim
    assert await two.renew("r2", 30) == {job: 42}
