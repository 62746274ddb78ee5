"""/settings (each user's defaults for /draw: shown with buttons, or typed as /draw options)
and /styles (the styles --style may name)."""

from __future__ import annotations

import contextlib
import html
import logging
from dataclasses import replace

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message

from bot.delivery import reply_to
from bot.draw_args import DrawArgsError, echo, request_from_options, split_draw_args
from bot.senders import may_cancel, sender_id
from bot.settings_view import SettingsButton, UnknownButton, pressed, settings_keyboard, settings_text
from bot.stores import SettingsStore
from bot.texts import language_of, text
from bot.user_settings import UserChoices
from config import Settings
from generation.composition import request_limits
from generation.styles import NO_STYLE

log = logging.getLogger(__name__)

RESET = "reset"
# /styles stops listing here (a message holds 4096 characters; STYLES_FILE may hold many).
STYLES_LIST_CHARS = 3500


async def settings_command(
    message: Message, command: CommandObject, user_settings: SettingsStore, settings: Settings, lang: str
) -> None:
    """/settings shows them; /settings reset clears them; /settings --ar 16:9 ... saves
    /draw options as defaults, checked exactly as /draw checks them."""
    owner = sender_id(message)
    args = (command.args or "").strip()
    choices = await user_settings.get(owner)
    if args.lower() == RESET:
        await user_settings.clear(owner)
        choices = UserChoices()
        lang = language_of(message.from_user.language_code if message.from_user else None)
        await show(message, choices, settings, lang, owner, text(lang, "settings-cleared"))
        return
    if args:
        try:
            choices = typed(choices, args, settings)
        except DrawArgsError as exc:
            params = {k: html.escape(v) if isinstance(v, str) else v for k, v in exc.params.items()}
            await message.answer(text(lang, exc.key, **params), reply_parameters=reply_to(message.message_id))
            return
        await user_settings.save(owner, choices)
        log.info("settings of %s saved: %s", owner, sorted(choices.options))
    await show(message, choices, settings, lang, owner, text(lang, "settings-saved") if args else None)


def typed(choices: UserChoices, args: str, settings: Settings) -> UserChoices:
    """``choices`` with the options typed after /settings. Raises DrawArgsError."""
    prompt, values, as_document = split_draw_args(args)
    if prompt:
        raise DrawArgsError("settings-not-an-option", text=echo(prompt))
    if "seed" in values:
        raise DrawArgsError("settings-no-seed")
    request_from_options("x", values, request_limits(settings))  # exactly /draw's checks
    if "style" in values:
        values["style"] = values["style"].strip().lower()
    choices = choices.with_options(values)
    if choices.options.get("style") == NO_STYLE:
        choices = replace(choices, options={k: v for k, v in choices.options.items() if k != "style"})
    return replace(choices, as_document=True) if as_document else choices


async def show(
    message: Message, choices: UserChoices, settings: Settings, lang: str, owner: int, note: str | None
) -> None:
    limits = request_limits(settings)
    body = settings_text(choices, limits, settings.styles, lang, owner)
    await message.answer(
        f"{note}\n\n{body}" if note else body,
        reply_markup=settings_keyboard(choices, limits, lang, owner),
        reply_parameters=reply_to(message.message_id),
    )


async def settings_button(
    query: CallbackQuery, callback_data: SettingsButton, user_settings: SettingsStore, settings: Settings, lang: str
) -> None:
    """A press on a /settings keyboard: only its owner (or, for a chat's settings, the
    chat's admins) changes anything; the message is edited in place."""
    owner = callback_data.owner
    if not await may_cancel(query, owner):
        await query.answer(text(lang, "settings-not-yours"), show_alert=True)
        return
    limits = request_limits(settings)
    before = await user_settings.get(owner)
    try:
        after, view = pressed(before, callback_data.field, callback_data.value, limits)
    except UnknownButton as exc:
        log.info("settings button of %s not known: %s", owner, exc)
        await query.answer(text(lang, "button_unknown"))
        return
    if after != before:
        await user_settings.save(owner, after)
        if owner == query.from_user.id:  # the language they just chose, at once
            lang = after.language or language_of(query.from_user.language_code)
    await query.answer(text(lang, "settings-saved") if after != before else None)
    if not isinstance(query.message, Message):  # too old for Telegram to say what it was
        return
    with contextlib.suppress(TelegramBadRequest):  # "message is not modified", or gone
        await query.message.edit_text(
            settings_text(after, limits, settings.styles, lang, owner),
            reply_markup=settings_keyboard(after, limits, lang, owner, view),
        )


async def styles_command(message: Message, settings: Settings, lang: str) -> None:
    book = settings.styles
    lines = [text(lang, "styles-title")]
    names = list(book.styles)
    for shown, name in enumerate(names):
        if sum(map(len, lines)) > STYLES_LIST_CHARS:
            lines.append(text(lang, "styles-more", count=len(names) - shown))
            break
        description = book.description(name, lang)
        lines.append(f"<code>{html.escape(name)}</code>" + (f" — {html.escape(description)}" if description else ""))
    lines += ["", text(lang, "styles-footer")]
    await message.answer("\n".join(lines), reply_parameters=reply_to(message.message_id))


def create_router() -> Router:
    router = Router(name="settings")
    router.message.register(settings_command, Command("settings"))
    router.message.register(styles_command, Command("styles"))
    router.callback_query.register(settings_button, SettingsButton.filter())
    return router
