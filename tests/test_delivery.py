"""How a finished picture or a failure reaches the user."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from fake_telegram import FakeTelegram

from bot.app import create_bot
from bot.delivery import caption, fits_as_photo, send_picture, shorten
from bot.draw_service import failure_text
from generation import GenerationError, GenerationParams, GenerationResult, ModelsUnavailable, OutOfMemory


def result(width: int = 768, height: int = 768, size: int = 1000, truncated: bool = False) -> GenerationResult:
    return GenerationResult(b"x" * size, width, height, seed=5, seconds=1.234, batch_size=1, prompt_truncated=truncated)


def test_too_large_for_a_photo_goes_as_document() -> None:
    assert fits_as_photo(result())
    assert not fits_as_photo(result(size=11 * 1024 * 1024))  # over sendPhoto's 10 MB
    assert not fits_as_photo(result(width=4096, height=128))  # ratio over 20
    assert not fits_as_photo(result(width=6000, height=5000))  # sides sum over 10000


def test_caption_escapes_and_shortens_the_prompt() -> None:
    params = GenerationParams("<b>fox</b> " * 100, 768, 768, 50, 4.0, 1.0, seed=5)
    text = caption(params, result(truncated=True), "en")
    assert "&lt;b&gt;fox&lt;/b&gt;" in text and "<b>fox" not in text
    assert "…" in text and len(text) < 1024  # Telegram's caption limit
    assert "seed 5 · 768×768 · 50 steps · 1.2 s" in text
    assert "the end was cut" in text
    assert shorten("short") == "short"


def test_failures_have_their_own_words() -> None:
    assert "smaller size" in failure_text(OutOfMemory(), "en")
    assert "поменьше" in failure_text(OutOfMemory(), "ru")
    assert "aren't loaded" in failure_text(ModelsUnavailable("x"), "en")
    assert "Sorry" in failure_text(GenerationError("boom"), "en")


# -- the at-least-once window, against the stand-in Bot API ------------------------------


async def test_slow_upload_is_waited_for_not_sent_again(telegram: FakeTelegram, make_settings) -> None:
    """Telegram taking longer to accept a picture than aiogram's per-call timeout
    (60 s by default; 1 s here) must not make the bot give up and upload it again."""
    bot = create_bot(make_settings(telegram.url))
    bot.session.timeout = 1.0
    telegram.delays["sendPhoto"] = [1.5]
    params = GenerationParams("a fox", 64, 64, 2, 4.0, 1.0, seed=5)
    try:
        await send_picture(bot, 70, 7, params, result(64, 64), "en", as_document=False)
    finally:
        await bot.session.close()
    await asyncio.sleep(0.5)  # an abandoned upload would have arrived by now
    assert len(telegram.find("sendPhoto", chat_id=70)) == 1


async def test_send_accepted_then_connection_lost_delivers_twice(bot: FakeTelegram, tmp_path: Path) -> None:
    """The edge of at-least-once: Telegram accepts the picture, the answer is lost, and
    the bot cannot tell it from a send that never arrived. It sends again: the user gets
    the picture twice (never none), and the job ends sent."""
    bot.accept_then_drop["sendPhoto"] = 1
    request = await bot.send_text("/draw a fox", user_id=71)
    photos = await bot.wait_for("sendPhoto", chat_id=71, count=2, timeout=60)
    await bot.wait_for("deleteMessage", chat_id=71)  # the status message goes once the picture is in
    assert [p.reply_to for p in photos] == [request, request]  # two copies arrive, no more
    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        assert db.execute("SELECT state FROM jobs").fetchall() == [("sent",)]
