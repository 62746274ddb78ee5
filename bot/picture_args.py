"""Checks and builders shared by every way of asking for a picture from pictures
(Telegram, the HTTP API, the command line): strength, weights, mix inputs, the size that
keeps a picture's shape, and a picture's own check.

Torch-free. Each check raises ``bot.draw_args.DrawArgsError(key, **params)`` with a
``pics-core-*`` catalogue key (bot/locales/*/pictures-core.ftl), so all three show the same
message (the API and the CLI through ``bot.texts.plain``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

from bot.draw_args import DrawArgsError, DrawRequest, echo, is_blank, request_from_options
from generation import DrawLimits, GenerationParams
from generation.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, BadImage, fit_size, open_image
from generation.params import MIX_MAX_PARTS, STRENGTH_MAX, STRENGTH_MIN, MixPart

MIX_MIN_PARTS = 2
# "/vary in winter": the picture leads, the text steers.
VARIATION_TEXT_WEIGHT = 0.3

# BadImage.reason -> catalogue key.
IMAGE_ERRORS = {
    "not_image": "pics-core-not-image",
    "animated": "pics-core-animated",
    "too_large": "pics-core-too-large",
    "too_many_pixels": "pics-core-too-many-pixels",
}


def _float(raw: str) -> float:
    """A number as people write it: "0.6", "0,6" (a Russian keyboard), "60%"."""
    text = raw.strip().replace(",", ".")
    percent = text.endswith("%")
    value = float(text.rstrip("%").strip())  # ValueError for anything else
    return value / 100 if percent else value


def parse_strength(raw: str | float | None, limits: DrawLimits, option: str = "--strength") -> float:
    """``--strength`` / the ``strength`` field: STRENGTH_MIN to STRENGTH_MAX, the default
    when None. Raises DrawArgsError("pics-core-bad-strength")."""
    if raw is None:
        return limits.default_strength
    try:
        value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else _float(str(raw))
    except ValueError:
        value = math.nan
    if not STRENGTH_MIN <= value <= STRENGTH_MAX:  # also nan, inf
        raise DrawArgsError(
            "pics-core-bad-strength", option=option, value=echo(str(raw)), low=STRENGTH_MIN, high=STRENGTH_MAX
        )
    return value


def check_strength_steps(steps: int, strength: float) -> None:
    """img2img runs int(steps * strength) decoder steps (generation.pipelines.decoder_steps):
    zero draws nothing. Raises DrawArgsError("pics-core-too-few-steps")."""
    if int(steps * strength) < 1:
        raise DrawArgsError(
            "pics-core-too-few-steps", steps=steps, strength=strength, needed=math.ceil(round(1 / strength, 9))
        )


def parse_weights(raw: str | Sequence[float] | None, count: int) -> tuple[float, ...]:
    """``--weights 0.3,0.7`` for ``count`` inputs, as proportions: each weight divided by
    their sum ("1,3" is 0.25, 0.75). Equal weights when None. Separators: comma, or
    semicolon/space when commas are decimal points ("0,3;0,7"). Raises DrawArgsError
    ("pics-core-bad-weights", "pics-core-weights-count")."""
    if raw is None:
        return tuple(1 / count for _ in range(count))
    if isinstance(raw, str):
        text = raw.strip()
        if ";" in text or (" " in text.strip(" ,") and "," in text and "." not in text):
            items = [i for i in re.split(r"[;\s]+", text) if i]
        else:
            items = [i for i in re.split(r"\s*,\s*|\s+", text) if i]
        try:
            values = [_float(i) for i in items]
        except ValueError:
            raise DrawArgsError("pics-core-bad-weights", value=echo(raw)) from None
    else:
        values = [float(v) for v in raw]
    shown = echo(raw if isinstance(raw, str) else ",".join(f"{v:g}" for v in values))
    if not values or not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise DrawArgsError("pics-core-bad-weights", value=shown)
    if len(values) != count:
        raise DrawArgsError("pics-core-weights-count", given=len(values), count=count, value=shown)
    total = sum(values)
    return tuple(v / total for v in values)


def check_input_count(count: int) -> None:
    """A mix takes 2 to MIX_MAX_PARTS inputs (pictures and texts together). Raises
    DrawArgsError("pics-core-mix-count")."""
    if not MIX_MIN_PARTS <= count <= MIX_MAX_PARTS:
        raise DrawArgsError("pics-core-mix-count", count=count, low=MIX_MIN_PARTS, high=MIX_MAX_PARTS)


def mix_parts(
    inputs: Sequence[str | int], weights: str | Sequence[float] | None, limits: DrawLimits
) -> tuple[MixPart, ...]:
    """The parts of a mix, in the order given: a str is a text, an int the index of one of
    the request's pictures. Checks the count, the texts and the weights. Raises DrawArgsError."""
    check_input_count(len(inputs))
    for item in inputs:
        if isinstance(item, str):
            if is_blank(item):
                raise DrawArgsError("pics-core-empty-text")
            if len(item) > limits.max_prompt_chars:
                raise DrawArgsError("prompt_too_long", limit=limits.max_prompt_chars, length=len(item))
    values = parse_weights(weights, len(inputs))
    return tuple(
        MixPart(w, text=item.strip()) if isinstance(item, str) else MixPart(w, image=item)
        for item, w in zip(inputs, values, strict=True)
    )


def variation_parts(
    text: str | None, limits: DrawLimits, weights: str | Sequence[float] | None = None
) -> tuple[MixPart, ...]:
    """A variation of picture 0, perhaps steered by ``text`` (picture first, then text;
    weights default to 1 - VARIATION_TEXT_WEIGHT and VARIATION_TEXT_WEIGHT). Raises DrawArgsError."""
    if text is None or is_blank(text):
        if weights is not None:
            parse_weights(weights, 1)  # "--weights 0.3,0.7" with one input: say so
        return (MixPart(1.0, image=0),)
    if weights is None:
        weights = (1 - VARIATION_TEXT_WEIGHT, VARIATION_TEXT_WEIGHT)
    return mix_parts([0, text], weights, limits)


def picture_size(width: int, height: int, limits: DrawLimits) -> tuple[int, int]:
    """The drawing size for a picture of ``width`` x ``height`` when the request names
    none: its aspect ratio at about the default picture's pixel count, in 64-pixel tiles."""
    return fit_size(width, height, limits.default_width * limits.default_height, limits.max_side)


def image_error(exc: BadImage) -> DrawArgsError:
    """The user-facing error for a picture that can't be drawn from."""
    return DrawArgsError(
        IMAGE_ERRORS.get(exc.reason, "pics-core-not-image"),
        megabytes=MAX_IMAGE_BYTES // (1024 * 1024),
        megapixels=MAX_IMAGE_PIXELS // 1_000_000,
    )


def check_picture_sync(data: bytes) -> tuple[int, int]:
    """Decode ``data`` (Pillow, bomb guard on) and return its upright (width, height).
    Blocks: call it off the event loop. Raises DrawArgsError."""
    try:
        image = open_image(data)
    except BadImage as exc:
        raise image_error(exc) from None
    return image.width, image.height


async def check_picture(data: bytes) -> tuple[int, int]:
    """:func:`check_picture_sync` in a worker thread. Raises DrawArgsError."""
    return await asyncio.to_thread(check_picture_sync, data)


def img2img_params(
    params: GenerationParams,
    strength: float,
    picture: tuple[int, int] | None,
    limits: DrawLimits,
) -> GenerationParams:
    """``params`` redrawing picture 0 at ``strength``. ``picture``: the picture's
    (width, height) when the request named no size (the result keeps its shape), None
    to keep params' size. Raises DrawArgsError when no decoder step would run."""
    check_strength_steps(params.num_inference_steps, strength)
    size = {} if picture is None else dict(zip(("width", "height"), picture_size(*picture, limits), strict=True))
    return dataclasses.replace(params, init_image=0, strength=strength, mix=(), **size)


def mix_params(params: GenerationParams, parts: Sequence[MixPart]) -> GenerationParams:
    """``params`` drawing from the embedding mix ``parts`` (a variation or a mix). The
    prompt stays what names the request in captions (may be empty)."""
    return dataclasses.replace(params, mix=tuple(parts), init_image=None)


def base_request(
    prompt: str | None, values: Mapping[str, str], limits: DrawLimits, *, as_document: bool = False
) -> DrawRequest:
    """``bot.draw_args.request_from_options`` for a request whose text may be empty (a
    variation, a mix of pictures): every option checked the same way. Raises DrawArgsError."""
    text = (prompt or "").strip()
    request = request_from_options(text if not is_blank(text) else "-", values, limits, as_document=as_document)
    return dataclasses.replace(request, params=dataclasses.replace(request.params, prompt=text))
