"""Pictures from pictures in Telegram: /draw on a photo (a redraw), /vary (a variation),
/mix (a blend of 2 to 4 pictures and texts), and a photo sent with no command in a private
chat (a variation, steered by its caption if it has one).

A command's picture is the message's own (a photo, an image sent as a file, a static
sticker) or that of the message it replies to (the user's photo or one of the bot's
results). Options are /draw's (bot.draw_args), plus --strength and --weights; their
checks are bot.picture_args, shared with the HTTP API and the command line. Every input
is checked before anything is downloaded where it can be, and every picture is decoded
(off the event loop) before a request is accepted, so a bad one gets an answer saying
what to send instead, never a failed job.

Registered before the draw router: its /draw would take a photo's /draw caption as a
text request, and its private-chat hint would answer a photo.
"""

from __future__ import annotations

import dataclasses
import html
import logging
from collections.abc import Awaitable

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot.albums import Album, AlbumCollector
from bot.draw_args import DrawArgsError, is_blank, request_from_options, split_draw_args
from bot.draw_service import DrawService
from bot.handlers.draw import queue, reply
from bot.middlewares.access import is_allowed
from bot.photos import Picture, download_pictures, has_media, media_message, picture_files
from bot.picture_args import (
    base_request,
    check_strength_steps,
    img2img_params,
    mix_params,
    mix_parts,
    parse_strength,
    picture_size,
    variation_parts,
)
from bot.texts import text
from config import Settings
from generation import DrawLimits, GenerationEngine, GenerationParams
from generation.composition import request_limits
from generation.params import MIX_MAX_PARTS

log = logging.getLogger(__name__)

RATE_LIMITED = {"rate_limited": True}  # flag read by RateLimitMiddleware
SIZE_OPTIONS = ("size", "ar")


def _named_size(values: dict[str, str]) -> bool:
    return any(name in values for name in SIZE_OPTIONS)


# -- building requests ------------------------------------------------------------------


async def redraw_request(
    bot: Bot, source: Message, args: str | None, limits: DrawLimits
) -> tuple[GenerationParams, bool, list[Picture], bool]:
    """``/draw <description> [options]`` on a picture: img2img at --strength."""
    refs = picture_files([source])  # a GIF or a PDF is refused before its options are read
    prompt, values, as_document = split_draw_args(args, ("strength",))
    if is_blank(prompt):
        raise DrawArgsError("pics-draw-usage")
    request = request_from_options(prompt, values, limits, as_document=as_document)
    strength = parse_strength(values.get("strength"), limits)
    check_strength_steps(request.params.num_inference_steps, strength)  # before downloading
    [picture] = await download_pictures(bot, refs)
    shape = None if _named_size(values) else (picture.width, picture.height)
    return img2img_params(request.params, strength, shape, limits), as_document, [picture], "raw" in values


async def variation_request(
    bot: Bot, source: Message, args: str | None, limits: DrawLimits
) -> tuple[GenerationParams, bool, list[Picture], bool]:
    """``/vary [text] [options]``: a picture like this one, perhaps steered by the text.
    It keeps the picture's shape unless --size/--ar says otherwise (a variation of a
    portrait is a portrait)."""
    refs = picture_files([source])
    prompt, values, as_document = split_draw_args(args, ("weights",))
    request = base_request(prompt, values, limits, as_document=as_document)
    parts = variation_parts(prompt, limits, values.get("weights"))
    [picture] = await download_pictures(bot, refs)
    params = mix_params(request.params, parts)
    if not _named_size(values):
        width, height = picture_size(picture.width, picture.height, limits)
        params = dataclasses.replace(params, width=width, height=height)
    return params, as_document, [picture], "raw" in values


async def mix_request(
    bot: Bot, sources: list[Message], args: str | None, limits: DrawLimits
) -> tuple[GenerationParams, bool, list[Picture], bool]:
    """``/mix [text] [--weights ...] [options]``: the pictures in order, then the text, at
    equal weights unless --weights says otherwise. The default size: pictures of
    different shapes have no one shape to keep."""
    if len(sources) > MIX_MAX_PARTS:
        raise DrawArgsError("pics-album-too-many", count=len(sources), most=MIX_MAX_PARTS)
    refs = picture_files(sources)
    prompt, values, as_document = split_draw_args(args, ("weights",))
    inputs: list[str | int] = list(range(len(sources)))
    if not is_blank(prompt):
        inputs.append(prompt)
    request = base_request(prompt, values, limits, as_document=as_document)
    parts = mix_parts(inputs, values.get("weights"), limits)  # count and weights, before downloading
    pictures = await download_pictures(bot, refs)
    return mix_params(request.params, parts), as_document, pictures, "raw" in values


# -- handlers -----------------------------------------------------------------------------


async def redraw(
    message: Message,
    command: CommandObject,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    source = media_message(message)
    assert source is not None  # the filter saw one
    return await serve(
        message, redraw_request(bot, source, command.args, request_limits(settings)), draws, engine, settings, lang
    )


async def vary(
    message: Message,
    command: CommandObject,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    source = media_message(message)
    if source is None:
        await reply(message, text(lang, "pics-vary-nothing"))
        return None
    return await serve(
        message, variation_request(bot, source, command.args, request_limits(settings)), draws, engine, settings, lang
    )


async def mix(
    message: Message,
    command: CommandObject,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    source = media_message(message)
    if source is None:
        await reply(message, text(lang, "pics-mix-nothing"))
        return None
    return await serve(
        message, mix_request(bot, [source], command.args, request_limits(settings)), draws, engine, settings, lang
    )


async def private_picture(
    message: Message, bot: Bot, draws: DrawService, engine: GenerationEngine, settings: Settings, lang: str
) -> str | None:
    """A picture with no command in a private chat: a variation of it, its caption (if
    any) steering it like ``/vary <caption>``."""
    request = variation_request(bot, message, message.caption, request_limits(settings))
    return await serve(message, request, draws, engine, settings, lang)


async def album_piece(
    message: Message,
    albums: AlbumCollector,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
    command: CommandObject | None = None,
) -> str | None:
    """One message of an album: wait for the whole album; its leader (the first message
    with a command for us) makes the request, the others return. Only the leader's
    handler is rate limited (album_command): the album is one request."""
    album = await albums.collect(message, command)
    if album.leader is None:
        if message.message_id == album.first and message.chat.type == ChatType.PRIVATE:
            await reply(message, text(lang, "pics-album-hint"))
        return None
    if album.leader != message.message_id:
        return None
    return await album_request(message, album, bot, draws, engine, settings, lang)


async def album_command(
    message: Message,
    command: CommandObject,
    albums: AlbumCollector,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    return await album_piece(message, albums, bot, draws, engine, settings, lang, command)


async def album_request(
    message: Message,
    album: Album,
    bot: Bot,
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    command = album.commands[message.message_id]
    if command.command != "mix":  # /draw and /vary take one picture
        await reply(message, text(lang, "pics-album-one", command=f"/{command.command}"))
        return None
    request = mix_request(bot, album.ordered(), command.args, request_limits(settings))
    return await serve(message, request, draws, engine, settings, lang)


# -- accepting a request ----------------------------------------------------------------


Built = tuple[GenerationParams, bool, list[Picture], bool]  # params, as a document, the pictures


async def serve(
    message: Message,
    building: Awaitable[Built],
    draws: DrawService,
    engine: GenerationEngine,
    settings: Settings,
    lang: str,
) -> str | None:
    """Build the request (``building``: a coroutine of (params, as_document, pictures, --raw given)),
    answering what is wrong with it, then queue it; ACCEPTED if it was (only then does
    it count for the rate limit)."""
    try:
        params, as_document, pictures, raw = await building
    except DrawArgsError as exc:
        values = {k: html.escape(v) if isinstance(v, str) else v for k, v in exc.params.items()}
        await reply(message, text(lang, exc.key, **values))
        return None
    return await queue(
        message,
        params,
        as_document,
        draws,
        engine,
        settings,
        lang,
        images=[p.data for p in pictures],
        translate=not raw,
    )


# -- routing ------------------------------------------------------------------------------


def _with_picture(message: Message) -> bool:
    """The message or the one it replies to has a picture (or media refused as one)."""
    return media_message(message) is not None


def _not_a_command(message: Message) -> bool:
    return not (message.caption or "").startswith("/")


def create_router() -> Router:
    router = Router(name="pictures")
    albums = AlbumCollector()

    # Album pieces get the collector as an argument (aiogram passes a filter's dict result).
    def album(message: Message) -> dict | bool:
        return {"albums": albums} if message.media_group_id is not None and has_media(message) else False

    def allowed_album(message: Message, settings: Settings) -> dict | bool:
        """A piece with no command for us is taken only from those who may ask: a stranger's
        album in a group must not get a refusal per picture (its /mix piece gets one)."""
        return is_allowed(settings, message.from_user, message.chat) and album(message)

    router.message.register(album_command, album, Command("draw", "vary", "mix"), flags=RATE_LIMITED)
    router.message.register(album_piece, allowed_album)
    router.message.register(redraw, Command("draw"), _with_picture, flags=RATE_LIMITED)
    router.message.register(vary, Command("vary"), flags=RATE_LIMITED)
    router.message.register(mix, Command("mix"), flags=RATE_LIMITED)
    router.message.register(
        private_picture, F.chat.type == ChatType.PRIVATE, has_media, _not_a_command, flags=RATE_LIMITED
    )
    return router
