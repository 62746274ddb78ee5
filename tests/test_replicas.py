"""Replicas on one PostgreSQL database: one poller elected through an advisory lock (a
dead poller's role moves within seconds), and heartbeats that /status reads."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import psycopg

from bot.pg_database import POLLER_LOCK, open_pool
from bot.replicas import Heartbeat, PollerElection, make_replica_id, seen, while_elected

ROOT = Path(__file__).parent.parent


async def lock_holder(url: str) -> int | None:
    """The backend pid holding the poller lock, as PostgreSQL sees it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = %s",
                (POLLER_LOCK,),
            )
        ).fetchone()
    return row[0] if row else None


async def backend_of(election: PollerElection) -> int:
    assert election._conn is not None
    return election._conn.info.backend_pid


async def test_one_of_two_electors_polls_and_the_other_takes_over_when_it_dies(database_url: str) -> None:
    stop = asyncio.Event()
    first = PollerElection(database_url, name="a", retry_s=0.2, check_s=0.3)
    second = PollerElection(database_url, name="b", retry_s=0.2, check_s=0.3)
    try:
        assert await first.wait_until_elected(stop) and first.elected
        held_by = await backend_of(first)
        assert await first.wait_until_elected(stop) and await backend_of(first) == held_by  # kept, not retaken
        waiting = asyncio.create_task(second.wait_until_elected(stop))
        await asyncio.sleep(1.0)
        assert not waiting.done()  # the lock is held: never two pollers
        assert await lock_holder(database_url) == await backend_of(first)

        # The poller's session ends as when its process is killed: PostgreSQL frees the lock.
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (await backend_of(first),))
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, timeout=5)
        assert time.monotonic() - started < 3
        assert second.elected and await lock_holder(database_url) == await backend_of(second)
        # The old holder notices on its next check and stops polling.
        await asyncio.wait_for(first.lost.wait(), timeout=3)
        assert not first.elected

        # It may stand again: it waits while the other holds the role, and wins once given up.
        again = asyncio.create_task(first.wait_until_elected(stop))
        await asyncio.sleep(0.6)
        assert not again.done() and not first.lost.is_set()
        await second.close()  # a graceful stop hands the role over at once
        assert await asyncio.wait_for(again, timeout=3) and first.elected
    finally:
        stop.set()
        await first.close()
        await second.close()


HOLDER = """
import asyncio, sys
from bot.replicas import PollerElection

async def main():
    assert await PollerElection(sys.argv[1]).wait_until_elected(asyncio.Event())
    print("elected", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_the_role_moves_within_seconds_when_the_polling_process_is_killed(database_url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, database_url, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    stop = asyncio.Event()
    election = PollerElection(database_url, retry_s=0.5)
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), timeout=20) == b"elected\n"
        waiting = asyncio.create_task(election.wait_until_elected(stop))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        holder.send_signal(signal.SIGKILL)  # no goodbye: PostgreSQL ends its session and frees the lock
        killed = time.monotonic()
        assert await asyncio.wait_for(waiting, timeout=5)
        assert time.monotonic() - killed < 3
    finally:
        stop.set()
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
        await election.close()


async def test_work_runs_only_while_elected_and_moves_with_the_role(database_url: str) -> None:
    working: set[str] = set()
    spells: list[str] = []
    replicas: dict[str, tuple[PollerElection, asyncio.Event, asyncio.Task]] = {}

    def start(name: str) -> None:
        election, stop = PollerElection(database_url, name=name, retry_s=0.2, check_s=0.3), asyncio.Event()

        async def poll(until: asyncio.Event) -> None:  # stands for take_polled_updates
            working.add(name)
            spells.append(name)
            await until.wait()
            working.discard(name)

        replicas[name] = election, stop, asyncio.create_task(while_elected(election, stop, poll))

    async def stopped(name: str) -> None:  # as run_bot stops: stop set, then the election closed
        election, stop, task = replicas[name]
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        await election.close()

    async def until_working(name: str) -> None:
        for _ in range(50):
            if working == {name}:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name} not working alone: {working}")

    start("a")
    await until_working("a")
    start("b")
    try:
        await asyncio.sleep(0.6)
        assert working == {"a"}
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (await backend_of(replicas["a"][0]),))
        await until_working("b")  # a stopped when it lost the role; b took it
        await stopped("b")  # a graceful stop hands the role over: a, standing again, takes it
        await until_working("a")
        assert spells == ["a", "b", "a"]
    finally:
        for name in replicas:
            await stopped(name)
    assert working == set()


async def test_a_waiting_elector_returns_when_stopped(database_url: str) -> None:
    stop = asyncio.Event()
    pool = await open_pool(database_url)
    holder = PollerElection(pool, retry_s=0.2)  # the pool's database, on a connection of its own
    waiter = PollerElection(database_url, retry_s=0.2)
    try:
        assert await holder.wait_until_elected(stop)
        waiting = asyncio.create_task(waiter.wait_until_elected(stop))
        await asyncio.sleep(0.3)
        stop.set()
        assert await asyncio.wait_for(waiting, timeout=2) is False
        assert not waiter.elected
    finally:
        await holder.close()
        await waiter.close()
        await pool.close()


async def test_an_elector_waits_for_an_unreachable_database(database_url: str, postgres) -> None:
    """A database not reachable yet is tried again, not raised: the replica waits."""
    stop = asyncio.Event()
    url = database_url.replace("/t_", "/missing_t_")
    election = PollerElection(url, retry_s=0.1)
    try:
        waiting = asyncio.create_task(election.wait_until_elected(stop))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        stop.set()
        assert await asyncio.wait_for(waiting, timeout=2) is False
    finally:
        await election.close()


async def test_heartbeats_say_which_replicas_are_alive_and_their_gpus(database_url: str) -> None:
    pool = await open_pool(database_url)
    state = {"models": "loading"}
    gpus = ["cuda:0", "cuda:1"]
    first = Heartbeat(pool, make_replica_id("gpu-1"), "gpu-1", gpus, lambda: dict(state), interval_s=0.1)
    second = Heartbeat(pool, make_replica_id("gpu-2"), "gpu-2", ["cuda:0"], interval_s=0.1)
    try:
        await first.start()
        await second.start()
        replicas = await seen(pool)
        assert [(r.host, r.devices) for r in replicas] == [("gpu-1", ["cuda:0", "cuda:1"]), ("gpu-2", ["cuda:0"])]
        assert replicas[0].id.startswith("gpu-1-") and replicas[0].info == {"models": "loading"}
        state["models"] = "ready"
        await asyncio.sleep(0.3)  # the next beats carry the new state
        assert (await seen(pool))[0].info == {"models": "ready"}

        # A replica whose beats stopped (killed) drops out of "seen in the last minute".
        second._task.cancel()  # first: a beat after the UPDATE below would bring it back
        await asyncio.gather(second._task, return_exceptions=True)
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE replicas SET last_seen = now() - interval '2 minutes' WHERE id = %s", (second.replica_id,)
            )
        assert [r.host for r in await seen(pool)] == ["gpu-1"]
        assert [r.host for r in await seen(pool, within_s=600)] == ["gpu-1", "gpu-2"]
        # A graceful stop removes the row at once.
        await first.close()
        assert [r.host for r in await seen(pool, within_s=600)] == ["gpu-2"]
    finally:
        await first.close()
        await second.close()
        await pool.close()


async def test_a_row_another_version_wrote_is_read_tolerantly(database_url: str) -> None:
    pool = await open_pool(database_url)
    try:
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO replicas (id, host, devices, info) VALUES ('x', 'h', '{bad', '[1]')")
        [replica] = await seen(pool)
        assert (replica.devices, replica.info) == ([], {})
    finally:
        await pool.close()


def test_replica_ids_differ_between_processes_on_one_host() -> None:
    ids = {make_replica_id("same-host") for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("same-host-") for i in ids)
