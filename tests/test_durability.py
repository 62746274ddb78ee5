"""Nothing lost: restarts, crashes and Telegram faults, with the real ``python main.py``."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

from conftest import TOKEN, BotProcess, bot_env
from fake_telegram import FakeTelegram

SEND_METHODS = {"sendPhoto", "sendDocument", "sendMessage", "editMessageText", "deleteMessage"}


def journal_states(data_dir: Path) -> Counter:
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        return Counter(dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()))


async def test_sigterm_finishes_the_running_batch_and_keeps_the_rest(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    env = bot_env(tiny_models, telegram.url, MAX_BATCH="1", SHUTDOWN_GRACE_S="60")
    bot = await BotProcess(env, tmp_path, "first.log").start()
    running = await telegram.send_text("/draw the running one --size 256x256 --steps 30", user_id=1)
    await telegram.wait_for("editMessageText", chat_id=1, text_contains="step", timeout=120)
    waiting = [await telegram.send_text(f"/draw waiting {u}", user_id=u) for u in (2, 3)]
    for user in (2, 3):
        await telegram.wait_for("sendMessage", chat_id=user, text_contains="In line")

    assert await bot.stop(signal.SIGTERM) == 0, bot.log()  # what `docker stop` sends
    [photo] = telegram.find("sendPhoto")
    assert photo.reply_to == running  # the running batch was finished and delivered
    assert journal_states(tmp_path / "data") == {"sent": 1, "queued": 2}

    bot = await BotProcess(env, tmp_path, "second.log").start()
    try:
        for user, message_id in zip((2, 3), waiting, strict=True):
            await telegram.wait_for("sendMessage", chat_id=user, text_contains="The bot restarted")
            [photo] = await telegram.wait_for("sendPhoto", chat_id=user, timeout=120)
            assert photo.reply_to == message_id
    finally:
        assert await bot.stop(signal.SIGTERM) == 0
    assert len(telegram.find("sendPhoto", chat_id=1)) == 1  # not sent again
    assert journal_states(tmp_path / "data") == {"sent": 3}


async def test_soak_kill_9_and_faults_deliver_every_request_exactly_once(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """300 /draws from 30 users; 10% of sends answered 429 or 500; SIGKILL once midway."""
    chance = random.Random(2026)

    def faults(method: str, data: dict):
        if method in SEND_METHODS and chance.random() < 0.10:
            if chance.random() < 0.5:
                return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 1",
                             "parameters": {"retry_after": 1}}  # fmt: skip
            return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        return None

    telegram.fault_plan = faults
    env = bot_env(
        tiny_models,
        telegram.url,
        DEFAULT_STEPS="2",
        PRIOR_STEPS="2",
        MAX_QUEUE="1000",
        MAX_PENDING_PER_USER="100",
        RATE_LIMIT_PER_MIN="0",
        PROGRESS_INTERVAL_S="0.5",
        LOG_LEVEL="DEBUG",
    )
    bot = await BotProcess(env, tmp_path, "first.log").start()
    requests: dict[int, int] = {}  # request message id -> user
    for i in range(300):
        user = 100 + i % 30
        requests[await telegram.send_text(f"/draw soak picture {i}", user_id=user)] = user

    # Midway, the network stalls and the process is killed: pictures in flight never
    # arrive; whatever Telegram acknowledged has been recorded.
    await telegram.wait_for("sendPhoto", count=100, timeout=300)
    telegram.hold.set()
    await asyncio.sleep(0.5)
    await bot.stop(signal.SIGKILL)
    telegram.release_held(drop=True)
    delivered_before_kill = len(telegram.find("sendPhoto"))

    bot = await BotProcess(env, tmp_path, "second.log").start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            replied = {c.reply_to for c in telegram.find("sendPhoto")}
            if set(requests) <= replied:
                break
            await asyncio.sleep(0.5)
    finally:
        await bot.stop(signal.SIGTERM)

    photos = Counter(c.reply_to for c in telegram.find("sendPhoto"))
    accepted = {
        c.reply_to
        for c in telegram.find("sendMessage")
        if "In line" in c.data.get("text", "") or "The bot restarted" in c.data.get("text", "")
    }
    delivered = set(photos) & set(requests)
    duplicates = sum(n - 1 for n in photos.values() if n > 1)
    lost = len(accepted - delivered)
    print(
        f"\nsoak: accepted {len(accepted)} / delivered {len(delivered)} / duplicates {duplicates} / lost {lost}"
        f" (sent {len(requests)}, delivered before the kill {delivered_before_kill})"
    )
    assert 100 <= delivered_before_kill < 300
    assert accepted == set(requests)
    assert duplicates == 0 and lost == 0
    for message_id, user in requests.items():  # each in the right chat
        assert {c.chat_id for c in telegram.find("sendPhoto") if c.reply_to == message_id} == {user}
    assert journal_states(tmp_path / "data") == {"sent": 300}
    # The token appears in no log line and not in the journal.
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert "Too Many Requests" in logs or "retrying" in logs  # the faults were met and logged
    assert TOKEN not in logs and TOKEN.split(":")[1] not in logs
    assert TOKEN.encode() not in (tmp_path / "data" / "jobs.sqlite3").read_bytes()


async def test_recovered_jobs_are_told_when_models_do_not_load(
    telegram: FakeTelegram, make_settings, tmp_path: Path
) -> None:
    from conftest import running_bot

    from bot.journal import Journal
    from generation import GenerationParams

    journal = Journal.in_dir(str(tmp_path / "data"))
    params = GenerationParams("left over", 64, 64, 2, 4.0, 1.0, seed=1)
    journal.add(chat_id=80, message_id=7, user_id=80, lang="en", params=params, as_document=False)
    journal.close()
    async with running_bot(make_settings(telegram.url, PRIOR_MODEL=str(tmp_path / "missing"))):
        [told] = await telegram.wait_for(None, chat_id=80, text_contains="aren't loaded")
    assert told.reply_to == 7 or told.method == "editMessageText"
    assert journal_states(tmp_path / "data") == {"failed": 1}


async def test_kill_9_as_a_batch_of_updates_is_confirmed_loses_no_draw(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Telegram forgets a getUpdates batch once the next poll confirms it; the bot is
    killed at that very moment, before it has handled the batch. Every /draw in it is
    still drawn and delivered, once."""
    env = bot_env(tiny_models, telegram.url, DEFAULT_STEPS="2", PRIOR_STEPS="2", MAX_BATCH="20", MAX_QUEUE="100")
    requests = {await telegram.send_text(f"/draw batch {i}", user_id=400 + i): 400 + i for i in range(40)}
    bot = BotProcess(env, tmp_path, "first.log")
    confirmed = asyncio.Event()

    def kill_on_confirm(offset: int) -> None:
        if offset > 0 and not confirmed.is_set():  # the second poll: the batch is confirmed
            assert bot.process is not None
            bot.process.kill()
            confirmed.set()

    telegram.on_get_updates = kill_on_confirm
    await bot.start()
    await asyncio.wait_for(confirmed.wait(), 120)
    await bot.stop(signal.SIGKILL)
    telegram.on_get_updates = None
    photos_before = len(telegram.find("sendPhoto"))

    bot = await BotProcess(env, tmp_path, "second.log").start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(requests) <= {c.reply_to for c in telegram.find("sendPhoto")}:
            await asyncio.sleep(0.5)
    finally:
        assert await bot.stop(signal.SIGTERM) == 0
    photos = Counter(c.reply_to for c in telegram.find("sendPhoto"))
    print(f"\nkilled at the confirming poll after {photos_before} pictures; then {len(photos)} of {len(requests)}")
    assert photos == Counter(set(requests)), f"missing: {sorted(set(requests) - set(photos))}"
    for message_id, user in requests.items():
        assert {c.chat_id for c in telegram.find("sendPhoto") if c.reply_to == message_id} == {user}
    assert journal_states(tmp_path / "data") == {"sent": len(requests)}
