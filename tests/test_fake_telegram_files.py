"""The stand-in Bot API serves files as Telegram does, so picture features are tested
through a real aiogram Bot: photos users send, the bot's own pictures, replies, limits."""

from __future__ import annotations

import io

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile
from conftest import TOKEN
from fake_telegram import MAX_DOWNLOAD
from PIL import Image


def picture(size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def client(telegram):
    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
    yield bot
    await bot.session.close()


async def test_a_users_photo_is_downloaded_whole(telegram, client) -> None:
    data = picture()
    await telegram.send_photo(data, "/draw a fox", chat_id=-5, user_id=3)
    update = telegram._updates[-1]["message"]
    assert update["caption_entities"][0]["type"] == "bot_command"
    full = update["photo"][-1]
    assert (full["width"], full["height"]) == (40, 30)
    file = await client.get_file(full["file_id"])
    downloaded = await client.download_file(file.file_path)
    assert downloaded.read() == data


async def test_the_bots_own_picture_can_be_downloaded_and_replied_to(telegram, client) -> None:
    data = picture((64, 64))
    sent = await client.send_photo(7, BufferedInputFile(data, "p.png"), caption="a fox")
    assert sent.photo[-1].width == 64
    downloaded = await client.download(sent.photo[-1].file_id)
    assert downloaded.read() == data
    await telegram.send_text("/vary", user_id=7, reply_to=sent.message_id)
    assert telegram._updates[-1]["message"]["reply_to_message"]["photo"][-1]["file_id"] == sent.photo[-1].file_id


async def test_files_over_20_mb_and_unknown_ids_are_refused(telegram, client) -> None:
    big = telegram.add_file(b"x" * (MAX_DOWNLOAD + 1))
    with pytest.raises(TelegramBadRequest, match="too big"):
        await client.get_file(big)
    with pytest.raises(TelegramBadRequest, match="invalid file_id"):
        await client.get_file("nope")


async def test_captions_over_1024_characters_are_refused(client) -> None:
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await client.send_photo(7, BufferedInputFile(picture(), "p.png"), caption="x" * 1025)
