"""Send a finished picture back to the chat it was asked in."""

from __future__ import annotations

import html

from aiogram.types import BufferedInputFile, Message, ReplyParameters

from bot.telegram_retry import with_retries
from bot.texts import text
from generation import GenerationParams, GenerationResult

# Telegram's limits for sendPhoto; past them a picture goes as a document.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES_SUM = 10_000
PHOTO_MAX_RATIO = 20
CAPTION_PROMPT_CHARS = 300


def fits_as_photo(result: GenerationResult) -> bool:
    sides = (result.width, result.height)
    return (
        len(result.png) <= PHOTO_MAX_BYTES
        and sum(sides) <= PHOTO_MAX_SIDES_SUM
        and max(sides) <= PHOTO_MAX_RATIO * min(sides)
    )


def shorten(prompt: str, limit: int = CAPTION_PROMPT_CHARS) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1].rstrip() + "…"


def caption(params: GenerationParams, result: GenerationResult, lang: str) -> str:
    lines = [
        text(
            lang,
            "caption",
            prompt=f"<i>{html.escape(shorten(params.prompt))}</i>",
            seed=result.seed,
            width=result.width,
            height=result.height,
            steps=params.num_inference_steps,
            seconds=result.seconds,
        )
    ]
    if result.prompt_truncated:
        lines.append(text(lang, "caption_truncated"))
    return "\n".join(lines)


async def send_picture(
    request_message: Message,
    params: GenerationParams,
    result: GenerationResult,
    lang: str,
    as_document: bool,
) -> Message:
    """Reply with the PNG: a photo, or a document when asked for or too large."""
    file = BufferedInputFile(result.png, filename=f"kandinsky-{result.seed}.png")
    reply_to = ReplyParameters(message_id=request_message.message_id, allow_sending_without_reply=True)
    text_under = caption(params, result, lang)
    if as_document or not fits_as_photo(result):
        return await with_retries(
            lambda: request_message.answer_document(file, caption=text_under, reply_parameters=reply_to),
            "sendDocument",
        )
    return await with_retries(
        lambda: request_message.answer_photo(file, caption=text_under, reply_parameters=reply_to),
        "sendPhoto",
    )
