"""/draw (and plain text in private chats): queue a picture, show progress, send it."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message, ReplyParameters
from aiogram.utils.chat_action import ChatActionSender

from bot.delivery import send_picture
from bot.draw_args import DrawArgsError, DrawLimits, DrawRequest, parse_draw_args
from bot.keyboards import CancelJob, cancel_keyboard
from bot.progress import progress_text, track_progress
from bot.telegram_retry import with_retries
from bot.texts import text
from config import Settings
from generation import (
    GenerationEngine,
    GenerationError,
    Job,
    JobCancelled,
    JobState,
    ModelsUnavailable,
    OutOfMemory,
    QueueFull,
    UserQueueFull,
)

log = logging.getLogger(__name__)


def draw_limits(settings: Settings) -> DrawLimits:
    return DrawLimits(
        default_width=settings.default_width,
        default_height=settings.default_height,
        default_steps=settings.default_steps,
        default_guidance=settings.default_guidance,
        default_prior_guidance=settings.default_prior_guidance,
        max_side=settings.max_side,
        max_steps=settings.max_steps,
    )


async def draw_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> None:
    await draw(message, command.args, bot, engine, settings, lang)


async def draw_plain_text(message: Message, bot: Bot, engine: GenerationEngine, settings: Settings, lang: str) -> None:
    await draw(message, message.text, bot, engine, settings, lang)


async def hint(message: Message, lang: str) -> None:
    """Anything else in a private chat (stickers, photos, unknown commands) gets a hint."""
    await message.answer(text(lang, "private_hint"))


async def draw(
    message: Message, args: str | None, bot: Bot, engine: GenerationEngine, settings: Settings, lang: str
) -> None:
    try:
        request = parse_draw_args(args, draw_limits(settings))
    except DrawArgsError as exc:
        params = {k: html.escape(str(v)) for k, v in exc.params.items()}
        await reply(message, text(lang, exc.key, **params))
        return

    user_id = message.from_user.id if message.from_user else message.chat.id
    try:
        job = await engine.submit(request.params, user_id=user_id)
    except UserQueueFull:
        await reply(message, text(lang, "busy_user", limit=settings.max_pending_per_user))
        return
    except QueueFull:
        await reply(message, text(lang, "busy_global", limit=settings.max_queue))
        return
    except ModelsUnavailable:
        await reply(message, text(lang, "models_unavailable"))
        return
    log.info("job %s queued for user %s: %sx%s, %s steps", job.id, user_id, *request.params.batch_key[:3])

    status = await reply(message, progress_text(job, engine, lang), cancel_keyboard(job.id, lang))
    await serve(message, status, job, request, bot, engine, settings, lang)


async def serve(
    message: Message,
    status: Message,
    job: Job,
    request: DrawRequest,
    bot: Bot,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> None:
    """Wait for the job while keeping the status message and chat action fresh."""
    tracker = asyncio.create_task(track_progress(status, job, engine, lang, settings.progress_interval_s))
    try:
        async with ChatActionSender.upload_photo(bot=bot, chat_id=message.chat.id):
            result = await job.result()
    except JobCancelled:
        return  # the cancel button already said so
    except GenerationError as exc:
        await finish_status(status, failure_text(exc, lang))
        return
    finally:
        tracker.cancel()
    await send_picture(message, request.params, result, lang, request.as_document)
    log.info("job %s sent: batch %s, %.2f s", job.id, result.batch_size, result.seconds)
    with contextlib.suppress(TelegramBadRequest):
        await status.delete()


def failure_text(exc: GenerationError, lang: str) -> str:
    if isinstance(exc, OutOfMemory):
        return text(lang, "out_of_memory")
    if isinstance(exc, ModelsUnavailable):
        return text(lang, "models_unavailable")
    log.error("generation failed: %s", exc)
    return text(lang, "failed")


async def finish_status(status: Message, line: str) -> None:
    """Replace the status message (and its cancel button) with the final word."""
    try:
        await with_retries(lambda: status.edit_text(line, reply_markup=None), "editMessageText")
    except TelegramBadRequest:  # the status message is gone: say it anew
        await with_retries(lambda: status.answer(line), "sendMessage")


async def reply(message: Message, line: str, keyboard=None) -> Message:
    reply_to = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
    return await with_retries(
        lambda: message.answer(line, reply_markup=keyboard, reply_parameters=reply_to), "sendMessage"
    )


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
    router.message.register(draw_command, Command("draw"))
    router.message.register(draw_plain_text, F.chat.type == ChatType.PRIVATE, F.text, ~F.text.startswith("/"))
    router.message.register(hint, F.chat.type == ChatType.PRIVATE)
    router.callback_query.register(cancel, CancelJob.filter())
    return router
