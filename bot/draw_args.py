"""Parse ``/draw <prompt> [options]`` into a generation request or a user-facing error."""

from __future__ import annotations

import math
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace

from generation import DrawLimits, GenerationParams  # torch-free: the command line checks options before torch loads
from generation.params import Style
from generation.samplers import SAMPLER_NAMES, sampler_steps
from generation.styles import NO_STYLE

SEED_MAX = 2**32 - 1
GUIDANCE_MAX = 20.0
RATIO_MAX = 4.0
TILE = 64  # Kandinsky's MoVQ works in 64-pixel tiles

OPTIONS = (
    "--neg",
    "--no",
    "--size",
    "--ar",
    "--steps",
    "--seed",
    "--guidance",
    "--prior-guidance",
    "--sampler",
    "--style",
    "--file",
    "--raw",
)
_ALIASES = {"no": "neg", "negative": "neg", "prior_guidance": "prior-guidance", "aspect": "ar"}
_EXAMPLES = {
    "neg": "--neg blurry, text",
    "size": "--size 768x512",
    "ar": "--ar 16:9",
    "steps": "--steps 30",
    "seed": "--seed 42",
    "guidance": "--guidance 4",
    "prior-guidance": "--prior-guidance 1",
    "sampler": "--sampler dpmpp",
    "style": "--style watercolor",
}
# Options that set one thing: a saved default of one gives way to the other typed.
_SAME_THING = ({"size", "ar"},)
# An option starts a word: "--name", "--name=value" (the "=" is captured: "--file=yes" is
# an error). Phones often turn "--" into a dash.
_OPTION = re.compile(r"(?:^|\s+)--([A-Za-z][^\s=]*)(=?)")
_DASHES = re.compile(r"(^|\s)[—–]{1,2}(?=[A-Za-z])")
_SIZE = re.compile(r"^(\d{1,5})\s*[xX×хХ*]\s*(\d{1,5})$")  # Latin x, ×, Cyrillic х
_RATIO = re.compile(r"^(\d+(?:[.,]\d+)?)\s*[:/xX×хХ]\s*(\d+(?:[.,]\d+)?)$")
ECHO_MAX = 50  # a value repeated back in an error is cut to this: a reply holds 4096 characters
# Shown as nothing although not "format" characters: Hangul fillers, the braille blank.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_NUMBER_LIST = re.compile(r"[\d.,;%]+(?:[\s,;]+[\d.,;%]+)*")


class DrawArgsError(ValueError):
    """Input the user must change; ``key`` and ``params`` pick a catalogue message."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class DrawRequest:
    params: GenerationParams
    as_document: bool
    seed_given: bool
    raw: bool = False  # --raw: drawn as typed, never translated


# Options only requests drawn from pictures take (bot/handlers/pictures.py): each command
# names the ones it allows; /draw on its own refuses them as unknown.
PICTURE_OPTIONS = {"strength": "--strength 0.6", "weights": "--weights 0.3,0.7"}


def parse_draw_args(
    args: str | None,
    limits: DrawLimits,
    defaults: Mapping[str, str] | None = None,
    file_by_default: bool = False,
) -> DrawRequest:
    """Turn the text after ``/draw`` into a request, options not typed taken from the
    user's saved ``defaults`` (keyed as ``request_from_options``'s values). Raises DrawArgsError."""
    prompt, values, as_document = split_draw_args(args)
    values = with_defaults(values, defaults or {})
    request = request_from_options(prompt, values, limits, as_document=as_document or file_by_default)
    return replace(request, raw=True) if "raw" in values else request


def with_defaults(typed: Mapping[str, str], defaults: Mapping[str, str]) -> dict[str, str]:
    """``typed`` option values over ``defaults``: the command always wins, also over a
    default that sets the same thing another way (a typed --size over a saved --ar)."""
    shadowed = {name for group in _SAME_THING if group & typed.keys() for name in group}
    return {**{k: v for k, v in defaults.items() if k not in shadowed}, **typed}


def split_draw_args(args: str | None, extra: tuple[str, ...] = ()) -> tuple[str, dict[str, str], bool]:
    """The text after a command as (description, option values by name without ``--``,
    --file given), nothing checked but the options' names and form; --raw is the value
    "raw" (""). ``extra``: names of PICTURE_OPTIONS also accepted. Raises DrawArgsError."""
    examples = _EXAMPLES | {name: PICTURE_OPTIONS[name] for name in extra}
    available = ", ".join((*OPTIONS, *(f"--{name}" for name in extra)))
    text = _DASHES.sub(r"\1--", (args or "").strip())
    parts = _OPTION.split(text)
    prompt_words = [parts[0]]
    values: dict[str, str] = {}
    as_document = False
    raw = False
    seen: set[str] = set()
    for name, equals, rest in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        name = _ALIASES.get(name.lower(), name.lower())
        rest = rest.strip()
        if name in seen:  # "--steps 10 --steps 20": which one was meant is a guess
            raise DrawArgsError("repeated_option", option=f"--{name}")
        seen.add(name)
        if name == "file":
            if equals:  # "--file=no" would be read as its opposite: ask rather than guess
                raise DrawArgsError("option_takes_no_value", option="--file")
            as_document = True
            prompt_words.append(rest)
        elif name == "raw":  # like --file: a flag, and what follows is still the prompt
            if equals:
                raise DrawArgsError("option_takes_no_value", option="--raw")
            raw = True
            prompt_words.append(rest)
        elif name == "neg":
            if is_blank(_unquote(rest)):
                raise DrawArgsError("missing_value", option="--neg", example=_EXAMPLES["neg"])
            values[name] = _unquote(rest)
        elif name in examples:
            if name == "weights":  # "0.3, 0.7": a list may hold spaces
                match = _NUMBER_LIST.match(rest)
                value, after = (match.group().strip(), rest[match.end() :]) if match else rest.partition(" ")[::2]
            else:
                value, _, after = rest.partition(" ")
            if not value:
                raise DrawArgsError("missing_value", option=f"--{name}", example=examples[name])
            values[name] = value
            prompt_words.append(after)
        else:
            raise DrawArgsError("unknown_option", option=echo(f"--{name}"), available=available)

    prompt = _unquote(" ".join(w.strip() for w in prompt_words if w.strip()))
    if raw:  # carried as a value: request_from_options reads only the options it knows
        values["raw"] = ""
    return prompt, values, as_document


def request_from_options(
    prompt: str, values: Mapping[str, str], limits: DrawLimits, *, as_document: bool = False
) -> DrawRequest:
    """A request from a prompt and option values already split apart, as the command
    line's arguments are (nothing is unquoted or re-split). ``values`` is keyed by the
    option's name without ``--``: neg, size, ar, steps, seed, guidance, prior-guidance,
    sampler, style. Raises DrawArgsError."""
    prompt = prompt.strip()
    if is_blank(prompt):
        raise DrawArgsError("usage")
    for value in (prompt, values.get("neg", "")):
        if len(value) > limits.max_prompt_chars:
            raise DrawArgsError("prompt_too_long", limit=limits.max_prompt_chars, length=len(value))
    if "size" in values and "ar" in values:
        raise DrawArgsError("size_and_ratio")
    if "size" in values:
        width, height = _size(values["size"], limits.max_side)
    elif "ar" in values:
        width, height = _size_for_ratio(values["ar"], limits)
    else:
        width, height = limits.default_width, limits.default_height
    seed_given = "seed" in values
    sampler = _sampler("--sampler", values.get("sampler"), limits.default_sampler)
    params = GenerationParams(
        prompt=prompt,
        negative_prompt=values.get("neg"),
        width=width,
        height=height,
        num_inference_steps=_integer(
            "--steps", values.get("steps"), 1, limits.max_steps, sampler_steps(sampler, limits.default_steps)
        ),
        guidance_scale=_number("--guidance", values.get("guidance"), limits.default_guidance),
        prior_guidance_scale=_number("--prior-guidance", values.get("prior-guidance"), limits.default_prior_guidance),
        seed=_integer("--seed", values.get("seed"), 0, SEED_MAX, None)
        if seed_given
        else secrets.randbelow(SEED_MAX + 1),
        sampler=sampler,
        style=style_named(values.get("style"), limits),
    )
    return DrawRequest(params=params, as_document=as_document, seed_given=seed_given)


def style_named(name: str | None, limits: DrawLimits) -> Style | None:
    """The style --style names (any case); None for none. Raises DrawArgsError."""
    if name is None or name.strip().lower() == NO_STYLE:
        return None
    style = limits.styles.get(name.strip().lower())
    if style is None:
        raise DrawArgsError("style-unknown", value=echo(name), available=", ".join([*limits.styles, NO_STYLE]))
    return style


def echo(value: str) -> str:
    """A user's value as an error repeats it: cut short, so the reply stays within
    Telegram's 4096 characters (escaping may still grow it, but not past that)."""
    return value if len(value) <= ECHO_MAX else value[:ECHO_MAX] + "…"


def is_blank(text: str) -> bool:
    """Nothing visible: whitespace and invisible characters (zero-width space and joiners,
    word joiner, BOM, bidi marks: Unicode's "format" category) only."""
    return all(c.isspace() or c in _BLANKS or unicodedata.category(c) == "Cf" for c in text)


def _unquote(text: str) -> str:
    text = text.strip()
    for left, right in (('"', '"'), ("'", "'"), ("«", "»"), ("“", "”")):
        if len(text) >= 2 and text[0] == left and text[-1] == right:
            return text[1:-1].strip()
    return text


def _to_tile(value: float, max_side: int) -> int:
    """Round to the nearest multiple of 64 within [64, max_side]."""
    top = max(TILE, max_side // TILE * TILE)
    return int(min(top, max(TILE, round(value / TILE) * TILE)))


def _size(raw: str, max_side: int) -> tuple[int, int]:
    match = _SIZE.match(raw) or re.match(r"^(\d{1,5})()$", raw)
    if not match:
        raise DrawArgsError("bad_size", value=echo(raw))
    width = int(match.group(1))
    height = int(match.group(2) or width)  # "--size 512" means a square
    if not (TILE <= width <= max_side and TILE <= height <= max_side):
        raise DrawArgsError("size_range", max_side=max_side, width=width, height=height)
    return _to_tile(width, max_side), _to_tile(height, max_side)


def _size_for_ratio(raw: str, limits: DrawLimits) -> tuple[int, int]:
    """The size in 64-pixel tiles within the max side whose ratio is nearest ``raw``, at
    about the default picture's area.

    Every pair of tiles is a candidate (a few hundred): shrinking the default-area size to
    fit the max side and then rounding each side distorted the ratio (4:1 came out as
    1024x384). The ratio counts 20 times as much as the area, so an exact ratio wins
    unless only a much smaller picture has it (3:10 is 320x1024, not 192x640).
    """
    match = _RATIO.match(raw)
    if not match:
        raise DrawArgsError("bad_ratio", value=echo(raw))
    w, h = (float(g.replace(",", ".")) for g in match.groups())
    if w <= 0 or h <= 0:
        raise DrawArgsError("bad_ratio", value=echo(raw))
    if not (1 / RATIO_MAX <= w / h <= RATIO_MAX):
        raise DrawArgsError("ratio_range", value=echo(raw))
    area = limits.default_width * limits.default_height
    sides = range(TILE, max(TILE, limits.max_side // TILE * TILE) + 1, TILE)

    def cost(size: tuple[int, int]) -> tuple[float, int]:
        # Both in log terms: 2:1 against 1:1 weighs as much as twice the area against
        # the same area. A tie goes to the smaller picture (it draws faster).
        ratio_off = abs(math.log(size[0] / size[1] * h / w))
        area_off = abs(math.log(size[0] * size[1] / area))
        return round(ratio_off + area_off / 20, 9), size[0] * size[1]

    return min(((width, height) for width in sides for height in sides), key=cost)


def _integer(option: str, raw: str | None, low: int, high: int, default: int | None) -> int:
    if raw is None:
        assert default is not None
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DrawArgsError("bad_integer", option=option, low=low, high=high, value=echo(raw)) from None
    if not low <= value <= high:
        raise DrawArgsError("bad_integer", option=option, low=low, high=high, value=echo(raw))
    return value


def _sampler(option: str, raw: str | None, default: str) -> str:
    """A sampler's name (any case); an unknown one gets the list of those there are."""
    if raw is None:
        return default
    name = raw.strip().lower()
    if name not in SAMPLER_NAMES:
        raise DrawArgsError("sampler-unknown", option=option, value=echo(raw), available=", ".join(SAMPLER_NAMES))
    return name


def _number(option: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw.replace(",", "."))  # "4,5" as written with a Russian keyboard
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= GUIDANCE_MAX:  # also rejects nan and inf
        raise DrawArgsError("bad_number", option=option, low=0, high=int(GUIDANCE_MAX), value=echo(raw))
    return value


# The old service's POST /generate body: field -> (the /draw option it matches).
JSON_FIELDS = {
    "prompt": None,
    "negative_prompt": "--neg",
    "width": "--size",
    "height": "--size",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance",
    "prior_guidance_scale": "--prior-guidance",
    "seed": "--seed",
    "sampler": "--sampler",
    "translate": None,  # read by the HTTP API (bot/web/api.py): translate a Russian prompt or not
    "style": "--style",
}


def params_from_json(body: object, limits: DrawLimits) -> GenerationParams:
    """Validate an old-service JSON body exactly as ``/draw`` validates its options."""
    if not isinstance(body, dict):
        raise DrawArgsError("json_not_object")
    unknown = sorted(set(body) - set(JSON_FIELDS))
    if unknown:
        raise DrawArgsError("unknown_field", field=echo(unknown[0]), available=", ".join(JSON_FIELDS))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or is_blank(prompt):
        raise DrawArgsError("prompt_required")
    negative = body.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise DrawArgsError("bad_field", field="negative_prompt", expected="string")
    style = body.get("style")
    if style is not None and not isinstance(style, str):
        raise DrawArgsError("bad_field", field="style", expected="string")
    for value in (prompt, negative or ""):
        if len(value) > limits.max_prompt_chars:
            raise DrawArgsError("prompt_too_long", limit=limits.max_prompt_chars, length=len(value))

    def field(name: str) -> str | None:
        value = body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DrawArgsError("bad_field", field=name, expected="number")
        return str(value)

    width = field("width") or str(limits.default_width)
    height = field("height") or str(limits.default_height)
    if "." in width + height:
        raise DrawArgsError("bad_size", value=f"{width}x{height}")
    seed = field("seed")
    sampler = body.get("sampler")
    if sampler is not None and not isinstance(sampler, str):
        raise DrawArgsError("bad_field", field="sampler", expected="string")
    sampler = _sampler("sampler", sampler, limits.default_sampler)
    width_px, height_px = _size(f"{width}x{height}", limits.max_side)
    return GenerationParams(
        prompt=prompt.strip(),
        negative_prompt=negative.strip() if negative and negative.strip() else None,
        width=width_px,
        height=height_px,
        num_inference_steps=_integer(
            "num_inference_steps",
            field("num_inference_steps"),
            1,
            limits.max_steps,
            sampler_steps(sampler, limits.default_steps),
        ),
        guidance_scale=_number("guidance_scale", field("guidance_scale"), limits.default_guidance),
        prior_guidance_scale=_number(
            "prior_guidance_scale", field("prior_guidance_scale"), limits.default_prior_guidance
        ),
        seed=_integer("seed", seed, 0, SEED_MAX, None) if seed is not None else secrets.randbelow(SEED_MAX + 1),
        sampler=sampler,
        style=style_named(style, limits),
    )
