"""DrawService on its own: failures while serving a request are logged and settle its
journal row; the upload action shows only while a request is drawn."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from conftest import TOKEN
from fake_telegram import FakeTelegram

from bot.draw_service import DrawService, Ticket
from bot.journal import Journal
from generation import GenerationEngine, GenerationError, GenerationParams

PARAMS = GenerationParams("a fox", 64, 64, 2, 4.0, 1.0, seed=1)
BLOCKED = 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}


class Service:
    """A DrawService whose engine is still loading its models until ``fail_loading``."""

    def __init__(self, draws: DrawService, engine: GenerationEngine, gate: threading.Event, db: Path) -> None:
        self.draws, self.engine, self._gate, self.db = draws, engine, gate, db

    def fail_loading(self) -> None:
        self._gate.set()

    async def accept(self, chat_id: int, message_id: int) -> Ticket:
        ticket = await self.draws.submit(
            params=PARAMS, as_document=False, chat_id=chat_id, message_id=message_id, user_id=chat_id, lang="en"
        )
        assert ticket is not None
        self.draws.follow(ticket, None)
        return ticket

    def row(self, journal_id: int) -> tuple[str, str | None]:
        with sqlite3.connect(self.db) as db:
            return db.execute("SELECT state, error FROM jobs WHERE id = ?", (journal_id,)).fetchone()

    async def settled(self, journal_id: int) -> tuple[str, str | None]:
        for _ in range(100):
            if self.row(journal_id)[0] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
        return self.row(journal_id)


@pytest_asyncio.fixture
async def service(telegram: FakeTelegram, tmp_path: Path) -> AsyncIterator[Service]:
    gate = threading.Event()

    def loader(device: torch.device):  # models that fail to load, when the test says so
        gate.wait(30)
        raise OSError("no weights here")

    engine = GenerationEngine([torch.device("cpu")], loader)
    await engine.start()
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
    journal = Journal.in_dir(str(tmp_path))
    draws = DrawService(bot, engine, journal, 0.2)
    try:
        yield Service(draws, engine, gate, tmp_path / "jobs.sqlite3")
    finally:
        gate.set()
        await draws.shutdown(0)
        await engine.close()
        await bot.session.close()
        journal.close()


def unretrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # a lost task exception is reported when its task is collected
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_failure_notice_to_a_blocked_user_is_logged(
    service: Service, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 12.4: the user blocked the bot, so even "sorry, it failed" can't be sent."""
    telegram.fault_plan = lambda method, data: BLOCKED if method == "sendMessage" else None
    ticket = await service.accept(chat_id=7, message_id=1)
    service.fail_loading()  # the waiting request fails
    with pytest.raises(GenerationError):
        await ticket.job.result()
    assert (await service.settled(ticket.journal_id))[0] == "failed"
    job = f"job {ticket.journal_id}"
    for _ in range(100):
        said = [r for r in caplog.records if job in r.getMessage() and "blocked" in r.getMessage()]
        if said:
            break
        await asyncio.sleep(0.05)
    assert said, [r.getMessage() for r in caplog.records]
    assert not unretrieved(caplog)


async def test_journal_error_while_settling_is_logged_and_the_row_settled(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 12.4: SQLite refuses to record a cancel; the row must not stay queued (it
    would be drawn again at the next start)."""
    with sqlite3.connect(service.db) as db:
        db.execute(
            "CREATE TRIGGER refuse_cancel BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'cancelled'"
            " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    ticket = await service.accept(chat_id=8, message_id=2)
    assert service.engine.cancel(ticket.job)
    state, error = await service.settled(ticket.journal_id)
    assert state == "failed" and "cancelled" in error and "disk I/O error" in error
    assert any(f"job {ticket.journal_id}" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    assert not unretrieved(caplog)


async def test_upload_action_shows_only_while_drawing(bot: FakeTelegram) -> None:
    """Item 12.21: "sending photo…" while a request only waits in line misleads."""
    await bot.send_text("/draw keep the worker busy --steps 80", user_id=60)
    await bot.wait_for("editMessageText", chat_id=60, text_contains="step", timeout=120)
    await bot.send_text("/draw waits its turn", user_id=61)
    await bot.wait_for("sendMessage", chat_id=61, text_contains="In line")
    await asyncio.sleep(0.5)
    assert bot.find("sendChatAction", chat_id=60)  # the one drawing shows it
    assert not bot.find("sendChatAction", chat_id=61)
    [photo] = await bot.wait_for("sendPhoto", chat_id=61, timeout=120)
    action = bot.find("sendChatAction", chat_id=61)[0]
    assert action.data["action"] == "upload_photo" and action.at < photo.at
