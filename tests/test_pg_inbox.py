"""The inbox of several replicas in PostgreSQL: an update Telegram sends twice is handled
once whichever replica gets it; what a dead replica left unhandled is handled by
another, once; what a live replica is handling is never taken from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher
from aiogram.types import Message, Update
from conftest import TOKEN

from bot.inbox import KEEP_DONE_S, MAX_REPLAYS, InboxMiddleware, feed_leftovers
from bot.pg_database import open_pool
from bot.pg_inbox import PgUpdates, keep_feeding_leftovers
from bot.replicas import Heartbeat
from bot.stores import UpdateStore, update_store

BOT_ID = int(TOKEN.split(":")[0])
DATE = int(time.time())


def update(update_id: int, text: str = "/help", user_id: int = 5) -> Update:
    return Update.model_validate(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id * 10,
                "date": DATE,  # fixed: an update compared with its copy is equal
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": "u", "language_code": "en"},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
            },
        }
    )


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[Any]:
    pool = await open_pool(database_url)
    yield pool
    await pool.close()


async def alive(pool: Any, *replica_ids: str) -> list[Heartbeat]:
    beats = [Heartbeat(pool, r, "host", ["cpu"]) for r in replica_ids]
    for beat in beats:
        await beat.beat()
    return beats


async def dies(pool: Any, replica_id: str) -> None:
    """The replica's heartbeat stops: a minute later it is gone."""
    async with pool.connection() as conn:
        await conn.execute("UPDATE replicas SET last_seen = now() - interval '1 minute' WHERE id = %s", (replica_id,))


async def test_an_update_sent_twice_is_one_row_whichever_replica_gets_it(pool: Any) -> None:
    a, b = PgUpdates(pool, "a"), PgUpdates(pool, "b")
    assert isinstance(a, UpdateStore) and update_store(a) is a
    assert await a.add(BOT_ID, update(7, "/draw a fox --seed 3"))
    assert not await a.add(BOT_ID, update(7))  # Telegram sending it again
    assert not await b.add(BOT_ID, update(7))  # to the replica that polls now, or through the webhook
    assert await b.add(BOT_ID + 1, update(7))  # another bot (token) counts its own ids
    assert await a.unhandled() == 2
    await a.done(BOT_ID, 7)
    assert not await b.add(BOT_ID, update(7))  # handled: not again either
    assert await b.unhandled() == 1


async def test_only_a_gone_replicas_updates_are_taken_and_each_by_one_taker(pool: Any) -> None:
    await alive(pool, "a", "b", "c")
    a, b, c = PgUpdates(pool, "a"), PgUpdates(pool, "b"), PgUpdates(pool, "c")
    for n in (1, 2, 3):
        await a.add(BOT_ID, update(n, f"/draw fox {n}"))
    await a.done(BOT_ID, 2)
    await b.add(BOT_ID, update(4))
    assert await b.take_leftovers(BOT_ID) == []  # a is alive: what it handles is its own
    assert await a.take_leftovers(BOT_ID) == []  # and its own are being handled right now

    await dies(pool, "a")
    taken = await b.take_leftovers(BOT_ID)
    assert [(u, v, a_) for u, v, _, a_ in taken] == [(1, 1, 1), (3, 1, 1)]  # oldest first, attempt counted
    assert Update.model_validate_json(taken[0][2]) == update(1, "/draw fox 1")
    assert await c.take_leftovers(BOT_ID) == []  # b has them now, and b is alive

    await dies(pool, "b")  # b died while handling them (and its own update 4)
    assert [(u, a_) for u, _, _, a_ in await c.take_leftovers(BOT_ID)] == [(1, 2), (3, 2), (4, 1)]


async def test_an_unowned_update_or_one_of_a_replica_never_seen_is_taken(pool: Any) -> None:
    await alive(pool, "b")
    await PgUpdates(pool, "never-beat").add(BOT_ID, update(1))
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO inbox (bot_id, update_id, version, body) VALUES (%s, 2, 1, %s)",
            (BOT_ID, update(2).model_dump_json()),
        )
    assert [u for u, *_ in await PgUpdates(pool, "b").take_leftovers(BOT_ID)] == [1, 2]


async def test_takers_at_once_share_the_leftovers_without_overlap(pool: Any) -> None:
    dead = PgUpdates(pool, "dead")
    for n in range(1, 61):
        await dead.add(BOT_ID, update(n))
    takers = [PgUpdates(pool, f"t{i}") for i in range(3)]
    await alive(pool, *(t.replica_id for t in takers))
    results = await asyncio.gather(*(t.take_leftovers(BOT_ID) for t in takers for _ in range(3)))
    ids = [u for result in results for u, *_ in result]
    assert sorted(ids) == list(range(1, 61))  # every one, once


async def test_updates_received_long_ago_are_forgotten(pool: Any) -> None:
    store = PgUpdates(pool, "a")
    await store.add(BOT_ID, update(1))
    await store.done(BOT_ID, 1)
    async with pool.connection() as conn:
        await conn.execute("UPDATE inbox SET received_at = received_at - make_interval(secs => %s)", (KEEP_DONE_S + 1,))
    assert await store.take_leftovers(BOT_ID) == []
    assert await store.add(BOT_ID, update(1))


def replica(store: PgUpdates, handled: list[tuple[str, int]]) -> tuple[Dispatcher, InboxMiddleware]:
    """A replica's dispatcher as create_dispatcher builds it: the inbox first."""
    received = InboxMiddleware(store)
    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(received)

    @dispatcher.message()
    async def record(message: Message) -> None:
        handled.append((store.replica_id, message.message_id // 10))

    return dispatcher, received


async def test_a_dead_replicas_updates_are_fed_to_a_live_ones_handlers(
    pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[tuple[str, int]] = []
    bot = Bot(TOKEN)
    a, b = PgUpdates(pool, "a"), PgUpdates(pool, "b")
    await alive(pool, "a", "b")
    dispatcher_a, received_a = replica(a, handled)
    dispatcher_b, received_b = replica(b, handled)
    # Telegram's update comes to a, then again to b (a new poller): handled once, by a.
    await dispatcher_a.feed_update(bot, update(1))
    await dispatcher_b.feed_update(bot, update(1))
    await received_a.shutdown(5)
    await received_b.shutdown(5)
    assert handled == [("a", 1)]

    # a records three more and dies before handling them; one of them killed it twice before.
    for n in (2, 3, 4, 5):
        await a.add(BOT_ID, update(n))
    async with pool.connection() as conn:
        await conn.execute("UPDATE inbox SET attempts = %s WHERE update_id = 3", (MAX_REPLAYS,))
        await conn.execute("UPDATE inbox SET version = 99 WHERE update_id = 4")
    assert await feed_leftovers(b, dispatcher_b, bot) == 0  # a is alive yet
    await dies(pool, "a")
    assert await feed_leftovers(b, dispatcher_b, bot) == 2
    await received_b.shutdown(5)
    assert handled == [("a", 1), ("b", 2), ("b", 5)]
    assert "update 3 given up" in caplog.text and "update 4 in the inbox cannot be read" in caplog.text
    assert await b.unhandled() == 0
    await bot.session.close()


async def test_the_leftovers_of_a_replica_that_dies_later_are_taken_periodically(pool: Any) -> None:
    handled: list[tuple[str, int]] = []
    bot = Bot(TOKEN)
    a, b = PgUpdates(pool, "a"), PgUpdates(pool, "b")
    await alive(pool, "a", "b")
    dispatcher_b, received_b = replica(b, handled)
    stop = asyncio.Event()
    feeder = asyncio.create_task(keep_feeding_leftovers(b, dispatcher_b, bot, stop, interval_s=0.1))
    try:
        await a.add(BOT_ID, update(9))  # a takes it... and is killed, long after b started
        await asyncio.sleep(0.3)
        assert handled == []  # not while a lives
        await dies(pool, "a")
        for _ in range(50):
            if handled:
                break
            await asyncio.sleep(0.1)
        assert handled == [("b", 9)]
    finally:
        stop.set()
        await asyncio.wait_for(feeder, 2)
        await received_b.shutdown(5)
        await bot.session.close()
    assert await b.unhandled() == 0
