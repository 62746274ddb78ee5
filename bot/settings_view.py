"""What /settings shows: the user's defaults as text, and the inline keyboard that changes them.

Button data is ``set.v1:<owner>:<field>:<value>``: whose settings the message shows (a
user's id, or a chat's for an anonymous admin), what to change and to what. Telegram keeps
a button for good, so the data is versioned by its prefix; data this version can't read
gets a short answer, never an error. Style names fit the 64 bytes Telegram allows
(generation.styles.NAME: at most 32 characters; the rest is at most 29).
"""

from __future__ import annotations

import html
from dataclasses import replace

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.draw_args import DrawArgsError, request_from_options
from bot.texts import LANGUAGES, text
from bot.user_settings import UserChoices, usable_options
from generation import DrawLimits
from generation.styles import NO_STYLE, StyleBook

# The ratios offered on buttons (":" separates callback data's parts: written "16x9" there).
RATIOS = ("1:1", "3:2", "2:3", "16:9", "9:16")
# Quality: decoder steps, capped by MAX_STEPS.
QUALITY = {"fast": 25, "normal": 50, "best": 75}
AUTO = "auto"  # language: the Telegram app's
STYLE_COLUMNS = 3
# Style buttons at most (Telegram shows up to 100 buttons; more would be unusable anyway):
# further styles of a large STYLES_FILE are typed, /settings --style NAME.
STYLE_BUTTONS = 60


class SettingsButton(CallbackData, prefix="set.v1"):
    owner: int
    field: str  # ar, q, style, file, lang, reset, view
    value: str


class UnknownButton(ValueError):
    """Button data of the right form that names no field or value this version knows."""


def quality_steps(name: str, limits: DrawLimits) -> int:
    return min(QUALITY[name], limits.max_steps)


def pressed(choices: UserChoices, field: str, value: str, limits: DrawLimits) -> tuple[UserChoices, str]:
    """The choices after a button press, and the view to show next ("main" or "styles").
    Raises UnknownButton."""
    options = dict(choices.options)
    if field == "view" and value in ("main", "styles"):
        return choices, value
    if field == "ar" and value.replace("x", ":") in RATIOS:
        options.pop("size", None)
        options["ar"] = value.replace("x", ":")
    elif field == "q" and value in QUALITY:
        options["steps"] = str(quality_steps(value, limits))
    elif field == "style" and (value == NO_STYLE or value in limits.styles):
        options.pop("style", None)
        if value != NO_STYLE:
            options["style"] = value
    elif field == "file" and value in ("on", "off"):
        return replace(choices, as_document=value == "on"), "main"
    elif field == "lang" and (value == AUTO or value in LANGUAGES):
        return replace(choices, language=None if value == AUTO else value), "main"
    elif field == "reset" and value == "all":
        return UserChoices(), "main"
    else:
        raise UnknownButton(f"{field}:{value}")
    return replace(choices, options=options), "main"


def settings_text(choices: UserChoices, limits: DrawLimits, book: StyleBook, lang: str, owner: int) -> str:
    options = usable_options(choices, limits, owner)
    try:
        params = request_from_options("x", options, limits).params
    except DrawArgsError:  # each option passed alone; together they can't fail, but never break a view
        params = request_from_options("x", {}, limits).params
    size = f"{params.width}×{params.height}"
    if "ar" in options:
        size = f"{html.escape(options['ar'])} · {size}"
    steps = params.num_inference_steps
    if "steps" not in options:
        quality = "default"
    else:
        quality = next((name for name in QUALITY if quality_steps(name, limits) == steps), "custom")
    style = params.style.name if params.style else NO_STYLE
    description = book.description(style, lang) if params.style else ""
    others = " ".join(
        f'--{name} "{value}"' if " " in value else f"--{name} {value}" if value else f"--{name}"  # --raw: a flag
        for name, value in options.items()
        if name not in ("ar", "size", "steps", "style")
    )
    lines = [
        text(lang, "settings-title"),
        text(lang, "settings-size", size=size, saved="yes" if {"ar", "size"} & options.keys() else "no"),
        text(lang, "settings-quality", quality=quality, steps=steps),
        text(lang, "settings-style", style=html.escape(style)) + (f" — {html.escape(description)}" * bool(description)),
        text(lang, "settings-file", file="on" if choices.as_document else "off"),
        text(lang, "settings-language", language=choices.language or AUTO),
    ]
    if others:
        lines.append(text(lang, "settings-others", options=html.escape(others)))
    lines += ["", text(lang, "settings-footer")]
    return "\n".join(lines)


def settings_keyboard(
    choices: UserChoices, limits: DrawLimits, lang: str, owner: int, view: str = "main"
) -> InlineKeyboardMarkup:
    options = usable_options(choices, limits, owner)
    builder = InlineKeyboardBuilder()

    def button(label: str, field: str, value: str, chosen: bool = False) -> None:
        data = SettingsButton(owner=owner, field=field, value=value)
        builder.button(text=f"✓ {label}" if chosen else label, callback_data=data)

    if view == "styles":
        style = options.get("style", NO_STYLE).lower()
        names = [*list(limits.styles)[:STYLE_BUTTONS], NO_STYLE]
        for name in names:
            button(name, "style", name, name == style)
        button(text(lang, "settings-button-back"), "view", "main")
        builder.adjust(*[STYLE_COLUMNS] * -(-len(names) // STYLE_COLUMNS), 1)
        return builder.as_markup()
    for ratio in RATIOS:
        button(ratio, "ar", ratio.replace(":", "x"), options.get("ar") == ratio)
    steps = options.get("steps")
    for name in QUALITY:
        chosen = steps == str(quality_steps(name, limits))
        button(text(lang, "settings-button-quality", quality=name), "q", name, chosen)
    style = options.get("style", NO_STYLE).lower()
    button(text(lang, "settings-button-style", style=style), "view", "styles")
    button(
        text(lang, "settings-button-file", file="on" if choices.as_document else "off"),
        "file",
        "off" if choices.as_document else "on",
    )
    for language in (AUTO, *LANGUAGES):
        chosen = choices.language == language or (language == AUTO and choices.language is None)
        button(text(lang, "settings-button-language", language=language), "lang", language, chosen)
    button(text(lang, "settings-button-reset"), "reset", "all")
    builder.adjust(len(RATIOS), len(QUALITY), 1, 1, 1 + len(LANGUAGES), 1)
    return builder.as_markup()
