"""/draw (and plain text in private chats): accept a request and hand it to the service."""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Sequence

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.delivery import reply_to
from bot.draw_args import DrawArgsError, parse_draw_args
from bot.draw_service import CancelOutcome, DrawService
from bot.keyboards import CancelRequest, cancel_keyboard
from bot.middlewares.rate_limit import ACCEPTED
from bot.senders import may_cancel, sender_id
from bot.texts import text
from bot.user_settings import UserSettings, usable_options
from config import Settings
from generation import GenerationEngine, GenerationParams, ModelsUnavailable, QueueFull, UserQueueFull
from generation.composition import request_limits

log = logging.getLogger(__name__)

RATE_LIMITED = {"rate_limited": True}  # flag read by RateLimitMiddleware


async def draw_command(
    message: Message,
    command: CommandObject,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    user_settings: UserSettings,
) -> str | None:
    return await draw(message, command.args, draws, engine, settings, lang, user_settings)


async def draw_plain_text(
    message: Message,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    user_settings: UserSettings,
) -> str | None:
    return await draw(message, message.text, draws, engine, settings, lang, user_settings)


async def hint(message: Message, lang: str) -> None:
    """Anything else in a private chat (stickers, photos, unknown commands) gets a hint."""
    await message.answer(text(lang, "private_hint"))


async def draw(
    message: Message,
    args: str | None,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    user_settings: UserSettings,
) -> str | None:
    """Queue the request; ACCEPTED if it was (only then does it count for the rate limit).
    Options not typed come from the sender's saved defaults (/settings)."""
    user_id = sender_id(message)  # an anonymous admin is their group, not GroupAnonymousBot
    limits = request_limits(settings)
    saved = await user_settings.get(user_id)
    try:
        request = parse_draw_args(args, limits, usable_options(saved, limits, user_id), saved.as_document)
    except DrawArgsError as exc:
        # Numbers stay numbers: the catalogue picks plural forms by them ("351 символ").
        params = {k: html.escape(v) if isinstance(v, str) else v for k, v in exc.params.items()}
        await reply(message, text(lang, exc.key, **params))
        return None

    return await queue(
        message, request.params, request.as_document, draws, engine, settings, lang, translate=not request.raw
    )


async def queue(
    message: Message,
    params: GenerationParams,
    as_document: bool,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    *,
    images: Sequence[bytes] = (),
    translate: bool = True,
) -> str | None:
    """Journal and queue a checked request and show its progress (/draw and pictures from
    pictures alike); ACCEPTED if it was queued. ``translate``: False for --raw."""
    user_id = sender_id(message)  # an anonymous admin is their group, not GroupAnonymousBot
    try:
        ticket = await draws.submit(
            params=params,
            as_document=as_document,
            chat_id=message.chat.id,
            message_id=message.message_id,
            user_id=user_id,
            lang=lang,
            images=images,
            translate=translate,
        )
    except UserQueueFull:
        await reply(message, text(lang, "busy_user", limit=settings.max_pending_per_user))
        return None
    except QueueFull:
        await reply(message, text(lang, "busy_global", limit=settings.max_queue))
        return None
    except ModelsUnavailable:
        await reply(message, text(lang, "models_unavailable"))
        return None
    if ticket is None:
        log.info("message %s in chat %s was accepted before: not queued twice", message.message_id, message.chat.id)
        return None
    log.info(
        "job %s queued for user %s: %s from %d pictures, %sx%s, %s steps",
        ticket.journal_id,
        user_id,
        params.kind,
        len(images),
        params.width,
        params.height,
        params.num_inference_steps,
    )
    try:
        line = await draws.status_text(ticket)  # its place in line (the shared one, with replicas)
        status = await reply(message, line, cancel_keyboard(ticket.journal_id, lang))
    except TelegramAPIError as exc:  # no status message, but the picture still comes
        log.warning("job %s: status message not sent: %s", ticket.journal_id, exc)
        status = None
    draws.follow(ticket, status)
    return ACCEPTED


async def reply(message: Message, line: str, keyboard=None) -> Message:
    return await message.answer(line, reply_markup=keyboard, reply_parameters=reply_to(message.message_id))


async def cancel(query: CallbackQuery, callback_data: CancelRequest, draws: DrawService, lang: str) -> None:
    """Cancel the waiting request of this button's journal row, if the presser may: the
    person who asked, or, for a request written as a chat (an anonymous admin), its admins."""
    owner = await draws.owner_of(callback_data.journal_id)
    allowed = owner is not None and await may_cancel(query, owner)
    outcome = await draws.cancel_request(callback_data.journal_id, owner if allowed else query.from_user.id)
    if outcome is CancelOutcome.NOT_YOURS:
        await query.answer(text(lang, "cancel_not_yours"), show_alert=True)
        return
    if outcome is not CancelOutcome.CANCELLED:
        await query.answer(text(lang, "cancel_too_late" if outcome is CancelOutcome.TOO_LATE else "cancel_gone"))
        return
    await query.answer(text(lang, "cancelled"))
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_text(text(lang, "cancelled"), reply_markup=None)


def create_router() -> Router:
    router = Router(name="draw")
    router.message.register(draw_command, Command("draw"), flags=RATE_LIMITED)
    router.message.register(
        draw_plain_text, F.chat.type == ChatType.PRIVATE, F.text, ~F.text.startswith("/"), flags=RATE_LIMITED
    )
    router.message.register(hint, F.chat.type == ChatType.PRIVATE)
    router.callback_query.register(cancel, CancelRequest.filter())
    return router
