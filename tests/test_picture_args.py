"""Shared checks for pictures from pictures (bot/picture_args.py): every bad value is a
catalogue message, never a crash."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.draw_args import DrawArgsError, DrawLimits
from bot.picture_args import (
    base_request,
    check_picture,
    check_strength_steps,
    img2img_params,
    mix_parts,
    parse_strength,
    parse_weights,
    picture_size,
    variation_parts,
)
from bot.texts import plain, raise_errors, text
from generation.params import MixPart

LIMITS = DrawLimits(768, 768, 50, 4.0, 1.0, 1024, 100, default_strength=0.5)


@pytest.fixture(autouse=True)
def _strict_texts():
    raise_errors()
    yield
    raise_errors(False)


def _message(exc: DrawArgsError) -> str:
    for lang in ("en", "ru"):
        assert text(lang, exc.key, **exc.params)  # formats in both languages
    return plain(text("en", exc.key, **exc.params))


@pytest.mark.parametrize(
    ("raw", "value"), [(None, 0.5), ("0.6", 0.6), ("0,6", 0.6), ("60%", 0.6), ("1", 1.0), (0.05, 0.05)]
)
def test_strength(raw, value) -> None:
    assert parse_strength(raw, LIMITS) == pytest.approx(value)


@pytest.mark.parametrize("raw", ["0", "0.01", "1.5", "abc", "nan", "inf", "", "-0.5"])
def test_bad_strength(raw) -> None:
    with pytest.raises(DrawArgsError) as exc:
        parse_strength(raw, LIMITS)
    assert exc.value.key == "pics-core-bad-strength" and "0.05" in _message(exc.value)


def test_too_few_steps_for_the_strength() -> None:
    check_strength_steps(10, 0.1)
    with pytest.raises(DrawArgsError) as exc:
        check_strength_steps(4, 0.2)
    assert exc.value.params["needed"] == 5 and "--steps 5" in _message(exc.value)


@pytest.mark.parametrize(
    ("raw", "count", "expected"),
    [
        (None, 2, (0.5, 0.5)),
        ("0.3,0.7", 2, (0.3, 0.7)),
        ("0.4, 0.4, 0.2", 3, (0.4, 0.4, 0.2)),
        ("1,3", 2, (0.25, 0.75)),  # proportions
        ("0,3;0,7", 2, (0.3, 0.7)),  # Russian decimal commas
        ("0,3 0,7", 2, (0.3, 0.7)),
        ([2, 2], 2, (0.5, 0.5)),
    ],
)
def test_weights(raw, count, expected) -> None:
    assert parse_weights(raw, count) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "count", "key"),
    [
        ("0.3,abc", 2, "pics-core-bad-weights"),
        ("0,0", 2, "pics-core-bad-weights"),
        ("-1,2", 2, "pics-core-bad-weights"),
        ("", 2, "pics-core-bad-weights"),
        ("0.5,0.5", 3, "pics-core-weights-count"),
        ("0.2,0.2,0.6", 2, "pics-core-weights-count"),
    ],
)
def test_bad_weights(raw, count, key) -> None:
    with pytest.raises(DrawArgsError) as exc:
        parse_weights(raw, count)
    assert exc.value.key == key
    _message(exc.value)


def test_mix_parts_keep_order_and_kinds() -> None:
    parts = mix_parts([0, " in winter ", 1], "0.4,0.2,0.4", LIMITS)
    assert parts == (MixPart(0.4, image=0), MixPart(0.2, text="in winter"), MixPart(0.4, image=1))


@pytest.mark.parametrize("inputs", [[0], [0, 1, 2, "a", "b"], []])
def test_mix_needs_two_to_four_inputs(inputs) -> None:
    with pytest.raises(DrawArgsError) as exc:
        mix_parts(inputs, None, LIMITS)
    assert exc.value.key == "pics-core-mix-count"
    _message(exc.value)


def test_mix_text_checks() -> None:
    with pytest.raises(DrawArgsError, match="pics-core-empty-text"):
        mix_parts([0, "  "], None, LIMITS)
    with pytest.raises(DrawArgsError, match="prompt_too_long"):
        mix_parts([0, "x" * 1001], None, LIMITS)


def test_variation_parts() -> None:
    assert variation_parts(None, LIMITS) == (MixPart(1.0, image=0),)
    assert variation_parts("in winter", LIMITS) == (MixPart(0.7, image=0), MixPart(0.3, text="in winter"))
    assert variation_parts("snow", LIMITS, "1,1") == (MixPart(0.5, image=0), MixPart(0.5, text="snow"))
    with pytest.raises(DrawArgsError, match="pics-core-weights-count"):
        variation_parts(None, LIMITS, "0.5,0.5")


def test_picture_size_keeps_the_shape_at_the_default_area() -> None:
    assert picture_size(4000, 3000, LIMITS) == (896, 640)
    assert picture_size(100, 100, LIMITS) == (768, 768)
    w, h = picture_size(10000, 1000, LIMITS)
    assert w == 1024 and h % 64 == 0 and h < 200


def test_img2img_params_and_base_request() -> None:
    base = base_request("", {"steps": "10", "seed": "3"}, LIMITS).params
    assert base.prompt == "" and base.num_inference_steps == 10 and base.seed == 3
    p = img2img_params(base, 0.6, (1200, 600), LIMITS)
    assert (p.init_image, p.strength, p.kind) == (0, 0.6, "img2img")
    assert p.width / p.height == pytest.approx(2, rel=0.15)
    assert img2img_params(base, 0.6, None, LIMITS).width == 768
    with pytest.raises(DrawArgsError, match="pics-core-too-few-steps"):
        img2img_params(base, 0.05, None, LIMITS)
    with pytest.raises(DrawArgsError, match="bad_integer"):
        base_request("", {"steps": "x"}, LIMITS)


def _png(size=(80, 60), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(out, "PNG", **save)
    return out.getvalue()


async def test_check_picture() -> None:
    assert await check_picture(_png()) == (80, 60)
    with pytest.raises(DrawArgsError) as exc:
        await check_picture(b"not a picture")
    assert exc.value.key == "pics-core-not-image"
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(DrawArgsError) as exc:
        await check_picture(gif.getvalue())
    assert exc.value.key == "pics-core-animated"
    with pytest.raises(DrawArgsError) as exc:
        await check_picture(b"\0" * (20 * 1024 * 1024 + 1))
    assert exc.value.key == "pics-core-too-large" and "20 MB" in _message(exc.value)
