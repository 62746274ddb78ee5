"""A picture's "Details": every parameter as a /draw command that can be sent back."""

from __future__ import annotations

import html

from bot.delivery import shorten, visible_length
from bot.draw_args import _unquote
from bot.texts import text
from generation import GenerationParams

MESSAGE_MAX = 4096  # a message's text, counted after its HTML is parsed
_COMMAND = "\x00command\x00"


def draw_command(params: GenerationParams, as_document: bool = False) -> str:
    """``/draw <prompt> --size WxH --steps N --guidance X --prior-guidance X --seed N
    --sampler NAME [--style NAME] [--neg TEXT] [--file]``: bot.draw_args.parse_draw_args reads it back to the same
    params (for a picture drawn from a text)."""
    parts = [
        "/draw",
        _kept(params.prompt),
        f"--size {params.width}x{params.height}",
        f"--steps {params.num_inference_steps}",
        f"--guidance {params.guidance_scale!r}",  # repr: the float reads back exactly
        f"--prior-guidance {params.prior_guidance_scale!r}",
        f"--seed {params.seed}",
        f"--sampler {params.sampler}",
    ]
    if params.style is not None:
        parts.append(f"--style {params.style.name}")
    if params.negative_prompt:
        parts.append(f"--neg {_kept(params.negative_prompt)}")
    if as_document:
        parts.append("--file")
    return " ".join(parts)


def _kept(value: str) -> str:
    """``value`` as /draw reads it back: quoted when /draw would take quotes (or
    whitespace) around it off."""
    return value if _unquote(value) == value else f"«{value}»"


def details_text(params: GenerationParams, as_document: bool, lang: str) -> str:
    """The Details message (Telegram HTML, everything the user typed escaped), within
    Telegram's 4096 characters: a command too long for that is cut, and says so."""
    command = draw_command(params, as_document and params.image_count == 0)
    extra = [] if params.kind == "text" else [text(lang, "btn-details-from-picture", kind=params.kind)]
    if params.typed_prompt is not None:  # the command holds the English drawn; this, what was typed
        extra.append(text(lang, "tr-caption-note", typed=html.escape(params.typed_prompt[:1000])))

    def message(shown: str, *more: str) -> str:
        head = text(
            lang,
            "btn-details-text",
            seed=params.seed,
            width=params.width,
            height=params.height,
            steps=params.num_inference_steps,
            command=_COMMAND,  # put in after: Fluent refuses a variable over 1000 characters
        )
        return "\n".join([head, *extra, *more]).replace(_COMMAND, html.escape(shown), 1)

    full = message(command)
    if visible_length(full) <= MESSAGE_MAX:
        return full
    cut_note = text(lang, "btn-details-cut")
    room = MESSAGE_MAX - visible_length(message("", cut_note))
    return message(shorten(command, room), cut_note)
