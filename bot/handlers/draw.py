"""/draw (and plain text in private chats): accept a request and hand it to the service."""

from __future__ import annotations

import contextlib
import html
import logging

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.delivery import reply_to
from bot.draw_args import DrawArgsError, DrawLimits, parse_draw_args
from bot.draw_service import DrawService
from bot.keyboards import CancelJob, cancel_keyboard
from bot.progress import progress_text
from bot.texts import text
from config import Settings
from generation import GenerationEngine, JobState, ModelsUnavailable, QueueFull, UserQueueFull

log = logging.getLogger(__name__)

RATE_LIMITED = {"rate_limited": True}  # flag read by RateLimitMiddleware


def draw_limits(settings: Settings) -> DrawLimits:
    return DrawLimits(
        default_width=settings.default_width,
        default_height=settings.default_height,
        default_steps=settings.default_steps,
        default_guidance=settings.default_guidance,
        default_prior_guidance=settings.default_prior_guidance,
        max_side=settings.max_side,
        max_steps=settings.max_steps,
        max_prompt_chars=settings.max_prompt_chars,
    )


async def draw_command(
    message: Message,
    command: CommandObject,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> None:
    await draw(message, command.args, draws, engine, settings, lang)


async def draw_plain_text(
    message: Message, draws: DrawService, engine: GenerationEngine, settings: Settings, lang: str
) -> None:
    await draw(message, message.text, draws, engine, settings, lang)


async def hint(message: Message, lang: str) -> None:
    """Anything else in a private chat (stickers, photos, unknown commands) gets a hint."""
    await message.answer(text(lang, "private_hint"))


async def draw(
    message: Message, args: str | None, draws: DrawService, engine: GenerationEngine, settings: Settings, lang: str
) -> None:
    try:
        request = parse_draw_args(args, draw_limits(settings))
    except DrawArgsError as exc:
        params = {k: html.escape(str(v)) for k, v in exc.params.items()}
        await reply(message, text(lang, exc.key, **params))
        return

    user_id = message.from_user.id if message.from_user else message.chat.id
    try:
        ticket = await draws.submit(
            params=request.params,
            as_document=request.as_document,
            chat_id=message.chat.id,
            message_id=message.message_id,
            user_id=user_id,
            lang=lang,
        )
    except UserQueueFull:
        await reply(message, text(lang, "busy_user", limit=settings.max_pending_per_user))
        return
    except QueueFull:
        await reply(message, text(lang, "busy_global", limit=settings.max_queue))
        return
    except ModelsUnavailable:
        await reply(message, text(lang, "models_unavailable"))
        return
    if ticket is None:
        log.info("message %s in chat %s was accepted before: not queued twice", message.message_id, message.chat.id)
        return
    log.info("job %s queued for user %s: %sx%s, %s steps", ticket.journal_id, user_id, *request.params.batch_key[:3])
    try:
        status = await reply(message, progress_text(ticket.job, engine, lang), cancel_keyboard(ticket.job.id, lang))
    except TelegramAPIError as exc:  # no status message, but the picture still comes
        log.warning("job %s: status message not sent: %s", ticket.journal_id, exc)
        status = None
    draws.follow(ticket, status)


async def reply(message: Message, line: str, keyboard=None) -> Message:
    return await message.answer(line, reply_markup=keyboard, reply_parameters=reply_to(message.message_id))


async def cancel(query: CallbackQuery, callback_data: CancelJob, engine: GenerationEngine, lang: str) -> None:
    job = engine.find(callback_data.job_id)
    if job is not None and job.user_id != query.from_user.id:
        await query.answer(text(lang, "cancel_not_yours"), show_alert=True)
        return
    if job is None or job.state is not JobState.QUEUED or not engine.cancel(job):
        await query.answer(text(lang, "cancel_too_late"))
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
    router.callback_query.register(cancel, CancelJob.filter())
    return router
