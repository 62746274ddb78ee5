"""The picture of a Telegram message: which file it is, and its bytes, downloaded and checked.

A photo comes in several sizes (the largest is drawn from); an image sent as a file is a
document; a static sticker is a WebP picture. GIFs, videos and animated stickers are
refused by their kind, before anything is downloaded, and so is a file over the 20 MB a
bot may download (its size is in the message). What is downloaded is decoded off the
event loop (bot.picture_args.check_picture) before a request is accepted.
"""

from __future__ import annotations

import asyncio
import io
import logging
from dataclasses import dataclass

import aiohttp
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import Message

from bot.draw_args import DrawArgsError
from bot.picture_args import check_picture, image_error
from generation.images import MAX_IMAGE_BYTES, BadImage

log = logging.getLogger(__name__)

# Documents whose type says nothing (or says image) are downloaded and decoded to see.
_MAYBE_IMAGE = ("", "application/octet-stream")
DOWNLOAD_TIMEOUT_S = 120  # 20 MB over a slow link; aiogram's default is 30 s


@dataclass(frozen=True)
class FileRef:
    file_id: str
    file_size: int | None


@dataclass(frozen=True)
class Picture:
    data: bytes  # the file as sent (the engine decodes it again when it draws)
    width: int  # upright, as decoded
    height: int


def has_media(message: Message | None) -> bool:
    """Whether a message carries something that could be drawn from (or that is refused
    as a picture with a reason: GIF, video, animated sticker, a file of another kind)."""
    if message is None:
        return False
    return any((message.photo, message.document, message.sticker, message.animation, message.video, message.video_note))


def media_message(message: Message) -> Message | None:
    """The message whose picture a command works on: its own, else the one it replies to
    (the user's own photo or one of the bot's results); None when neither has one."""
    if has_media(message):
        return message
    reply = message.reply_to_message
    return reply if has_media(reply) else None


def picture_file(message: Message) -> FileRef:
    """The file to download for the message's picture. Raises DrawArgsError for media
    that is no still picture, and for a file too big to download."""
    if message.photo:
        size = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        ref = FileRef(size.file_id, size.file_size)
    elif message.animation or message.video or message.video_note:
        # (a GIF comes as an animation with a document beside it: checked first)
        raise image_error(BadImage("animated"))
    elif message.sticker:
        if message.sticker.is_animated or message.sticker.is_video:
            raise image_error(BadImage("animated"))
        ref = FileRef(message.sticker.file_id, message.sticker.file_size)
    elif message.document:
        mime = (message.document.mime_type or "").lower()
        if not (mime.startswith("image/") or mime in _MAYBE_IMAGE):
            raise image_error(BadImage("not_image"))
        ref = FileRef(message.document.file_id, message.document.file_size)
    else:
        raise image_error(BadImage("not_image"))
    if ref.file_size is not None and ref.file_size > MAX_IMAGE_BYTES:
        raise image_error(BadImage("too_large"))
    return ref


async def download_picture(bot: Bot, ref: FileRef) -> Picture:
    """Download and check one picture. Raises DrawArgsError."""
    try:
        file = await bot.get_file(ref.file_id)
        if file.file_size is not None and file.file_size > MAX_IMAGE_BYTES:
            raise image_error(BadImage("too_large"))
        if file.file_path is None:
            raise DrawArgsError("pics-download-failed")
        buffer = await bot.download_file(file.file_path, io.BytesIO(), timeout=DOWNLOAD_TIMEOUT_S)
    except TelegramBadRequest as exc:
        if "too big" in exc.message.lower():  # Telegram's own 20 MB check
            raise image_error(BadImage("too_large")) from None
        log.warning("picture %s not downloaded: %s", ref.file_id, exc.message)
        raise DrawArgsError("pics-download-failed") from None
    except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as exc:
        log.warning("picture %s not downloaded: %s", ref.file_id, exc)
        raise DrawArgsError("pics-download-failed") from None
    assert buffer is not None
    data = buffer.getvalue()
    width, height = await check_picture(data)  # decodes in a worker thread
    return Picture(data, width, height)


def picture_files(messages: list[Message]) -> list[FileRef]:
    """The files of ``messages``' pictures, in order; nothing is downloaded, so what a
    message holds is refused first. Raises DrawArgsError (for the first bad one)."""
    return [picture_file(m) for m in messages]


async def download_pictures(bot: Bot, refs: list[FileRef]) -> list[Picture]:
    """Download and check the pictures, all at once. Raises DrawArgsError (the first
    failure in order)."""
    results = await asyncio.gather(*(download_picture(bot, r) for r in refs), return_exceptions=True)
    pictures: list[Picture] = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        pictures.append(result)
    return pictures
