"""The /draw option parser: every input becomes a request or a message for the user."""

from __future__ import annotations

import html
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.draw_args import SEED_MAX, DrawArgsError, DrawLimits, params_from_json, parse_draw_args
from bot.texts import KEYS, text

LIMITS = DrawLimits(768, 768, 50, 4.0, 1.0, 1024, 100)


def test_defaults() -> None:
    request = parse_draw_args("a red fox in the snow", LIMITS)
    p = request.params
    assert (p.prompt, p.width, p.height, p.num_inference_steps) == ("a red fox in the snow", 768, 768, 50)
    assert (p.guidance_scale, p.prior_guidance_scale, p.negative_prompt) == (4.0, 1.0, None)
    assert 0 <= p.seed <= SEED_MAX and not request.seed_given and not request.as_document


def test_every_option() -> None:
    request = parse_draw_args(
        'a fox --neg "blurry, text" --size 512x640 --steps 30 --seed 42 --guidance 7.5 --prior-guidance 2 --file',
        LIMITS,
    )
    p = request.params
    assert p.prompt == "a fox" and p.negative_prompt == "blurry, text"
    assert (p.width, p.height, p.num_inference_steps, p.seed) == (512, 640, 30, 42)
    assert (p.guidance_scale, p.prior_guidance_scale) == (7.5, 2.0)
    assert request.as_document and request.seed_given


@pytest.mark.parametrize(
    ("args", "field", "expected"),
    [
        ("fox --no text", "negative_prompt", "text"),
        ("fox --size 512х512", "width", 512),  # Cyrillic х
        ("fox --size 512×384", "height", 384),
        ("fox --size 512", "height", 512),
        ("fox --size 500x500", "width", 512),  # rounded to 64
        ("fox —size 256x256", "width", 256),  # a phone turned -- into a dash
        ("fox --steps=20", "num_inference_steps", 20),
        ("fox --guidance 4,5", "guidance_scale", 4.5),  # Russian decimal comma
        ("--steps 10 a fox", "prompt", "a fox"),
        ("«лиса в снегу» --seed 1", "prompt", "лиса в снегу"),
        ("fox --ar 16:9", "width", 1024),
        ("fox --ar 16:9", "height", 576),
        ("fox --ar 1:1", "width", 768),
        ("fox --ar 9:16", "height", 1024),
    ],
)
def test_option_forms(args: str, field: str, expected: object) -> None:
    assert getattr(parse_draw_args(args, LIMITS).params, field) == expected


RATIOS = sorted(
    {(a, b) for a in range(1, 17) for b in range(1, 17) if 1 / 4 <= a / b <= 4}
    | {(16, 9), (9, 16), (21, 9), (9, 21), (2.39, 1), (1.85, 1), (3, 2), (2, 3)}
)


@pytest.mark.parametrize(("w", "h"), RATIOS, ids=[f"{w}:{h}" for w, h in RATIOS])
def test_every_aspect_ratio_is_met_within_the_max_side(w: float, h: float) -> None:
    """With the default 768x768 and MAX_SIDE 1024: the ratio is as near as 64-pixel tiles
    allow (an exact one where a tile pair has it at a fair size), never past the max side,
    and the picture keeps a fair share of the default area."""
    p = parse_draw_args(f"fox --ar {w}:{h}", LIMITS).params
    assert p.width % 64 == 0 and p.height % 64 == 0
    assert 64 <= p.width <= 1024 and 64 <= p.height <= 1024
    tiles = range(64, 1025, 64)
    nearest = min(abs(math.log(x / y * h / w)) for x in tiles for y in tiles)
    assert abs(math.log(p.width / p.height * h / w)) <= nearest + 0.045
    assert abs(math.log(p.width / p.height * h / w)) < 0.05  # never more than 5% off
    assert 0.38 <= p.width * p.height / (768 * 768) <= 1.6


@pytest.mark.parametrize(
    ("ratio", "size"),
    [
        ("1:1", (768, 768)),
        ("16:9", (1024, 576)),
        ("9:16", (576, 1024)),
        ("21:9", (896, 384)),
        ("3:2", (960, 640)),
        ("4:3", (768, 576)),
        ("3:1", (960, 320)),  # was 1024x448 (2.29:1)
        ("4:1", (1024, 256)),  # was 1024x384 (2.67:1)
        ("1:4", (256, 1024)),
    ],
)
def test_common_aspect_ratios(ratio: str, size: tuple[int, int]) -> None:
    p = parse_draw_args(f"fox --ar {ratio}", LIMITS).params
    assert (p.width, p.height) == size


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (None, "usage"),
        ("", "usage"),
        ("--file", "usage"),
        ("fox --what 1", "unknown_option"),
        ("fox --neg", "missing_value"),
        ("fox --seed", "missing_value"),
        ("fox --steps 0", "bad_integer"),
        ("fox --steps 101", "bad_integer"),
        ("fox --steps 2.5", "bad_integer"),
        ("fox --seed 4294967296", "bad_integer"),
        ("fox --guidance -1", "bad_number"),
        ("fox --guidance inf", "bad_number"),
        ("fox --prior-guidance 21", "bad_number"),
        ("fox --size 10x10", "size_range"),
        ("fox --size 2048x512", "size_range"),
        ("fox --size 512by512", "bad_size"),
        ("fox --ar wide", "bad_ratio"),
        ("fox --ar 0:1", "bad_ratio"),
        ("fox --ar 5:1", "ratio_range"),
        ("fox --ar 10:1", "ratio_range"),
        ("fox --ar 1:4.5", "ratio_range"),
        ("fox --size 512x512 --ar 1:1", "size_and_ratio"),
        ("fox --steps 10 --steps 20", "repeated_option"),
        ("fox --no text --neg blur", "repeated_option"),
        ("fox --file --file", "repeated_option"),
        ("fox --file=yes", "option_takes_no_value"),
        ("fox --file=", "option_takes_no_value"),
        ("\u200b", "usage"),
        ("fox --neg \u200b", "missing_value"),
    ],
)
def test_errors(args: str | None, key: str) -> None:
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args(args, LIMITS)
    assert caught.value.key == key
    # Every error formats in both languages with the parameters it carries.
    for lang in ("en", "ru"):
        assert text(lang, key, **caught.value.params)


@pytest.mark.parametrize(
    "prompt",
    ["\u200b", "\u200b\u200c\u200d", "\u2060\ufeff", " \u200b \t\u200d ", '"\u200b"', "\u3164", "\u200b --seed 1"],
)
def test_invisible_prompt_is_empty(prompt: str) -> None:
    """12.21: zero-width and other invisible characters are no description."""
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args(prompt, LIMITS)
    assert caught.value.key == "usage"
    if '"' not in prompt and "--" not in prompt:  # the HTTP API takes the prompt as it is
        with pytest.raises(DrawArgsError) as caught:
            params_from_json({"prompt": prompt}, LIMITS)
        assert caught.value.key == "prompt_required"
    assert parse_draw_args("fox\u200b", LIMITS).params.prompt == "fox\u200b"  # visible text stays as typed


def test_repeated_option_names_the_option() -> None:
    """12.21: `--steps 10 --steps 20` is refused, not silently read as 20."""
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args("fox --steps 10 --steps=20", LIMITS)
    assert caught.value.params == {"option": "--steps"}
    assert "given twice" in text("en", caught.value.key, **caught.value.params)


def test_file_with_a_value_never_reaches_the_prompt() -> None:
    """12.21: `--file=yes` used to draw "fox yes"; `--file=no` would have meant its opposite."""
    for args in ("fox --file=yes", "fox --file=no --steps 5", "fox --FILE=1"):
        with pytest.raises(DrawArgsError) as caught:
            parse_draw_args(args, LIMITS)
        assert caught.value.key == "option_takes_no_value"
    request = parse_draw_args("fox --file yes", LIMITS)  # a word after the flag is the prompt's, as everywhere
    assert request.as_document and request.params.prompt == "fox yes"


@pytest.mark.parametrize(
    "args",
    [
        "fox --size " + "9" * 5000,
        "fox --ar " + "<" * 5000,
        "fox --steps " + "x" * 5000,
        "fox --seed " + "1" * 5000,
        "fox --guidance " + "&" * 5000,
        "fox --" + "a" * 5000,
    ],
)
def test_echoed_values_are_cut_short(args: str) -> None:
    """12.14: an error repeating a 5000-character value must stay a valid Telegram message."""
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args(args, LIMITS)
    echoed = caught.value.params.get("value") or caught.value.params["option"]
    assert len(echoed) <= 51 and echoed.endswith("…")
    for lang in ("en", "ru"):
        escaped = {k: html.escape(str(v)) for k, v in caught.value.params.items()}
        assert len(text(lang, caught.value.key, **escaped)) < 1000


PIECES = [*"ab фx×х:/,.-—=\"' 0123456789", "--size ", "--steps ", "--ar ", "--neg ", "--seed ", "--file", "--"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25).map("".join))
def test_fuzz_never_raises_anything_else(args: str) -> None:
    try:
        request = parse_draw_args(args, LIMITS)
    except DrawArgsError as exc:
        assert exc.key in KEYS
        text("en", exc.key, **exc.params)
        return
    p = request.params
    assert p.prompt.strip()
    assert 64 <= p.width <= 1024 and 64 <= p.height <= 1024
    assert p.width % 64 == 0 and p.height % 64 == 0
    assert 1 <= p.num_inference_steps <= 100
    assert 0 <= p.guidance_scale <= 20 and 0 <= p.prior_guidance_scale <= 20


def test_picture_options_only_where_a_command_allows_them() -> None:
    from bot.draw_args import split_draw_args

    with pytest.raises(DrawArgsError) as refused:
        parse_draw_args("a fox --strength 0.5", LIMITS)  # plain /draw: no picture to redraw
    assert refused.value.key == "unknown_option"
    assert split_draw_args("a fox --strength 0,6 --seed 3", ("strength",)) == (
        "a fox",
        {"strength": "0,6", "seed": "3"},
        False,
    )
    # A list of weights may hold spaces; the words after it are the text.
    assert split_draw_args("--weights 0.3, 0.7 in winter --file", ("weights",)) == (
        "in winter",
        {"weights": "0.3, 0.7"},
        True,
    )
    assert split_draw_args("x --weights a,b", ("weights",))[1] == {"weights": "a,b"}
    with pytest.raises(DrawArgsError) as unknown:
        split_draw_args("x --weights 1,2", ("strength",))
    assert unknown.value.key == "unknown_option" and "--strength" in str(unknown.value.params["available"])
