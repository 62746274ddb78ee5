"""Allowlists, admin commands and the per-user rate limit, end to end."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from aiogram.types import Message
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
        assert "Requests accepted from you in the last minute: 2" in limited.data["text"]
        await telegram.send_text("/status", user_id=8)  # other commands are not limited
        await telegram.wait_for("sendMessage", chat_id=8, text_contains="Device")
        await telegram.send_text("/draw someone else", user_id=9)
        await telegram.wait_for("sendPhoto", chat_id=9)
        await telegram.wait_for("sendPhoto", chat_id=8, count=2)
        await asyncio.sleep(0.5)
        assert len(telegram.find("sendPhoto", chat_id=8)) == 2


def draw_message(sender: int) -> Message:
    """A /draw message from user ``sender``, as the limiter sees it (no bot: never answered here)."""
    return Message.model_validate(
        {
            "message_id": 1,
            "date": 0,
            "chat": {"id": sender, "type": "private"},
            "from": {"id": sender, "is_bot": False, "first_name": "u"},
            "text": "/draw a fox",
        }
    )


LIMITED = {"lang": "en", "handler": SimpleNamespace(flags={"rate_limited": True})}


async def test_rate_limit_window_slides() -> None:
    from bot.middlewares.rate_limit import ACCEPTED

    now = [0.0]
    limiter = RateLimitMiddleware(2, clock=lambda: now[0])
    handled = []

    async def handler(event, data):
        handled.append(now[0])
        return ACCEPTED

    for t in (0.0, 1.0, 59.9, 60.0, 61.5):
        now[0] = t
        with contextlib.suppress(RuntimeError):  # the refusal can't be sent: no bot here
            await limiter(handler, draw_message(1), dict(LIMITED))
    assert handled == [0.0, 1.0, 60.0, 61.5]


async def test_rate_limit_forgets_quiet_senders() -> None:
    """12.21: the limiter keeps no entry for a sender with nothing in the last minute."""
    from bot.middlewares.rate_limit import ACCEPTED

    now = [0.0]
    limiter = RateLimitMiddleware(5, clock=lambda: now[0])

    async def accept(event, data):
        return ACCEPTED

    for sender in range(1, 2001):
        now[0] = sender * 0.01
        await limiter(accept, draw_message(sender), dict(LIMITED))
    assert limiter.tracked_senders() == 2000  # all within the minute
    now[0] = 100.0
    await limiter(accept, draw_message(1), dict(LIMITED))
    assert limiter.tracked_senders() == 1


async def test_rejected_input_is_not_counted_by_the_limiter() -> None:
    """12.16: a request the handler did not accept costs no slot."""
    limiter = RateLimitMiddleware(1, clock=lambda: 0.0)
    handled = []

    async def refuse(event, data):  # a typo: the handler answers and queues nothing
        handled.append(event)

    for _ in range(5):
        await limiter(refuse, draw_message(1), dict(LIMITED))
    assert len(handled) == 5 and limiter.tracked_senders() == 0


async def test_typos_do_not_use_up_the_rate_limit(telegram: FakeTelegram, make_settings) -> None:
    """12.16: three typos used to lock a user out for a minute."""
    async with running_bot(make_settings(telegram.url, RATE_LIMIT_PER_MIN="2")):
        for i in range(3):
            await telegram.send_text("/draw a fox --steps many", user_id=10)
            await telegram.wait_for("sendMessage", chat_id=10, count=i + 1, text_contains="whole number")
        await telegram.send_text("/draw a fox", user_id=10)
        await telegram.wait_for("sendPhoto", chat_id=10)
        assert not telegram.find("sendMessage", chat_id=10, text_contains="last minute")


async def test_commands_for_other_bots_are_not_refused(telegram: FakeTelegram, make_settings) -> None:
    """12.15: `/ban@otherbot` in a group is none of this bot's business, allowed user or not."""
    async with running_bot(make_settings(telegram.url, ALLOWED_USER_IDS="1")):
        for command in ("/ban@otherbot spammer", "/draw@otherbot a fox", "/help@otherbot", "/ban", "/start@x_bot"):
            await telegram.send_text(command, user_id=3, chat_id=-600)  # a stranger
            await telegram.send_text(command, user_id=1, chat_id=-601)  # an allowed user
        await telegram.send_text("/help@kandinsky_test_bot", user_id=3, chat_id=-600)
        await telegram.send_text("/help@kandinsky_test_bot", user_id=1, chat_id=-601)
        await telegram.wait_for("sendMessage", chat_id=-600, text_contains="this bot is private")
        await telegram.wait_for("sendMessage", chat_id=-601, text_contains="/draw a red fox")
        await asyncio.sleep(0.5)
        assert len(telegram.find("sendMessage", chat_id=-600)) == 1
        assert len(telegram.find("sendMessage", chat_id=-601)) == 1
        # In a private chat everything a stranger sends is refused, as before.
        await telegram.send_text("/ban@otherbot", user_id=3)
        await telegram.wait_for("sendMessage", chat_id=3, text_contains="this bot is private")


async def test_anonymous_admins_are_told_apart_by_their_group(telegram: FakeTelegram, make_settings) -> None:
    """12.11: anonymous admins of two groups all write as GroupAnonymousBot; each group is
    its own sender for the rate limit and the waiting quota, and the group's admins may
    cancel its request."""
    settings = make_settings(telegram.url, RATE_LIMIT_PER_MIN="1", MAX_PENDING_PER_USER="1")
    telegram.chat_admins[-501] = {61}
    async with running_bot(settings):
        await telegram.send_text("/draw keep the worker busy --size 256x256 --steps 30", user_id=60)
        await telegram.wait_for("editMessageText", chat_id=60, text_contains="step")
        await telegram.send_text("/draw a fox", chat_id=-501, anonymous=True)
        [status] = await telegram.wait_for("sendMessage", chat_id=-501, text_contains="In line")
        await telegram.send_text("/draw a cat", chat_id=-502, anonymous=True)
        await telegram.wait_for("sendMessage", chat_id=-502, text_contains="In line")
        await telegram.send_text("/draw again", chat_id=-501, anonymous=True)  # the same group: limited
        await telegram.wait_for("sendMessage", chat_id=-501, text_contains="last minute")

        [button] = status.data["reply_markup"]["inline_keyboard"][0]
        await telegram.press_button(status, button["callback_data"], user_id=62)  # not an admin there
        await telegram.wait_for("answerCallbackQuery", text="Only the person who asked can cancel this.")
        await telegram.press_button(status, button["callback_data"], user_id=61)  # an admin, anonymous or not
        await telegram.wait_for("answerCallbackQuery", text="Cancelled.")
        assert telegram.find("getChatMember", chat_id=-501)
        await telegram.wait_for("sendPhoto", chat_id=-502, timeout=120)
        await asyncio.sleep(0.3)
        assert not telegram.find("sendPhoto", chat_id=-501)
