"""The durable inbox: updates a killed run left unhandled are fed again at the next start."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram.types import Update
from conftest import TOKEN, running_bot
from fake_telegram import FakeTelegram

from bot.inbox import KEEP_DONE_S, MAX_REPLAYS, Inbox

BOT_ID = int(TOKEN.split(":")[0])


def message_update(update_id: int, text: str, *, user_id: int, message_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "u", "language_code": "en"},
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }


def test_an_update_survives_the_round_trip(tmp_path: Path) -> None:
    update = Update.model_validate(message_update(7, "/draw a fox --seed 3", user_id=5, message_id=70))
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    assert inbox.add(BOT_ID, update) and not inbox.add(BOT_ID, update)  # Telegram sending it again: one row
    [(update_id, version, body, attempts)] = inbox.take_leftovers(BOT_ID)
    inbox.close()
    again = Update.model_validate_json(body)
    assert (update_id, version, attempts) == (7, 1, 1)
    assert again == update and again.message.from_user.id == 5 and again.message.entities[0].length == 5


def test_a_handled_update_is_not_handled_again_for_two_days(tmp_path: Path) -> None:
    update = Update.model_validate(message_update(8, "/help", user_id=5, message_id=80))
    inbox = Inbox(tmp_path / "inbox.sqlite3")
    inbox.add(BOT_ID, update)
    inbox.done(BOT_ID, 8)
    assert inbox.take_leftovers(BOT_ID) == [] and inbox.unhandled() == 0
    assert not inbox.add(BOT_ID, update)  # Telegram sending it again after a restart
    assert inbox.add(BOT_ID + 1, update)  # another bot (token) on the same DATA_DIR counts its own ids
    with sqlite3.connect(tmp_path / "inbox.sqlite3") as db:
        db.execute("UPDATE inbox SET received_at = received_at - ?", (KEEP_DONE_S + 1,))
    assert inbox.take_leftovers(BOT_ID) == []  # forgets what was received long ago
    assert inbox.add(BOT_ID, update)
    inbox.close()


async def test_a_draw_left_in_the_inbox_is_drawn_at_the_next_start(
    telegram: FakeTelegram, make_settings, tmp_path: Path
) -> None:
    inbox = Inbox.in_dir(str(tmp_path / "data"))
    inbox.add(BOT_ID, Update.model_validate(message_update(3, "/draw left behind", user_id=90, message_id=900)))
    inbox.close()
    async with running_bot(make_settings(telegram.url)):
        await telegram.wait_for("sendMessage", chat_id=90, text_contains="In line")
        [photo] = await telegram.wait_for("sendPhoto", chat_id=90)
    assert photo.reply_to == 900 and "left behind" in photo.data["caption"]
    assert Inbox.in_dir(str(tmp_path / "data")).unhandled() == 0


async def test_unreadable_and_poison_updates_are_dropped_not_fatal(
    telegram: FakeTelegram, make_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox.in_dir(str(tmp_path / "data"))
    inbox.add(BOT_ID, Update.model_validate(message_update(501, "/help", user_id=91, message_id=910)))
    inbox.add(BOT_ID, Update.model_validate(message_update(502, "/help", user_id=92, message_id=920)))
    inbox.close()
    with sqlite3.connect(tmp_path / "data" / "inbox.sqlite3") as db:
        db.execute("UPDATE inbox SET attempts = ? WHERE update_id = 502", (MAX_REPLAYS,))  # killed us before
        add = "INSERT INTO inbox (bot_id, update_id, version, body, received_at) VALUES (?, ?, ?, ?, ?)"
        db.execute(add, (BOT_ID, 503, 1, '{"update_id": 503, "message": 5}', time.time()))
        db.execute(add, (BOT_ID, 504, 99, '{"from": "a later version"}', time.time()))
    async with running_bot(make_settings(telegram.url)):
        await telegram.wait_for("sendMessage", chat_id=91, text_contains="How to ask")
        await telegram.send_text("/help", user_id=93)  # and new updates are served
        await telegram.wait_for("sendMessage", chat_id=93, text_contains="How to ask")
    assert not telegram.find("sendMessage", chat_id=92)
    assert "update 502 given up" in caplog.text
    assert "update 503 in the inbox cannot be read" in caplog.text and "update 504" in caplog.text
    assert Inbox.in_dir(str(tmp_path / "data")).unhandled() == 0


async def test_webhook_update_sent_again_while_handled_is_handled_once(telegram: FakeTelegram, make_settings) -> None:
    """Telegram sends a webhook update again when its answer is late; the copy that comes
    while the first is still being handled is recognised by the inbox."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(
        telegram.url,
        HTTP_PORT=str(port),
        WEBHOOK_URL="https://bot.example.org/hook",
        WEBHOOK_SECRET="s3cret-value-0123456789",
    )
    telegram.delays["sendMessage"] = [1.0]  # the first answer takes a while
    update = message_update(11, "/help", user_id=95, message_id=950)
    async with running_bot(settings):
        await telegram.wait_for("setWebhook")
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                url, secret = (
                    f"http://127.0.0.1:{port}/hook",
                    {"X-Telegram-Bot-Api-Secret-Token": "s3cret-value-0123456789"},
                )
                async with http.post(url, json=update, headers=secret) as response:
                    assert response.status == 200
        await telegram.wait_for("sendMessage", chat_id=95, text_contains="How to ask")
        await asyncio.sleep(1.5)
    assert len(telegram.find("sendMessage", chat_id=95)) == 1
