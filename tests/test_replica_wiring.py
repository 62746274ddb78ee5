"""One replica sharing a PostgreSQL database (DATABASE_URL), run in this process: /status
and /metrics (the shared queue, the replicas seen in the last minute with their GPUs, who
polls), and polling only while elected."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import aiohttp
import psycopg
import pytest
from conftest import ADMIN_ID, running_bot
from fake_telegram import FakeTelegram

from bot.pg_database import POLLER_LOCK, open_pool
from bot.replicas import Heartbeat


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_status_and_metrics_show_the_shared_queue_and_the_replicas(
    telegram: FakeTelegram, make_settings, database_url: str
) -> None:
    port = free_port()
    settings = make_settings(telegram.url, DATABASE_URL=database_url, HTTP_PORT=str(port))
    async with running_bot(settings):
        await telegram.wait_for("getMe")  # started: the schema exists
        pool = await open_pool(database_url)
        # Another replica, on another host with two GPUs, beats as bot/replicas.py's Heartbeat does.
        other = Heartbeat(pool, "gpu-b-7-abcdef", "gpu-b", ["cuda:0", "cuda:1"], lambda: {"poller": False})
        await other.start()
        try:
            await telegram.send_text("/status", user_id=ADMIN_ID)
            [status] = await telegram.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Device", timeout=30)
            await telegram.send_text("/status", user_id=16)  # not an admin: no host names
            [numbered] = await telegram.wait_for("sendMessage", chat_id=16, text_contains="Device", timeout=30)
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
                metrics = await response.text()
        finally:
            await other.close()
            await pool.close()
    text = status.data["text"]
    assert "Shared queue: 0 waiting for a GPU (all replicas)" in text
    assert "2 replicas seen in the last minute:" in text
    assert "• gpu-b: cuda:0, cuda:1\n" in text + "\n"
    assert f"• {socket.gethostname()}: cpu (this one, polls Telegram)" in text
    assert "• #1: " in numbered.data["text"] and "• #2: " in numbered.data["text"]
    assert "gpu-b" not in numbered.data["text"]
    assert "kandinsky_shared_queue_depth 0.0" in metrics and "kandinsky_poller 1.0" in metrics
    assert "kandinsky_queue_depth 0.0" in metrics  # this replica's own work, as before


async def test_status_in_russian(telegram: FakeTelegram, make_settings, database_url: str) -> None:
    async with running_bot(make_settings(telegram.url, DATABASE_URL=database_url)):
        await telegram.send_text("/status", user_id=17, lang="ru")
        [status] = await telegram.wait_for("sendMessage", chat_id=17, text_contains="Устройство", timeout=30)
    assert "1 реплика за последнюю минуту:" in status.data["text"]
    assert "(эта, опрашивает Telegram)" in status.data["text"]


def poller_backend(url: str) -> int | None:
    """The PostgreSQL backend holding the poller lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
            (POLLER_LOCK & 0xFFFFFFFF,),
        ).fetchone()
    return row[0] if row else None


async def wait_for_backend(url: str, other_than: int | None, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backend = await asyncio.to_thread(poller_backend, url)
        if backend is not None and backend != other_than:
            return backend
        await asyncio.sleep(0.2)
    raise AssertionError("no poller elected")


async def test_a_poller_that_loses_its_lock_stops_polling_and_stands_again(
    telegram: FakeTelegram, make_settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its election connection is cut (a network fault, the database restarting): the lock
    may be another replica's now, so it stops polling at once and waits to be elected."""
    caplog.set_level(logging.INFO, logger="bot.replica")
    async with running_bot(make_settings(telegram.url, DATABASE_URL=database_url)):
        first = await wait_for_backend(database_url, None)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        await wait_for_backend(database_url, first)  # elected again, on a new connection
        await telegram.send_text("/draw a fox after the election", user_id=30)
        await telegram.wait_for("sendPhoto", chat_id=30, timeout=60)
    assert "no longer the poller" in caplog.text
    assert telegram.conflicts == 0


SECRET = "s3cret-value-0123456789"


def webhook_update(update_id: int, user: int, text: str) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 100 + update_id,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private"},
            "from": {"id": user, "is_bot": False, "first_name": "u", "language_code": "en"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


async def test_webhook_replicas_all_take_updates_and_a_repeat_is_one_request(
    telegram: FakeTelegram, make_settings, database_url: str, tmp_path
) -> None:
    """Webhook mode: a load balancer sends updates to any replica; one Telegram sends again
    (its first answer was lost) reaching another replica is still one request."""
    ports = (free_port(), free_port())
    replicas = [
        make_settings(
            telegram.url,
            DATABASE_URL=database_url,
            HTTP_PORT=str(port),
            WEBHOOK_URL="https://bot.example.org/telegram/hook",
            WEBHOOK_SECRET=SECRET,
            DATA_DIR=str(tmp_path / f"replica{port}"),
        )
        for port in ports
    ]
    first, second = (webhook_update(1, 71, "/draw a fox to one"), webhook_update(2, 72, "/draw a fox to two"))
    async with running_bot(replicas[0]), running_bot(replicas[1]):
        await telegram.wait_for("setWebhook", count=2)
        async with aiohttp.ClientSession() as http:
            for port, update in ((ports[0], first), (ports[1], second), (ports[1], first)):
                url = f"http://127.0.0.1:{port}/telegram/hook"
                async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                    assert r.status == 200
        await telegram.wait_for("sendPhoto", chat_id=71)
        await telegram.wait_for("sendPhoto", chat_id=72)
        await asyncio.sleep(1.0)  # a second copy would be drawn by now
    assert len(telegram.find("sendPhoto", chat_id=71)) == 1 and len(telegram.find("sendPhoto", chat_id=72)) == 1
    assert not telegram.find("getUpdates")


def test_a_silent_replica_is_gone_after_its_lease_at_most_15_s(make_settings) -> None:
    """Its unhandled updates are taken over as soon as its jobs (a short lease in a test
    means a short wait), and the heartbeat comes three times within that."""
    from bot.storage import gone_after_s, heartbeat_s

    assert (gone_after_s(make_settings()), heartbeat_s(make_settings())) == (15.0, 5.0)
    short = make_settings(JOB_LEASE_S="3")
    assert (gone_after_s(short), heartbeat_s(short)) == (3.0, 1.0)
