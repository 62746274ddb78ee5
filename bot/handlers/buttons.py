"""The buttons under every picture: Again, Variations, Upscale 2x and Details.

A button names only an action and its picture's journal row (bot.keyboards.PictureButton);
the journal keeps the request, so a button works after a restart, and one whose request
is gone gets a short answer. A press that draws is a request like a /draw: it counts
against the rate limit (RateLimitMiddleware watches these presses too) and the waiting
quota, is journaled before it is queued, and is served by the DrawService.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets

import aiohttp
from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import CallbackQuery, Message

from bot.delivery import reply_to
from bot.draw_args import SEED_MAX
from bot.draw_service import DrawService
from bot.journal import Entry
from bot.keyboards import PictureAction, PictureButton, cancel_keyboard
from bot.middlewares.rate_limit import ACCEPTED
from bot.picture_details import details_text
from bot.senders import CHAT_ADMINS
from bot.texts import text
from config import Settings
from generation import GenerationEngine, GenerationParams, ModelsUnavailable, QueueFull, UserQueueFull
from generation.composition import request_limits
from generation.images import BadImage, fit_size, open_image
from generation.params import MixPart
from generation.upscale import enlarge, upscale_params, upscale_size

log = logging.getLogger(__name__)

RATE_LIMITED = {"rate_limited": True}  # flag read by RateLimitMiddleware


def press_message_id(query: CallbackQuery) -> int:
    """The journal's message id of a press, which has no message of its own: negative
    (never a real message's), and the same for the same press delivered twice, so the
    journal's UNIQUE(chat_id, message_id) serves it once, like a /draw sent again."""
    digest = hashlib.blake2b(query.id.encode(), digest_size=7).digest()
    return -1 - int.from_bytes(digest, "big")


async def may_press(query: CallbackQuery, message: Message, owner_id: int) -> bool:
    """The person who asked for the picture may press its buttons; in a group, its admins
    too (a press names the real person, even an anonymous admin)."""
    if query.from_user.id == owner_id:
        return True
    if message.chat.type == ChatType.PRIVATE or query.bot is None:
        return False
    try:
        member = await query.bot.get_chat_member(chat_id=message.chat.id, user_id=query.from_user.id)
    except TelegramAPIError as exc:  # the bot can't see the members: only the owner may press
        log.info("can't check admins of chat %s: %s", message.chat.id, exc)
        return False
    return member.status in CHAT_ADMINS


async def answer(query: CallbackQuery, line: str | None = None, alert: bool = False) -> None:
    """Answer a press; a press delivered again after a restart is too old to answer."""
    with contextlib.suppress(TelegramBadRequest):
        await query.answer(line, show_alert=alert)


async def checked_request(query: CallbackQuery, callback_data: PictureButton, draws: DrawService, lang: str):
    """The press's picture message and journal entry, once the presser may use them;
    else None, the press already answered."""
    message = query.message
    entry = await draws.request(callback_data.journal_id)
    # Only a button under a picture of this very chat: data made up by a client must not
    # reach another chat's requests.
    if not isinstance(message, Message) or not isinstance(entry, Entry) or entry.chat_id != message.chat.id:
        await answer(query, text(lang, "btn-gone"))
        return None
    if not await may_press(query, message, entry.user_id):
        await answer(query, text(lang, "btn-not-yours"), alert=True)
        return None
    return message, entry


async def details(query: CallbackQuery, callback_data: PictureButton, draws: DrawService, lang: str) -> None:
    checked = await checked_request(query, callback_data, draws, lang)
    if checked is None:
        return
    message, entry = checked
    await answer(query)
    await message.answer(
        details_text(entry.params, entry.as_document, lang), reply_parameters=reply_to(message.message_id)
    )


async def redraw(
    query: CallbackQuery,
    callback_data: PictureButton,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    bot: Bot,
) -> str | None:
    """Again, Variations and Upscale 2x: a new request from the journal's row (and, for the
    last two, this very picture downloaded from Telegram). ACCEPTED once queued."""
    checked = await checked_request(query, callback_data, draws, lang)
    if checked is None:
        return None
    message, entry = checked
    action, old = callback_data.action, entry.params
    limits = request_limits(settings)
    seed = secrets.randbelow(SEED_MAX + 1)
    if action is PictureAction.AGAIN and old.image_count:  # its pictures were not kept
        await answer(query, text(lang, "btn-gone"))
        return None
    upscaled = upscale_size(old.width, old.height, limits.max_upscale_side)
    if action is PictureAction.UPSCALE and upscaled is None:
        await answer(query, text(lang, "btn-upscale-max", side=limits.max_upscale_side), alert=True)
        return None
    await answer(query, text(lang, f"btn-{action.name.lower()}-pressed"))

    images: list[bytes] = []
    as_document = entry.as_document
    if action is PictureAction.AGAIN:
        params = dataclasses.replace(old, seed=seed)
    else:
        picture = await download_picture(bot, message)
        try:
            if picture is None:
                raise BadImage("not_image", "no picture in the message")
            if action is PictureAction.VARY:
                await asyncio.to_thread(open_image, picture)  # checked before it is queued
                images = [picture]
                params = variation_params(old, seed, limits.max_side, settings.default_pixels)
            else:
                assert upscaled is not None
                images = [await asyncio.to_thread(enlarge, picture, upscaled)]
                as_document = True  # past what Telegram keeps sharp in a photo
                params = upscale_params(
                    upscaled,
                    prompt=old.prompt,
                    steps=old.num_inference_steps,
                    guidance=old.guidance_scale,
                    prior_guidance=old.prior_guidance_scale,
                    strength=limits.upscale_strength,
                    seed=seed,
                    negative_prompt=old.negative_prompt,
                    sampler=old.sampler,
                )
        except BadImage as exc:
            log.info("job %s: picture for %s not usable: %s", entry.id, action.value, exc)
            await say(message, text(lang, "btn-no-picture"))
            return None
    return await queue(query, message, draws, engine, settings, lang, params, as_document, images)


def variation_params(old: GenerationParams, seed: int, max_side: int, default_pixels: int) -> GenerationParams:
    """A variation of the picture (its CLIP image embedding, the request's picture 0) at
    its own size, or, past MAX_SIDE (an upscaled picture), at the default size's area."""
    width, height = old.width, old.height
    if max(width, height) > max_side:
        width, height = fit_size(width, height, default_pixels, max_side)
    return dataclasses.replace(
        old, seed=seed, width=width, height=height, mix=(MixPart(1.0, image=0),), init_image=None
    )


async def download_picture(bot: Bot, message: Message) -> bytes | None:
    """The picture of the bot's own message (a photo's largest size, or the PNG document),
    as Telegram serves it; None when it can't be had."""
    if message.document is not None:
        file_id = message.document.file_id
    elif message.photo:
        file_id = message.photo[-1].file_id
    else:
        return None
    try:
        data = await bot.download(file_id, timeout=60)
    except (TelegramAPIError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("picture %s not downloaded: %s", file_id, exc)
        return None
    return data.getvalue() if data is not None else None


async def queue(
    query: CallbackQuery,
    message: Message,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    params: GenerationParams,
    as_document: bool,
    images: list[bytes],
) -> str | None:
    """Journal and queue the press's request, show its progress under the picture."""
    user_id = query.from_user.id
    try:
        ticket = await draws.submit(
            params=params,
            as_document=as_document,
            chat_id=message.chat.id,
            message_id=press_message_id(query),
            user_id=user_id,
            lang=lang,
            images=images,
            reply_to=message.message_id,
        )
    except UserQueueFull:
        await say(message, text(lang, "busy_user", limit=settings.max_pending_per_user))
        return None
    except QueueFull:
        await say(message, text(lang, "busy_global", limit=settings.max_queue))
        return None
    except ModelsUnavailable:
        await say(message, text(lang, "models_unavailable"))
        return None
    if ticket is None:
        log.info("press %s in chat %s was accepted before: not queued twice", query.id, message.chat.id)
        return None
    log.info("job %s queued for user %s from a button: %s", ticket.journal_id, user_id, params.kind)
    try:
        status = await say(message, await draws.status_text(ticket), cancel_keyboard(ticket.journal_id, lang))
    except TelegramAPIError as exc:  # no status message, but the picture still comes
        log.warning("job %s: status message not sent: %s", ticket.journal_id, exc)
        status = None
    draws.follow(ticket, status)
    return ACCEPTED


async def say(message: Message, line: str, keyboard=None) -> Message:
    """A message in reply to the picture whose button was pressed."""
    return await message.answer(line, reply_markup=keyboard, reply_parameters=reply_to(message.message_id))


def create_router() -> Router:
    router = Router(name="buttons")
    router.callback_query.register(details, PictureButton.filter(F.action == PictureAction.DETAILS))
    router.callback_query.register(redraw, PictureButton.filter(), flags=RATE_LIMITED)
    return router
