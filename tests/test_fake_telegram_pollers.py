"""The stand-in Bot API treats two pollers as Telegram does: a getUpdates that arrives
while another waits ends the waiting one with 409 Conflict (tests of several replicas
count these: only the elected replica may poll)."""

from __future__ import annotations

import asyncio

import aiohttp
from conftest import TOKEN
from fake_telegram import FakeTelegram


async def _poll(session: aiohttp.ClientSession, url: str, timeout: int = 1) -> tuple[int, dict]:
    async with session.post(f"{url}/bot{TOKEN}/getUpdates", json={"offset": 0, "timeout": timeout}) as response:
        return response.status, await response.json()


async def _waiting(telegram: FakeTelegram) -> None:
    while telegram._waiting_poll is None:
        await asyncio.sleep(0.01)


async def test_a_second_poller_ends_the_first_with_a_conflict(telegram: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as first, aiohttp.ClientSession() as second:
        waiting = asyncio.create_task(_poll(first, telegram.url))
        await _waiting(telegram)
        newer = asyncio.create_task(_poll(second, telegram.url))
        status, body = await waiting
        assert status == 409 and body["description"].startswith("Conflict: terminated by other getUpdates")
        await telegram.send_text("/draw a fox")
        status, body = await newer
        assert status == 200 and [u["message"]["text"] for u in body["result"]] == ["/draw a fox"]
    assert telegram.conflicts == 1


async def test_a_poller_that_hung_up_is_no_conflict(telegram: FakeTelegram) -> None:
    gone = aiohttp.ClientSession()
    waiting = asyncio.create_task(_poll(gone, telegram.url))
    await _waiting(telegram)
    waiting.cancel()  # as a killed process: its connection closes, the server's request still waits
    await gone.close()
    await asyncio.sleep(0.05)
    async with aiohttp.ClientSession() as survivor:
        status, body = await _poll(survivor, telegram.url, timeout=0)
    assert status == 200 and body["result"] == []
    assert telegram.conflicts == 0


async def test_polls_one_after_another_are_no_conflict(telegram: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            assert (await _poll(session, telegram.url, timeout=0))[0] == 200
    assert telegram.conflicts == 0
