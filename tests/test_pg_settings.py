"""Users' saved settings in the shared PostgreSQL database: what one replica saves, every
replica uses; rows another version wrote are read as far as they go."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Dispatcher, Router
from aiogram.types import Update
from fake_telegram import FakeTelegram

from bot.app import create_bot
from bot.handlers.settings import create_router
from bot.middlewares.language import LanguageMiddleware
from bot.pg_database import open_pool
from bot.pg_settings import PgSettings
from bot.stores import SettingsStore, settings_store
from bot.user_settings import CHOICES_VERSION, UserChoices


@pytest_asyncio.fixture
async def pools(database_url: str) -> AsyncIterator[list]:
    """Two replicas' pools on one database."""
    pools = [await open_pool(database_url), await open_pool(database_url)]
    yield pools
    for pool in pools:
        await pool.close()


def message(update_id: int, text: str, user_id: int, lang: str = "en") -> Update:
    return Update.model_validate(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": int(time.time()),
                "chat": {"id": user_id, "type": "private"},
                "from": {"id": user_id, "is_bot": False, "first_name": "u", "language_code": lang},
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
            },
        }
    )


async def test_settings_saved_by_one_replica_are_read_by_another(pools: list) -> None:
    first, second = PgSettings(pools[0]), PgSettings(pools[1])
    assert isinstance(first, SettingsStore) and settings_store(first) is first
    choices = UserChoices({"steps": "3", "style": "watercolor"}, as_document=True, language="ru")
    await first.save(41, choices)
    assert await second.get(41) == choices
    assert await second.get(42) == UserChoices()  # someone else's are not theirs
    await second.save(41, choices.with_options({"steps": "5"}))
    assert (await first.get(41)).options == {"steps": "5", "style": "watercolor"}
    await first.clear(41)
    assert await second.get(41) == UserChoices()
    await first.save(43, choices)
    await first.save(43, UserChoices())  # nothing chosen: nothing kept
    async with pools[0].connection() as conn:
        assert await (await conn.execute("SELECT COUNT(*) FROM user_settings")).fetchone() == (0,)


async def test_rows_another_version_wrote_are_read_tolerantly(pools: list, caplog: pytest.LogCaptureFixture) -> None:
    store = PgSettings(pools[0])
    newer = json.dumps({"options": {"steps": "3", "seed": "5"}, "file": True, "language": "ru", "colour": "red"})
    async with pools[0].connection() as conn:
        await conn.execute("INSERT INTO user_settings (owner_id, version, choices) VALUES (51, 1, '{broken')")
        await conn.execute(
            "INSERT INTO user_settings (owner_id, version, choices) VALUES (52, %s, %s)", (CHOICES_VERSION + 1, newer)
        )
    with caplog.at_level(logging.WARNING):
        assert await store.get(51) == UserChoices()
        assert await store.get(52) == UserChoices({"steps": "3"}, as_document=True, language="ru")
    assert "settings of 51 are not JSON" in caplog.text and "'seed'" in caplog.text


async def test_a_database_out_of_reach_gives_no_settings_not_an_error(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every message asks for the language: a database away must not stop them."""
    pool = await open_pool(database_url)
    store = PgSettings(pool)
    await store.save(61, UserChoices(language="ru"))
    assert (await store.get(61)).language == "ru"
    await pool.close()
    with caplog.at_level(logging.ERROR):
        assert await store.get(61) == UserChoices()
    assert "settings of 61 can't be read" in caplog.text


async def test_settings_and_language_handlers_use_the_shared_store(
    pools: list, telegram: FakeTelegram, make_settings
) -> None:
    """/settings on one replica; the language it saved is used by another replica's middleware."""
    settings = make_settings(telegram.url)
    bot = create_bot(settings)
    seen: list[str] = []

    def replica(pool: Any) -> Dispatcher:
        store = PgSettings(pool)
        dispatcher = Dispatcher(settings=settings, user_settings=store)
        dispatcher.update.outer_middleware(LanguageMiddleware(store))
        rest = Router(name="rest")  # after /settings, as bot/handlers' own routers are

        @rest.message()
        async def other(_: Any, lang: str) -> None:
            seen.append(lang)

        dispatcher.include_routers(create_router(), rest)
        return dispatcher

    first, second = replica(pools[0]), replica(pools[1])
    try:
        await first.feed_update(bot, message(1, "/settings --steps 3 --style sketch", user_id=71))
        [saved] = telegram.find("sendMessage", chat_id=71)
        assert "Saved" in saved.data["text"] and "sketch" in saved.data["text"]
        assert (await PgSettings(pools[1]).get(71)).options == {"steps": "3", "style": "sketch"}
        await second.feed_update(bot, message(2, "/settings", user_id=71))
        shown = telegram.find("sendMessage", chat_id=71)[-1]
        assert "sketch" in shown.data["text"]  # the other replica shows what the first saved

        await PgSettings(pools[0]).save(72, UserChoices(language="ru"))
        await second.feed_update(bot, message(3, "hello", user_id=72, lang="en"))
        await second.feed_update(bot, message(4, "hello", user_id=73, lang="en"))
        assert seen == ["ru", "en"]
        await first.feed_update(bot, message(5, "/settings reset", user_id=71))
        assert await PgSettings(pools[1]).get(71) == UserChoices()
    finally:
        await bot.session.close()
