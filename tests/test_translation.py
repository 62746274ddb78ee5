"""Russian prompts are translated to English before drawing (issue 11), off the event loop.

A tiny random-weight MarianMT (tests/tiny_marian.py) translates into nonsense: these tests
check the path (what is translated, that the drawn prompt is the model's output, caching,
batching, the fallback when the model cannot load), not the wording.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest
from conftest import png_image, running_bot
from fake_telegram import FakeTelegram
from test_http_api import free_port, wait_healthy

import main
from bot.delivery import shorten
from bot.draw_args import DrawArgsError, parse_draw_args
from bot.handlers.help import help_text
from bot.journal import Journal
from config import Settings, settings_from_env
from generation import DrawLimits, GenerationParams
from generation.params import MixPart
from generation.translation import TranslationState, Translator, has_cyrillic

RUSSIAN = "красивый пейзаж с горами"
LIMITS = DrawLimits(64, 64, 4, 4.0, 1.0, 512, 100)


def params(prompt: str, **fields) -> GenerationParams:
    return GenerationParams(
        prompt=prompt,
        width=64,
        height=64,
        num_inference_steps=2,
        guidance_scale=4.0,
        prior_guidance_scale=1.0,
        seed=1,
        **fields,
    )


_REFERENCE: dict[Path, Translator] = {}  # one per model for the whole session: loading takes a while


async def translated(model: Path, text: str) -> str:
    """What the model makes of ``text`` alone, through a translator of its own."""
    reference = _REFERENCE.setdefault(model, Translator(str(model), cache_size=0))
    [english] = await reference.translate([text])
    assert english != text and not has_cyrillic(english)  # the tiny model writes Latin pieces only
    return english


def translating(make_settings: Callable[..., Settings], url: str, model: Path, **extra: str) -> Settings:
    return make_settings(url, TRANSLATE="auto", TRANSLATION_MODEL=str(model), **extra)


# -- the translator --------------------------------------------------------------------


def test_cyrillic_is_what_needs_translating() -> None:
    assert has_cyrillic(RUSSIAN) and has_cyrillic("a fox, лиса") and has_cyrillic("Ёж")
    assert not has_cyrillic("a red fox, 4k") and not has_cyrillic("") and not has_cyrillic(None)


async def test_cyrillic_texts_are_translated_and_latin_left_alone(tiny_marian: Path) -> None:
    translator = Translator(str(tiny_marian))
    mix = (MixPart(0.5, text="рыжая лиса"), MixPart(0.3, image=0), MixPart(0.2, text="oil painting"))
    typed = params(RUSSIAN, negative_prompt="blurry, text", mix=mix)
    drawn = await translator.translate_params(typed)
    assert drawn.prompt == await translated(tiny_marian, RUSSIAN)  # the model's output is drawn
    assert drawn.typed_prompt == RUSSIAN  # and what was typed is kept
    assert drawn.negative_prompt == "blurry, text"  # Latin: untouched
    assert drawn.mix[0].text == await translated(tiny_marian, "рыжая лиса")
    assert drawn.mix[1:] == mix[1:]
    assert (drawn.seed, drawn.width, drawn.num_inference_steps) == (1, 64, 2)
    assert translator.state is TranslationState.ON
    # A Russian negative prompt alone: translated, the prompt kept (typed_prompt stays None).
    negative = await translator.translate_params(params("a fox", negative_prompt="размыто"))
    assert negative.prompt == "a fox" and negative.typed_prompt is None
    assert negative.negative_prompt == await translated(tiny_marian, "размыто")
    translator.close()


async def test_latin_raw_and_off_are_drawn_as_typed(tiny_marian: Path) -> None:
    translator = Translator(str(tiny_marian))
    latin = params("a red fox in the snow", negative_prompt="blurry")
    assert await translator.translate_params(latin) is latin
    russian = params(RUSSIAN)
    assert await translator.translate_params(russian, translate=False) is russian  # --raw
    assert translator.batches == 0 and translator.state is TranslationState.LOADING  # nothing asked of it
    off = Translator(str(tiny_marian), enabled=False)  # TRANSLATE=off
    assert await off.translate_params(russian) is russian and off.state is TranslationState.OFF
    # Translated once (a journaled request, or a caller that translated before): never again.
    drawn = await translator.translate_params(russian)
    assert await translator.translate_params(drawn) is drawn
    translator.close()


async def test_repeated_texts_come_from_the_cache(tiny_marian: Path) -> None:
    translator = Translator(str(tiny_marian), cache_size=2)
    first = await translator.translate([RUSSIAN])
    assert await translator.translate([RUSSIAN, RUSSIAN]) == first * 2
    assert (translator.batches, translator.texts_translated) == (1, 1)  # the model was asked once
    await translator.translate(["кот", "лиса"])  # the cache holds 2: RUSSIAN is the oldest, forgotten
    assert translator.texts_translated == 3
    await translator.translate([RUSSIAN])
    assert translator.texts_translated == 4
    translator.close()


async def test_texts_waiting_together_are_one_batch(tiny_marian: Path) -> None:
    translator = Translator(str(tiny_marian))
    texts = ["рыжая лиса", "кот в космосе", "старый город у моря ночью"]
    results = await asyncio.gather(*(translator.translate([text]) for text in texts))
    assert (translator.batches, translator.texts_translated) == (1, 3)
    # Each caller got its own text's translation, as if translated alone.
    assert [r for [r] in results] == [await translated(tiny_marian, text) for text in texts]
    translator.close()


async def test_a_model_that_cannot_load_leaves_texts_as_typed_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    translator = Translator(str(tmp_path / "no-such-model"))
    translator.start()
    with caplog.at_level(logging.WARNING, logger="generation.translation"):
        assert await translator.translate([RUSSIAN]) == [RUSSIAN]
        typed = params("кот")
        assert await translator.translate_params(typed) == typed
    assert translator.state is TranslationState.FAILED and "no-such-model" in (translator.error or "")
    warnings = [r for r in caplog.records if r.name == "generation.translation"]
    assert len(warnings) == 1 and "translation is off" in warnings[0].getMessage()
    translator.close()


def slow_copy(tiny_marian: Path, directory: Path, pieces: int) -> Path:
    """The tiny model, writing ``pieces`` pieces a translation: slow on purpose."""
    shutil.copytree(tiny_marian, directory, dirs_exist_ok=True)
    config = json.loads((directory / "generation_config.json").read_text())
    (directory / "generation_config.json").write_text(json.dumps({**config, "max_length": pieces}))
    return directory


async def test_the_event_loop_runs_while_a_slow_translation_does(
    tiny_marian: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    slow = slow_copy(tiny_marian, tmp_path_factory.mktemp("slow-marian"), 120)  # 10x the pieces
    translator = Translator(str(slow))
    translator.start()
    await translator.translate(["кот"])  # loaded: what follows is translation alone
    beats: list[float] = []

    async def heartbeat() -> None:
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(heartbeat())
    started = time.monotonic()
    await translator.translate(["старый город у моря ночью " * 10])
    took = time.monotonic() - started
    ticker.cancel()
    during = [t for t in beats if started <= t <= started + took]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert took > 0.1, "the slow model must be slow for this test to mean anything"
    # On the event loop, the loop would stand still for the whole translation.
    assert len(during) >= 5 and max(gaps) < took / 2, f"loop stalled: {len(during)} beats in {took:.2f}s"
    translator.close()


# -- /draw and --raw ------------------------------------------------------------------


def test_raw_option_is_a_flag() -> None:
    request = parse_draw_args(f"{RUSSIAN} --raw --steps 3", LIMITS)
    assert request.raw and request.params.prompt == RUSSIAN and request.params.num_inference_steps == 3
    assert parse_draw_args("кот --steps 3 --raw в шляпе", LIMITS).params.prompt == "кот в шляпе"
    assert not parse_draw_args(RUSSIAN, LIMITS).raw
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args("кот --raw=yes", LIMITS)
    assert caught.value.key == "option_takes_no_value"


async def test_russian_draw_is_drawn_in_english_and_raw_as_typed(
    telegram: FakeTelegram, make_settings, tiny_marian: Path
) -> None:
    settings = translating(make_settings, telegram.url, tiny_marian)
    english = await translated(tiny_marian, RUSSIAN)
    async with running_bot(settings):
        await telegram.send_text(f"/draw {RUSSIAN}", user_id=301)
        [photo] = await telegram.wait_for("sendPhoto", chat_id=301)
        caption = photo.data["caption"]
        assert f"<i>{html.escape(shorten(english))}</i>" in caption  # the English drawn
        assert f"Translated from: <i>{RUSSIAN}</i>" in caption  # and what was typed
        await telegram.send_text(f"/draw {RUSSIAN} --raw", user_id=302)
        [raw] = await telegram.wait_for("sendPhoto", chat_id=302)
        assert f"<i>{RUSSIAN}</i>" in raw.data["caption"] and "Translated" not in raw.data["caption"]
        await telegram.send_text("/draw a red fox", user_id=303)
        [latin] = await telegram.wait_for("sendPhoto", chat_id=303)
        assert "<i>a red fox</i>" in latin.data["caption"] and "Translated" not in latin.data["caption"]
        await telegram.send_text("/status", user_id=303)
        [status] = await telegram.wait_for("sendMessage", chat_id=303, text_contains="Device")
        assert "Translation ru→en: on" in status.data["text"]
    # The journal holds what was drawn, and what was typed.
    journal = Journal.in_dir(settings.data_dir)
    try:
        rows = journal._db.execute("SELECT chat_id, params FROM jobs ORDER BY id").fetchall()
    finally:
        journal.close()
    drawn = {chat: json.loads(raw_params) for chat, raw_params in rows}
    assert (drawn[301]["prompt"], drawn[301]["typed_prompt"]) == (english, RUSSIAN)
    assert (drawn[302]["prompt"], drawn[302]["typed_prompt"]) == (RUSSIAN, None)


async def test_a_restart_does_not_translate_a_journaled_request_again(
    telegram: FakeTelegram, make_settings, tiny_marian: Path
) -> None:
    settings = translating(make_settings, telegram.url, tiny_marian)
    journal = Journal.in_dir(settings.data_dir)
    common = {"user_id": 1, "lang": "en", "as_document": False}
    journal.add(chat_id=311, message_id=1, params=params(RUSSIAN), **common)  # drawn --raw before the restart
    journal.add(chat_id=312, message_id=1, params=params("a cat in space", typed_prompt="кот в космосе"), **common)
    journal.close()
    async with running_bot(settings):
        [raw] = await telegram.wait_for("sendPhoto", chat_id=311)
        [english] = await telegram.wait_for("sendPhoto", chat_id=312)
    assert f"<i>{RUSSIAN}</i>" in raw.data["caption"] and "Translated" not in raw.data["caption"]
    assert "<i>a cat in space</i>" in english.data["caption"]
    assert "Translated from: <i>кот в космосе</i>" in english.data["caption"]
    # The restart notice names the request as its user typed it.
    assert telegram.find("sendMessage", chat_id=312, text_contains="«кот в космосе»")


async def test_without_the_model_the_bot_draws_as_typed_and_says_translation_is_off(
    telegram: FakeTelegram, make_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = translating(make_settings, telegram.url, tmp_path / "no-such-model", HTTP_PORT=str(port))
    with caplog.at_level(logging.WARNING, logger="generation.translation"):
        async with running_bot(settings):
            for user in (321, 322):
                await telegram.send_text(f"/draw {RUSSIAN}", user_id=user)
                [photo] = await telegram.wait_for("sendPhoto", chat_id=user)
                assert f"<i>{RUSSIAN}</i>" in photo.data["caption"] and "Translated" not in photo.data["caption"]
            await telegram.send_text("/status", user_id=321)
            [status] = await telegram.wait_for("sendMessage", chat_id=321, text_contains="Device")
            assert "Translation ru→en: off (the model did not load)" in status.data["text"]
            assert "no-such-model" not in status.data["text"]  # a server path: for admins only
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    health = await response.json()
    assert health["translation"] == "off" and "no-such-model" in health["translation_error"]
    warnings = [r for r in caplog.records if r.name == "generation.translation"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_help_tells_of_raw_when_translating(make_settings) -> None:
    for lang, words in (("en", "exactly as typed"), ("ru", "ровно как написан")):
        on = help_text(lang, make_settings(TRANSLATE="auto"), ["cpu"])
        assert "<code>--raw</code>" in on and words in on and len(on) < 4096
        assert "--raw" not in help_text(lang, make_settings(TRANSLATE="off"), ["cpu"])


async def test_status_is_answered_while_a_slow_translation_runs(
    telegram: FakeTelegram, make_settings, tiny_marian: Path, tmp_path: Path
) -> None:
    slow = slow_copy(tiny_marian, tmp_path / "slow-marian", 500)
    async with running_bot(translating(make_settings, telegram.url, slow)):
        await telegram.send_text("/draw кот", user_id=331)  # the model is loaded: what follows is translating
        await telegram.wait_for("sendPhoto", chat_id=331, timeout=120)
        await telegram.send_text("/draw " + "старый город у моря ночью " * 20, user_id=332)
        await asyncio.sleep(0.3)  # taken, and being translated (for seconds)
        sent = time.monotonic()
        await telegram.send_text("/status", user_id=333)
        [status] = await telegram.wait_for("sendMessage", chat_id=333, text_contains="Device")
        # The draw is answered (its place in line) only once its prompt is translated.
        assert not telegram.find("sendMessage", chat_id=332), "the translation ended before /status: too fast to tell"
        assert status.at - sent < 1.0, f"/status took {status.at - sent:.2f}s while translating"
        await telegram.wait_for("sendPhoto", chat_id=332, timeout=120)


# -- the HTTP API and the command line ------------------------------------------------


async def test_http_generate_translates_and_says_what_it_drew(
    telegram: FakeTelegram, make_settings, tiny_marian: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    english = await translated(tiny_marian, RUSSIAN)
    async with running_bot(translating(make_settings, telegram.url, tiny_marian, HTTP_PORT=str(port))):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            body = {"prompt": RUSSIAN, "width": 64, "height": 64, "num_inference_steps": 2, "seed": 5}
            async with http.post(f"{base}/generate", json=body) as response:
                assert response.status == 200, await response.text()
                assert unquote(response.headers["X-Prompt-Used"]) == english
                png_image(await response.read())
            async with http.post(f"{base}/generate", json={**body, "translate": False}) as response:
                assert response.status == 200
                assert response.headers["X-Prompt-Used"].isascii()  # percent-encoded: a header is ASCII
                assert unquote(response.headers["X-Prompt-Used"]) == RUSSIAN
            async with http.post(f"{base}/generate", json={**body, "translate": "yes"}) as response:
                assert response.status == 400 and "translate" in (await response.json())["error"]
            async with http.get(f"{base}/health") as response:
                assert (await response.json())["translation"] == "on"


def test_cli_draws_the_translation_and_raw_as_typed(
    tiny_models: tuple[Path, Path], tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prior, decoder = tiny_models
    env = {
        "PRIOR_MODEL": str(prior),
        "DECODER_MODEL": str(decoder),
        "DEVICE": "cpu",
        "PRIOR_STEPS": "2",
        "TRANSLATION_MODEL": str(tiny_marian),
        "DATA_DIR": str(tmp_path / "data"),
    }
    settings = settings_from_env(env, require_token=False)
    english = asyncio.run(translated(tiny_marian, RUSSIAN))

    def draw(*options: str) -> str:
        args = main.parse_command_line(["draw", RUSSIAN, "--size", "64x64", "--steps", "2", *options])
        assert main.draw_once(settings, main.draw_request(settings, args), tmp_path / "out.png") == 0
        assert png_image((tmp_path / "out.png").read_bytes()).size == (64, 64)
        return capsys.readouterr().out

    assert f"drawing the translation: {english}" in draw()
    assert "drawing the translation" not in draw("--raw")  # drawn as typed


async def test_a_saved_raw_setting_turns_translation_off_for_that_user_only(
    telegram: FakeTelegram, make_settings, tiny_marian: Path
) -> None:
    """Issue 11: a user setting turns translation off for that user (/settings --raw)."""
    settings = translating(make_settings, telegram.url, tiny_marian)
    async with running_bot(settings):
        await telegram.send_text("/settings --raw", user_id=321)
        [saved] = await telegram.wait_for("sendMessage", chat_id=321)
        assert "--raw" in saved.data["text"] and "--raw " not in saved.data["text"]  # shown as the flag it is
        await telegram.send_text(f"/draw {RUSSIAN}", user_id=321)
        [mine] = await telegram.wait_for("sendPhoto", chat_id=321)
        await telegram.send_text(f"/draw {RUSSIAN}", user_id=322)  # no saved setting
        [theirs] = await telegram.wait_for("sendPhoto", chat_id=322)
    assert f"<i>{RUSSIAN}</i>" in mine.data["caption"] and "Translated" not in mine.data["caption"]
    assert f"Translated from: <i>{RUSSIAN}</i>" in theirs.data["caption"]
