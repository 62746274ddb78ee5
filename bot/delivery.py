"""Send a finished picture back to the chat it was asked in."""

from __future__ import annotations

import html
import logging
import re

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, Message, ReplyParameters

from bot.keyboards import picture_keyboard
from bot.texts import text
from generation import GenerationParams, GenerationResult

log = logging.getLogger(__name__)

# Telegram's limits for sendPhoto; past them a picture goes as a document.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES_SUM = 10_000
PHOTO_MAX_RATIO = 20
CAPTION_PROMPT_CHARS = 300
CAPTION_MAX = 1024  # Telegram's limit, counted after the HTML is parsed
_PROMPT = "\x00prompt\x00"  # where the prompt goes once the rest of the caption is known
_TAG = re.compile(r"<[^>]*>")
# How long one upload may take before it is abandoned (and, by the retry middleware,
# sent again). Telegram can take minutes to accept a large picture; an upload given up
# too early may still arrive, and then the retry sends a second copy. aiogram's default
# for every call is 60 s.
UPLOAD_TIMEOUT_S = 300


def reply_to(message_id: int) -> ReplyParameters:
    """Answer a user's message, and still send if they deleted it meanwhile."""
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def fits_as_photo(result: GenerationResult) -> bool:
    sides = (result.width, result.height)
    return (
        len(result.png) <= PHOTO_MAX_BYTES
        and sum(sides) <= PHOTO_MAX_SIDES_SUM
        and max(sides) <= PHOTO_MAX_RATIO * min(sides)
    )


def shorten(prompt: str, limit: int = CAPTION_PROMPT_CHARS) -> str:
    return prompt if len(prompt) <= limit else prompt[: max(0, limit - 1)].rstrip() + "…"


def visible_length(html_text: str) -> int:
    """Characters Telegram counts in an HTML text: after its tags and entities are parsed."""
    return len(html.unescape(_TAG.sub("", html_text)))


def caption(params: GenerationParams, result: GenerationResult, lang: str) -> str:
    """The text under a picture. One line per fact (add yours to ``lines``); the prompt
    comes in last, shortened with "…" to what the caption has left (the full text is
    under Details), so a caption never runs past Telegram's 1024 characters."""
    lines = [
        text(
            lang,
            "caption",
            prompt=_PROMPT,
            seed=result.seed,
            width=result.width,
            height=result.height,
            steps=params.num_inference_steps,
            seconds=result.seconds,
        )
        # Always named (the default too): seed, steps and sampler repeat the picture.
        + " · "
        + text(lang, "sampler-caption", sampler=params.sampler)
    ]
    made = how_made(params, lang)
    if made:
        lines.append(made)
    if params.typed_prompt is not None:  # the prompt above is the English drawn; this, what was typed
        lines.append(text(lang, "tr-caption-note", typed=html.escape(shorten(params.typed_prompt, 200))))
    if params.style is not None:
        lines.append(text(lang, "style-caption", style=html.escape(params.style.name)))
    if result.prompt_truncated:
        lines.append(text(lang, "caption_truncated"))
    return _with_prompt(lines, params.prompt, lang)


def _with_prompt(lines: list[str], prompt: str, lang: str) -> str:
    """``lines`` with the prompt (escaped, in italics) put in, shortened to fit."""
    prompt = prompt.strip()
    if not prompt:  # a variation or mix of pictures only: no empty first line
        return "\n".join(lines).replace(_PROMPT, "", 1).lstrip()
    room = CAPTION_MAX - visible_length("\n".join(lines).replace(_PROMPT, ""))
    if len(prompt) > min(CAPTION_PROMPT_CHARS, room):
        lines = [*lines, text(lang, "btn-caption-shortened")]
        room = max(1, CAPTION_MAX - visible_length("\n".join(lines).replace(_PROMPT, "")))
    shown = f"<i>{html.escape(shorten(prompt, min(CAPTION_PROMPT_CHARS, room)))}</i>"
    return "\n".join(lines).replace(_PROMPT, shown, 1)


def _option_number(value: float) -> str:
    """A number as it is typed back into an option (a dot, at most 3 decimals), whatever
    the language: the caption says how to repeat the picture."""
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def how_made(params: GenerationParams, lang: str) -> str | None:
    """The caption line that says what a picture was drawn from (None for text to image):
    a redraw with its strength, a variation, a mix with its weights."""
    kind = params.kind
    if kind == "img2img":
        return text(lang, "pics-core-caption-img2img", strength=_option_number(params.strength))
    if kind == "text":
        return None
    weights = ",".join(_option_number(part.weight) for part in params.mix)
    texts = [part.text for part in params.mix if part.text is not None]
    if kind == "variation":
        if not texts:
            return text(lang, "pics-core-caption-variation")
        steer = f"«{html.escape(shorten(texts[0], 100))}»"
        return text(lang, "pics-core-caption-variation-text", text=steer, weights=weights)
    pictures = 0
    names = []
    for part in params.mix:
        if part.image is not None:
            pictures += 1
            names.append(text(lang, "pics-core-part-picture", number=pictures))
        else:
            names.append(f"«{html.escape(shorten(part.text or '', 100))}»")
    return text(lang, "pics-core-caption-mix", parts=", ".join(names), weights=weights)


async def send_picture(
    bot: Bot,
    chat_id: int,
    request_id: int,
    params: GenerationParams,
    result: GenerationResult,
    lang: str,
    as_document: bool,
    journal_id: int | None = None,
) -> Message:
    """Reply with the PNG: a photo, or a document when asked for, too large, or refused
    as a photo; with the picture's buttons when its journal row ``journal_id`` is given."""
    reply = reply_to(request_id)
    text_under = caption(params, result, lang)
    buttons = picture_keyboard(journal_id, lang, params) if journal_id is not None else None

    def file() -> BufferedInputFile:
        return BufferedInputFile(result.png, filename=f"kandinsky-{result.seed}.png")

    async def as_file() -> Message:
        return await bot.send_document(
            chat_id,
            file(),
            caption=text_under,
            reply_markup=buttons,
            reply_parameters=reply,
            request_timeout=UPLOAD_TIMEOUT_S,
        )

    # 429s, 5xx and network faults are retried by RetryMiddleware (bot/telegram_retry.py).
    if as_document or not fits_as_photo(result):
        return await as_file()
    try:
        return await bot.send_photo(
            chat_id,
            file(),
            caption=text_under,
            reply_markup=buttons,
            reply_parameters=reply,
            request_timeout=UPLOAD_TIMEOUT_S,
        )
    except TelegramBadRequest as exc:
        if "chat not found" in exc.message.lower():
            raise
        log.warning("sendPhoto refused (%s): sending as a document", exc.message)
        return await as_file()
