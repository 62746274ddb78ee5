"""Allowlists, admin commands and the per-user rate limit, end to end."""

from __future__ import annotations

import asyncio

from conftest import ADMIN_ID, running_bot
from fake_telegram import FakeTelegram

from bot.middlewares.rate_limit import RateLimitMiddleware


async def test_strangers_are_refused_under_an_allowlist(telegram: FakeTelegram, make_settings) -> None:
    settings = make_settings(telegram.url, ALLOWED_USER_IDS="1,2", ALLOWED_CHAT_IDS="-500")
    async with running_bot(settings):
        await telegram.send_text("/draw a fox", user_id=3)
        [refusal] = await telegram.wait_for("sendMessage", chat_id=3)
        assert "this bot is private" in refusal.data["text"]
        await telegram.send_text("/draw лиса", user_id=4, lang="ru")
        await telegram.wait_for("sendMessage", chat_id=4, text_contains="частный бот")
        await telegram.send_text("/draw in another group", user_id=3, chat_id=-600)
        await telegram.wait_for("sendMessage", chat_id=-600, text_contains="private")
        await telegram.send_text("just chatting in a group", user_id=3, chat_id=-600)

        await telegram.send_text("/draw allowed user", user_id=1)
        await telegram.send_text("/draw@kandinsky_test_bot stranger in an allowed group", user_id=3, chat_id=-500)
        await telegram.send_text("/draw the admin", user_id=ADMIN_ID)
        for chat in (1, -500, ADMIN_ID):
            await telegram.wait_for("sendPhoto", chat_id=chat)
        await asyncio.sleep(0.5)
        assert not telegram.find("sendPhoto", chat_id=3) and not telegram.find("sendPhoto", chat_id=-600)
        # Chatter in a group gets no answer at all, the command got one.
        assert len(telegram.find("sendMessage", chat_id=-600)) == 1


async def test_no_allowlist_means_everyone(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a fox", user_id=777)
    await bot.wait_for("sendPhoto", chat_id=777)


async def test_rate_limit_per_user(telegram: FakeTelegram, make_settings) -> None:
    async with running_bot(make_settings(telegram.url, RATE_LIMIT_PER_MIN="2", MAX_PENDING_PER_USER="10")):
        for i in range(3):
            await telegram.send_text(f"/draw fox {i}", user_id=8)
        [limited] = await telegram.wait_for("sendMessage", chat_id=8, text_contains="in the last minute")
        assert "That's 2 pictures" in limited.data["text"]
        await telegram.send_text("/status", user_id=8)  # other commands are not limited
        await telegram.wait_for("sendMessage", chat_id=8, text_contains="Device")
        await telegram.send_text("/draw someone else", user_id=9)
        await telegram.wait_for("sendPhoto", chat_id=9)
        await telegram.wait_for("sendPhoto", chat_id=8, count=2)
        await asyncio.sleep(0.5)
        assert len(telegram.find("sendPhoto", chat_id=8)) == 2


async def test_rate_limit_window_slides() -> None:
    from types import SimpleNamespace

    now = [0.0]
    limiter = RateLimitMiddleware(2, clock=lambda: now[0])
    handled = []

    async def handler(event, data):
        handled.append(now[0])

    data = {
        "event_from_user": SimpleNamespace(id=1),
        "lang": "en",
        "handler": SimpleNamespace(flags={"rate_limited": True}),
    }
    for t in (0.0, 1.0, 2.0, 59.9, 60.0, 61.5):
        now[0] = t
        await limiter(handler, object(), data)
    assert handled == [0.0, 1.0, 60.0, 61.5]
