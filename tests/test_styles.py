"""--style: built-in templates and STYLES_FILE's, drawn as the wrapped prompt, listed by
/styles, refused by name when unknown; a bad STYLES_FILE stops the start naming its line."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import TOKEN, png_image, running_bot
from fake_telegram import FakeTelegram
from test_http_api import free_port, wait_healthy
from test_startup import main_py

from bot.draw_args import DrawArgsError, params_from_json, request_from_options
from bot.settings_view import SettingsButton
from config import ConfigError, settings_from_env
from generation.composition import request_limits
from generation.styles import NAME, load_styles

NEON = """
[neon]
prompt = "neon sign of {prompt}, glowing tubes"
negative = "daylight"
description = { en = "a glowing neon sign", ru = "неоновая вывеска" }

[photo]
prompt = "old photo of {prompt}"
description = "a faded old photograph"
"""


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(png_image(data)).astype(int)


def test_built_in_styles_suit_buttons_and_both_languages() -> None:
    book = load_styles()
    assert 8 <= len(book.styles) <= 12
    assert {"photo", "anime", "oil-painting", "watercolor", "3d-render", "pixel-art", "sketch", "kandinsky"} <= set(
        book.styles
    )
    for name, style in book.styles.items():
        assert NAME.fullmatch(name) and "{prompt}" in style.prompt and style.negative
        assert book.description(name, "en") and book.description(name, "ru") != book.description(name, "en")
        # The longest owner id there is (a supergroup's) with the longest name a file may give.
        data = SettingsButton(owner=-1009999999999, field="style", value=name).pack()
        assert len(data.encode()) <= 64
    longest = SettingsButton(owner=-1009999999999, field="style", value="x" * 32).pack()
    assert len(longest.encode()) <= 64


def test_a_style_wraps_the_description_and_adds_its_negative(make_settings) -> None:
    limits = request_limits(make_settings())
    params = request_from_options("a fox", {"style": "Watercolor", "neg": "text"}, limits).params
    assert params.prompt == "a fox" and params.negative_prompt == "text"  # the user's own, for captions
    assert params.drawn_prompt.startswith("watercolor painting of a fox,")
    assert params.drawn_negative == "text, photo, 3d render, harsh lines"
    assert request_from_options("a fox", {"style": "none"}, limits).params.style is None
    with pytest.raises(DrawArgsError) as refused:
        request_from_options("a fox", {"style": "nope"}, limits)
    assert refused.value.key == "style-unknown" and "watercolor" in refused.value.params["available"]
    assert params_from_json({"prompt": "a fox", "style": "sketch"}, limits).style.name == "sketch"


def test_the_command_line_takes_a_style(make_settings) -> None:
    from main import draw_request, parse_command_line

    request = draw_request(make_settings(), parse_command_line(["draw", "a fox", "--style", "pixel-art"]))
    assert request.params.style.name == "pixel-art"


async def test_a_styled_draw_is_the_wrapped_prompt_drawn(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a fox --seed 3 --style watercolor", user_id=41)
    [styled] = await bot.wait_for("sendPhoto", chat_id=41)
    caption = styled.data["caption"]
    assert "<i>a fox</i>" in caption and "Style: watercolor" in caption  # the description as typed
    style = load_styles().styles["watercolor"]
    await bot.send_text(f"/draw {style.wrap('a fox')} --neg {style.negative} --seed 3", user_id=41)
    await bot.send_text("/draw a fox --seed 3", user_id=41)
    _, wrapped, plain = await bot.wait_for("sendPhoto", chat_id=41, count=3)
    assert np.abs(pixels(styled.files["photo"]) - pixels(wrapped.files["photo"])).max() <= 1
    assert np.abs(pixels(styled.files["photo"]) - pixels(plain.files["photo"])).max() > 10
    await bot.send_text("/draw a fox --style nope", user_id=42)
    [refusal] = await bot.wait_for("sendMessage", chat_id=42)
    assert "There is no style <code>nope</code>" in refusal.data["text"]
    assert "watercolor" in refusal.data["text"] and "kandinsky" in refusal.data["text"]


async def test_styles_lists_them_in_the_users_language(bot: FakeTelegram) -> None:
    await bot.send_text("/styles", user_id=43, lang="ru")
    [listed] = await bot.wait_for("sendMessage", chat_id=43)
    assert "<code>watercolor</code> — нежная акварель" in listed.data["text"] and "Стили" in listed.data["text"]
    await bot.send_text("/help", user_id=43)
    [_, helped] = await bot.wait_for("sendMessage", chat_id=43, count=2)
    assert (
        "/settings" in helped.data["text"]
        and "/styles" in helped.data["text"]
        and "--style NAME" in helped.data["text"]
    )


async def test_a_style_from_styles_file_is_used(telegram: FakeTelegram, make_settings, tmp_path: Path) -> None:
    styles_file = tmp_path / "styles.toml"
    styles_file.write_text(NEON)
    port = free_port()
    settings = make_settings(telegram.url, STYLES_FILE=str(styles_file), HTTP_PORT=str(port))
    async with running_bot(settings), aiohttp.ClientSession() as http:
        await telegram.send_text("/styles", user_id=44)
        [listed] = await telegram.wait_for("sendMessage", chat_id=44)
        assert "<code>neon</code> — a glowing neon sign" in listed.data["text"]
        assert "<code>photo</code> — a faded old photograph" in listed.data["text"]  # replaced
        await telegram.send_text("/draw a fox --style neon --seed 5", user_id=44)
        await telegram.send_text("/draw neon sign of a fox, glowing tubes --neg daylight --seed 5", user_id=44)
        neon, wrapped = await telegram.wait_for("sendPhoto", chat_id=44, count=2)
        assert "Style: neon" in neon.data["caption"]
        assert np.abs(pixels(neon.files["photo"]) - pixels(wrapped.files["photo"])).max() <= 1
        # The HTTP API takes a style too.
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(http, base)
        body = {"prompt": "a fox", "style": "neon", "seed": 5}
        async with http.post(f"{base}/generate", json=body) as response:
            assert response.status == 200
            assert np.abs(pixels(await response.read()) - pixels(neon.files["photo"])).max() <= 1
        async with http.post(f"{base}/generate", json={"prompt": "a fox", "style": "nope"}) as response:
            assert response.status == 400 and "neon" in (await response.json())["error"]


BAD_FILES = [
    ("bad.toml", '[neon]\nprompt = "neon {prompt}"\nnegative = \n', "bad.toml line 3, column 12: "),
    ("bad.json", '{\n  "neon": {"prompt": "neon {prompt}",}\n}', "bad.json line 2, column 38: Expecting property name"),
    ("noslot.toml", '[fine]\nprompt = "a {prompt}"\n\n[neon]\nprompt = "neon sign"\n', "noslot.toml line 4: "),
    ("name.json", '{"neon": {"prompt": "a {prompt}"},\n "Big Name": {"prompt": "b {prompt}"}}', "name.json line 2: "),
    ("typo.toml", '[neon]\nprompt = "a {prompt}"\nnegativ = "x"\n', "typo.toml line 1: style 'neon' has an unknown"),
    ("styles.yaml", "neon: {}", "styles.yaml: the name must end in .toml or .json"),
    ("missing.toml", None, "missing.toml can't be read: No such file"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_a_bad_styles_file_is_refused_naming_its_line(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"STYLES_FILE": str(path)}, require_token=False)
    assert str(refused.value).startswith(f"STYLES_FILE {path}") and message in str(refused.value), refused.value


def test_a_bad_styles_file_stops_the_bot_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "styles.toml"
    bad.write_text('[neon]\nprompt = "neon sign of {prompt}"\n\n[oops\n')
    result = main_py([], tmp_path, BOT_TOKEN=TOKEN, DATA_DIR=str(tmp_path / "data"), STYLES_FILE=str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"Configuration error: STYLES_FILE {bad} line 4") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr


def test_a_json_styles_file_works(tmp_path: Path) -> None:
    path = tmp_path / "styles.json"
    path.write_text(json.dumps({"neon": {"prompt": "neon {prompt}", "description": {"ru": "неон"}}}))
    book = load_styles(path)
    assert book.styles["neon"].wrap("a fox") == "neon a fox" and book.description("neon", "en") == "неон"
    assert "watercolor" in book.styles  # the built-in ones stay


def test_a_journal_row_keeps_its_style_and_older_rows_have_none() -> None:
    from dataclasses import asdict

    from bot.journal import decode_params, encode_params
    from generation.params import GenerationParams, Style

    params = GenerationParams("a fox", 64, 64, 4, 4.0, 1.0, 7, style=Style("neon", "neon {prompt}", "day"))
    again = decode_params(encode_params(params), 1)
    assert again == params and again.drawn_prompt == "neon a fox" and again.drawn_negative == "day"
    older = {k: v for k, v in asdict(params).items() if k != "style"}
    assert decode_params(json.dumps(older), 1).style is None
