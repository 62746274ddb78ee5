"""Nothing lost when the bot is stopped: SIGTERM and SIGKILL mid-batch, with the real
``python main.py`` (split from test_durability.py so that the two run side by side)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import BotProcess, bot_env
from fake_telegram import FakeTelegram
from test_durability import journal_row, journal_states


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


@pytest.mark.timeout(600)  # about 100 s on a busy 2-core machine
async def test_sigterm_keeps_the_shutdown_grace(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Item 12.5: a batch that can't finish within SHUTDOWN_GRACE_S is abandoned at its
    next decoder step; the process exits in time and the journal redraws the job."""
    grace = 1.0
    env = bot_env(tiny_models, telegram.url, MAX_STEPS="900", SHUTDOWN_GRACE_S=str(grace))
    data = tmp_path / "data"
    message_id = await telegram.send_text("/draw a very long job --steps 900", user_id=1)
    for run in ("first", "second"):
        bot = await BotProcess(env, tmp_path, f"{run}.log").start()
        try:
            before = len(telegram.find("editMessageText", chat_id=1))
            await telegram.wait_for("editMessageText", chat_id=1, text_contains="step", count=before + 1, timeout=120)
            stopping = time.monotonic()
            assert await bot.stop(signal.SIGTERM, timeout=30) == 0, bot.log()
            # The grace, a decoder step, and the interpreter's exit (torch's teardown takes
            # seconds on a busy machine); the batch alone would take half a minute or more.
            assert time.monotonic() - stopping < grace + 10, bot.log()
        finally:
            if bot.process and bot.process.returncode is None:
                await bot.stop(signal.SIGKILL)
        assert journal_row(data, message_id)[1] == "running"  # redrawn at the next start
    assert not telegram.find("sendPhoto")
    assert "The bot restarted" in (telegram.find("sendMessage", chat_id=1)[-1].data["text"])


async def test_sigterm_while_the_models_download_keeps_the_grace(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Loading (a 10 GB first download, or compiling) can't be interrupted: `docker stop`
    must still end the bot within its grace, with the request kept for the next start.
    The stand-in hub accepts the download's connection and never answers."""
    hanging: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hanging.append(writer)

    hub = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    hub_url = f"http://127.0.0.1:{hub.sockets[0].getsockname()[1]}"
    env = bot_env(tiny_models, telegram.url, PRIOR_MODEL="kandinsky-community/kandinsky-2-2-prior")
    env.update(SHUTDOWN_GRACE_S="1", HF_HUB_OFFLINE="0", HF_ENDPOINT=hub_url, HF_HOME=str(tmp_path / "hf"))
    env.update(HF_HUB_ETAG_TIMEOUT="600", HF_HUB_DOWNLOAD_TIMEOUT="600")
    message_id = await telegram.send_text("/draw a fox", user_id=5)
    bot = await BotProcess(env, tmp_path).start()
    try:
        await telegram.wait_for("sendMessage", chat_id=5, text_contains="in line", timeout=60)  # accepted
        while not hanging:  # the download has started
            await asyncio.sleep(0.1)
        stopping = time.monotonic()
        assert await bot.stop(signal.SIGTERM, timeout=30) == 0, bot.log()
        assert time.monotonic() - stopping < 10, bot.log()
    finally:
        if bot.process and bot.process.returncode is None:
            await bot.stop(signal.SIGKILL)
        hub.close()
        for writer in hanging:
            writer.close()
    assert "exiting without it" in bot.log()
    assert journal_row(tmp_path / "data", message_id)[1] == "queued"  # drawn after the next start


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
