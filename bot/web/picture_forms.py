"""The multipart/form-data bodies of POST /img2img, /variations and /mix, read as a
stream with limits (a picture is never buffered past its 20 MB), checked into a request:
its params and the picture bytes it draws from.

Every bad input is a ``FormError`` (HTTP status and message) or a ``DrawArgsError`` with the
same catalogue message Telegram and the command line show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, MultipartReader, web

from bot.draw_args import JSON_FIELDS, DrawArgsError, DrawLimits, params_from_json
from bot.picture_args import (
    check_picture,
    img2img_params,
    mix_params,
    mix_parts,
    parse_strength,
    variation_parts,
)
from generation import GenerationParams
from generation.images import MAX_IMAGE_BYTES
from generation.params import MIX_MAX_PARTS

# Four pictures of 20 MB and the text fields: more is refused (413) before it is read.
MAX_FORM_BYTES = MIX_MAX_PARTS * MAX_IMAGE_BYTES + 1024 * 1024
MAX_TEXT_FIELD_BYTES = 64 * 1024  # a prompt is at most a few thousand characters
MAX_FIELDS = 32
MAX_INTEGER_DIGITS = 40  # as /generate: no field needs more, and int() of a huge one is slow
NUMBER_FIELDS = ("width", "height", "num_inference_steps", "guidance_scale", "prior_guidance_scale", "seed")


class FormError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Form:
    """The fields in the order sent: ("image", bytes) and (name, str) pairs."""

    fields: list[tuple[str, bytes | str]]

    def texts(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n == name and isinstance(v, str)]

    def one(self, name: str) -> str | None:
        values = self.texts(name)
        if len(values) > 1:
            raise FormError(400, f"{name} is given {len(values)} times; give it once")
        return values[0] if values else None

    @property
    def images(self) -> list[bytes]:
        return [v for n, v in self.fields if n == "image" and isinstance(v, bytes)]


async def read_form(request: web.Request) -> Form:
    """The body's fields, read with limits. Raises FormError (400, 413)."""
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise FormError(413, f"the body must be at most {MAX_FORM_BYTES} bytes")
    if request.content_type == "application/x-www-form-urlencoded":  # a form without files
        return await _read_urlencoded(request)
    if request.content_type != "multipart/form-data":
        raise FormError(400, "the body must be multipart/form-data, with the picture in a file field named image")
    try:
        reader = await request.multipart()
        fields: list[tuple[str, bytes | str]] = []
        total = 0
        while (part := await reader.next()) is not None:
            if isinstance(part, MultipartReader) or not part.name:
                raise FormError(400, "every part of the form must be a named field")
            if len(fields) >= MAX_FIELDS:
                raise FormError(400, f"the form has more than {MAX_FIELDS} fields")
            limit = MAX_IMAGE_BYTES if part.name == "image" else MAX_TEXT_FIELD_BYTES
            data = await _read_part(part, limit, MAX_FORM_BYTES - total)
            total += len(data)
            if part.name == "image":
                fields.append(("image", data))
            else:
                try:
                    fields.append((part.name, data.decode("utf-8")))
                except UnicodeDecodeError:
                    raise FormError(400, f"the field {part.name} must be UTF-8 text") from None
    except DrawArgsError:
        raise
    except (ValueError, AssertionError) as exc:  # aiohttp's words for a malformed multipart body
        raise FormError(400, f"the multipart body is malformed: {exc}") from None
    return Form(fields)


async def _read_urlencoded(request: web.Request) -> Form:
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_TEXT_FIELD_BYTES:
            raise FormError(413, f"a form without pictures must be at most {MAX_TEXT_FIELD_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, f"the form is malformed: {exc}") from None
    return Form([(name, value) for name, value in pairs])


async def _read_part(part: BodyPartReader, limit: int, left: int) -> bytes:
    """The part's bytes. One over ``limit`` is read to its end (within the body's limit)
    and dropped, so that the client, still sending, gets the answer rather than a reset."""
    data = bytearray()
    size = 0
    while chunk := await part.read_chunk(256 * 1024):
        size += len(chunk)
        if size > left:
            raise FormError(413, f"the body must be at most {MAX_FORM_BYTES} bytes")
        if size <= limit:
            data += chunk
        else:
            data.clear()
    if size > limit:
        if part.name == "image":
            raise DrawArgsError("pics-core-too-large", megabytes=MAX_IMAGE_BYTES // (1024 * 1024))
        raise FormError(400, f"the field {part.name} must be at most {limit} bytes")
    return bytes(data)


def _number(name: str, raw: str | None) -> int | float | str | None:
    """A form field as the JSON number /generate would get (a string that is not one
    stays a string, and is refused there as the wrong type)."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if len(raw) > MAX_INTEGER_DIGITS + 1:
        raise FormError(400, f"{name} has more than {MAX_INTEGER_DIGITS} digits")
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def _base(form: Form, prompt: str | None, limits: DrawLimits) -> GenerationParams:
    """The fields /generate has, checked as /generate checks them; ``prompt`` may be
    empty (a variation, a mix)."""
    body: dict[str, object] = {"prompt": prompt if prompt and prompt.strip() else "-"}
    negative = form.one("negative_prompt")
    if negative is not None and negative.strip():
        body["negative_prompt"] = negative
    for name in ("sampler", "style"):
        value = form.one(name)
        if value is not None:
            body[name] = value
    for name in NUMBER_FIELDS:
        value = _number(name, form.one(name))
        if value is not None:
            body[name] = value
    params = params_from_json(body, limits)
    return dataclasses.replace(params, prompt=(prompt or "").strip())


ALLOWED = {
    "img2img": {*JSON_FIELDS, "image", "strength"},
    "variations": {*JSON_FIELDS, "image", "weights"},
    "mix": {*JSON_FIELDS, "image", "weights"},
}


def _check_names(form: Form, kind: str) -> None:
    allowed = ALLOWED[kind]
    for name, _ in form.fields:
        if name not in allowed:
            raise DrawArgsError("unknown_field", field=name[:50], available=", ".join(sorted(allowed)))


async def _checked_images(images: list[bytes]) -> tuple[tuple[int, int], ...]:
    return tuple([await check_picture(data) for data in images])


async def img2img_request(form: Form, limits: DrawLimits) -> tuple[GenerationParams, list[bytes]]:
    """POST /img2img: one picture, a prompt, strength; no width/height keeps the
    picture's shape. Raises FormError or DrawArgsError."""
    _check_names(form, "img2img")
    images = form.images
    if len(images) != 1:
        raise FormError(400, f"send exactly one picture in the file field image (got {len(images)})")
    prompt = form.one("prompt")
    if prompt is None or not prompt.strip():
        raise DrawArgsError("prompt_required")
    strength = parse_strength(form.one("strength"), limits, option="strength")
    params = _base(form, prompt, limits)
    [size] = await _checked_images(images)
    keep_shape = form.one("width") is None and form.one("height") is None
    return img2img_params(params, strength, size if keep_shape else None, limits), images


async def variation_request(form: Form, limits: DrawLimits) -> tuple[GenerationParams, list[bytes]]:
    """POST /variations: one picture, an optional prompt that steers it, weights for
    (picture, prompt). Raises FormError or DrawArgsError."""
    _check_names(form, "variations")
    images = form.images
    if len(images) != 1:
        raise FormError(400, f"send exactly one picture in the file field image (got {len(images)})")
    prompt = form.one("prompt")
    parts = variation_parts(prompt, limits, form.one("weights"))
    params = mix_params(_base(form, prompt, limits), parts)
    await _checked_images(images)
    return params, images


async def mix_request(form: Form, limits: DrawLimits) -> tuple[GenerationParams, list[bytes]]:
    """POST /mix: 2 to 4 inputs, each an image field or a prompt field, weighted in the
    order sent. Raises FormError or DrawArgsError."""
    _check_names(form, "mix")
    inputs: list[str | int] = []
    images: list[bytes] = []
    for name, value in form.fields:
        if name == "image" and isinstance(value, bytes):
            inputs.append(len(images))
            images.append(value)
        elif name == "prompt" and isinstance(value, str):
            inputs.append(value)
    parts = mix_parts(inputs, form.one("weights"), limits)
    texts = [part.text for part in parts if part.text]
    base = dataclasses.replace(_base(form, None, limits), prompt=" · ".join(texts))  # names it in logs
    params = mix_params(base, parts)
    await _checked_images(images)
    return params, images
