"""Inline keyboards and their callback data.

Callback data outlives the process that made it (a button stays under a message for
good), so it names the journal's id of a request, which is never reused, and carries
a version in its prefix: data of another version or format matches no filter here and
gets a short answer (``bot.handlers.unknown_buttons``), never an error.
"""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.texts import text
from generation import GenerationParams

# Every cancel button's data starts with this: "cancel:<engine job id>" before
# version 2, "cancel.v2:<journal id>" now.
CANCEL_PREFIX = "cancel"


class CancelRequest(CallbackData, prefix=f"{CANCEL_PREFIX}.v2"):
    journal_id: int


def cancel_keyboard(journal_id: int, lang: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=text(lang, "cancel_button"), callback_data=CancelRequest(journal_id=journal_id))
    return builder.as_markup()


# -- the buttons under every picture --------------------------------------------------


class PictureAction(enum.StrEnum):
    AGAIN = "again"  # the same request, a new seed
    VARY = "vary"  # a variation of this very picture
    UPSCALE = "up"  # this picture at twice the size, as a PNG document
    DETAILS = "info"  # every parameter, as a /draw command


class PictureButton(CallbackData, prefix="pic.v1"):
    """ "pic.v1:<action>:<journal id>": what a button needs is the journal's row, so it
    works after a restart; an unknown action fails to unpack and is answered as stale."""

    action: PictureAction
    journal_id: int


def picture_keyboard(journal_id: int, lang: str, params: GenerationParams) -> InlineKeyboardMarkup:
    """Again (for a picture drawn from a text: the pictures a request drew from are not
    kept once it is done), Variations, Upscale 2x and Details."""
    builder = InlineKeyboardBuilder()
    actions = [PictureAction.VARY, PictureAction.UPSCALE, PictureAction.DETAILS]
    if params.image_count == 0:
        actions.insert(0, PictureAction.AGAIN)
    for action in actions:
        builder.button(
            text=text(lang, f"btn-{action.name.lower()}"),
            callback_data=PictureButton(action=action, journal_id=journal_id),
        )
    builder.adjust(2)
    return builder.as_markup()
