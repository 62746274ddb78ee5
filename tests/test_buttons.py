"""The buttons under every picture, end to end: the real bot, tiny real models, the
stand-in Bot API (which serves the bot's own pictures back, and refuses captions over
1024 characters as Telegram does)."""

from __future__ import annotations

import asyncio
import html
import re

from conftest import png_image, running_bot
from fake_telegram import Call, FakeTelegram

from bot.delivery import caption, visible_length
from bot.draw_args import parse_draw_args
from bot.picture_details import details_text
from generation import GenerationParams, GenerationResult
from generation.composition import request_limits


def buttons(call: Call) -> dict[str, str]:
    """A picture's buttons: action -> callback data."""
    rows = call.data["reply_markup"]["inline_keyboard"]
    return {b["callback_data"].split(":")[1]: b["callback_data"] for row in rows for b in row}


def seed_of(call: Call) -> int:
    return int(re.search(r"seed (\d+)", call.data["caption"]).group(1))


def command_in(details: Call) -> str:
    """The /draw command a Details message shows, as the user would copy it."""
    return html.unescape(re.search(r"<code>(.*?)</code>", details.data["text"], re.S).group(1))


async def answered(telegram: FakeTelegram, query_id: str) -> Call:
    [answer] = await telegram.wait_for("answerCallbackQuery", callback_query_id=query_id)
    return answer


async def test_every_button_works(bot: FakeTelegram, make_settings) -> None:
    draw = "a red <b>fox</b> & hen --neg blurry, text --seed 7"
    await bot.send_text(f"/draw {draw}", user_id=5)
    [photo] = await bot.wait_for("sendPhoto", chat_id=5)
    data = buttons(photo)
    assert set(data) == {"again", "vary", "up", "info"}
    assert all(d.startswith("pic.v1:") and len(d.encode()) <= 64 for d in data.values())
    assert "&lt;b&gt;fox&lt;/b&gt; &amp; hen" in photo.data["caption"]  # escaped, not bold
    picture_id = photo.result["message_id"]
    sent_file = photo.result["photo"][-1]["file_id"]

    # Again: the same request, another seed; the press is answered at once, then the
    # usual status message, then the picture, in reply to the picture pressed.
    query = await bot.press_button(photo, data["again"], user_id=5)
    await answered(bot, query)
    statuses = await bot.wait_for("sendMessage", chat_id=5, text_contains="In line", count=2)
    status = statuses[1]
    assert status.reply_to == picture_id
    assert status.data["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("cancel.v2:")
    photos = await bot.wait_for("sendPhoto", chat_id=5, count=2)
    again = photos[1]
    assert seed_of(again) != 7 and "&lt;b&gt;fox&lt;/b&gt; &amp; hen" in again.data["caption"]
    assert again.reply_to == picture_id
    assert png_image(again.files["photo"]).size == (64, 64)

    # Variations: the bot's own picture is downloaded and drawn from.
    query = await bot.press_button(photo, data["vary"], user_id=5)
    await answered(bot, query)
    photos = await bot.wait_for("sendPhoto", chat_id=5, count=3)
    assert bot.find("getFile", file_id=sent_file)
    assert photos[2].reply_to == picture_id and png_image(photos[2].files["photo"]).size == (64, 64)
    assert "again" not in buttons(photos[2])  # drawn from a picture that is not kept

    # Upscale 2x: downloaded, enlarged, refined; a PNG document at twice the size.
    query = await bot.press_button(photo, data["up"], user_id=5)
    await answered(bot, query)
    [document] = await bot.wait_for("sendDocument", chat_id=5)
    assert png_image(document.files["document"]).size == (128, 128)
    assert document.reply_to == picture_id
    assert len(bot.find("getFile", file_id=sent_file)) == 2

    # Details: the full request as a /draw command that reads back to the same params.
    query = await bot.press_button(photo, data["info"], user_id=5)
    await answered(bot, query)
    [details] = await bot.wait_for("sendMessage", chat_id=5, text_contains="Details")
    assert "&lt;b&gt;fox&lt;/b&gt;" in details.data["text"] and "<b>fox" not in details.data["text"]
    limits = request_limits(make_settings())
    command = command_in(details)
    assert parse_draw_args(command.removeprefix("/draw"), limits).params == parse_draw_args(draw, limits).params


async def test_upscale_needs_the_picture_itself(bot: FakeTelegram) -> None:
    """The upscale draws from the picture Telegram serves back: without it, nothing is drawn."""
    await bot.send_text("/draw a boat --file", user_id=6)
    [document] = await bot.wait_for("sendDocument", chat_id=6)
    assert set(buttons(document)) == {"again", "vary", "up", "info"}  # documents carry them too
    del bot.files[document.result["document"]["file_id"]]
    await bot.press_button(document, buttons(document)["up"], user_id=6)
    await bot.wait_for("sendMessage", chat_id=6, text_contains="couldn't get this picture")
    await asyncio.sleep(0.5)
    assert len(bot.find("sendDocument", chat_id=6)) == 1


async def test_buttons_work_after_a_restart(telegram: FakeTelegram, make_settings) -> None:
    settings = make_settings(telegram.url)
    async with running_bot(settings):
        await telegram.send_text("/draw a lighthouse --seed 3", user_id=7)
        [photo] = await telegram.wait_for("sendPhoto", chat_id=7)
    async with running_bot(settings):  # a new bot on the same DATA_DIR
        data = buttons(photo)
        await telegram.press_button(photo, data["again"], user_id=7)
        await telegram.press_button(photo, data["info"], user_id=7)
        photos = await telegram.wait_for("sendPhoto", chat_id=7, count=2)
        assert "a lighthouse" in photos[1].data["caption"] and seed_of(photos[1]) != 3
        [details] = await telegram.wait_for("sendMessage", chat_id=7, text_contains="Details")
        assert "--seed 3" in command_in(details)
        await telegram.press_button(photo, data["up"], user_id=7)
        [document] = await telegram.wait_for("sendDocument", chat_id=7)
        assert png_image(document.files["document"]).size == (128, 128)


async def test_in_groups_only_the_asker_and_admins_may_press(bot: FakeTelegram) -> None:
    group, asker, stranger, admin = -100, 8, 9, 10
    bot.chat_admins[group] = {admin}
    await bot.send_text("/draw a tree --seed 1", user_id=asker, chat_id=group)
    [photo] = await bot.wait_for("sendPhoto", chat_id=group)
    data = buttons(photo)
    for action in ("again", "vary", "up", "info"):
        query = await bot.press_button(photo, data[action], user_id=stranger)
        refusal = await answered(bot, query)
        assert "Only the person who asked" in refusal.data["text"] and refusal.data["show_alert"] in (True, "true")
    await asyncio.sleep(0.5)
    assert len(bot.find("sendPhoto", chat_id=group)) == 1
    assert not bot.find("sendDocument", chat_id=group) and not bot.find("getFile")
    assert not bot.find("sendMessage", chat_id=group, text_contains="Details")

    query = await bot.press_button(photo, data["again"], user_id=admin)
    assert "Only the person" not in (await answered(bot, query)).data.get("text", "")
    photos = await bot.wait_for("sendPhoto", chat_id=group, count=2)
    assert "a tree" in photos[1].data["caption"]


async def test_presses_count_against_the_rate_limit(telegram: FakeTelegram, make_settings) -> None:
    async with running_bot(make_settings(telegram.url, RATE_LIMIT_PER_MIN="2")):
        await telegram.send_text("/draw a cloud", user_id=11)
        [photo] = await telegram.wait_for("sendPhoto", chat_id=11)
        data = buttons(photo)
        await telegram.press_button(photo, data["again"], user_id=11)
        await telegram.wait_for("sendPhoto", chat_id=11, count=2)
        query = await telegram.press_button(photo, data["again"], user_id=11)
        refusal = await answered(telegram, query)
        assert "Requests accepted from you in the last minute: 2" in refusal.data["text"]
        # Details draws nothing, so it is never refused; a /draw is refused like the press.
        query = await telegram.press_button(photo, data["info"], user_id=11)
        await telegram.wait_for("sendMessage", chat_id=11, text_contains="Details")
        await telegram.send_text("/draw another cloud", user_id=11)
        await telegram.wait_for("sendMessage", chat_id=11, text_contains="Requests accepted from you")
        await asyncio.sleep(0.5)
        assert len(telegram.find("sendPhoto", chat_id=11)) == 2


async def test_garbled_old_and_forged_buttons_are_answered(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a hill", user_id=12)
    [photo] = await bot.wait_for("sendPhoto", chat_id=12)
    job_id = buttons(photo)["again"].split(":")[2]
    for data in ("pic.v1:explode:1", "pic.v1:again:x", "pic.v0:again:1", "pic.v1:again", "garbage"):
        query = await bot.press_button(photo, data, user_id=12)
        assert "no longer works" in (await answered(bot, query)).data["text"]
    query = await bot.press_button(photo, "pic.v1:again:99999", user_id=12)  # its job is gone
    assert "no longer kept" in (await answered(bot, query)).data["text"]
    # Another chat's request, named under this chat's picture: gone, for this chat.
    await bot.send_text("/draw a secret", user_id=13)
    [other] = await bot.wait_for("sendPhoto", chat_id=13)
    query = await bot.press_button(photo, buttons(other)["info"], user_id=12)
    assert "no longer kept" in (await answered(bot, query)).data["text"]
    await asyncio.sleep(0.3)
    assert not bot.find("sendMessage", chat_id=12, text_contains="secret")
    assert len(bot.find("sendPhoto", chat_id=12)) == 1
    assert job_id.isdigit()


async def test_a_long_prompt_is_shortened_in_the_caption_and_whole_in_details(bot: FakeTelegram) -> None:
    prompt = ("a <very> long & winding road " * 40)[:1000].strip()
    await bot.send_text(f"/draw {prompt} --seed 5", user_id=14)
    [photo] = await bot.wait_for("sendPhoto", chat_id=14)  # the stand-in refuses a caption over 1024
    shown = photo.data["caption"]
    assert visible_length(shown) <= 1024 and "…" in shown and "Details has all of it" in shown
    assert "&lt;very&gt; long &amp; winding" in shown
    await bot.press_button(photo, buttons(photo)["info"], user_id=14)
    [details] = await bot.wait_for("sendMessage", chat_id=14, text_contains="Details")
    assert command_in(details).startswith(f"/draw {prompt} --size")


def test_caption_fits_whatever_the_prompt_and_the_lines_beside_it() -> None:
    result = GenerationResult(b"x", 768, 768, seed=5, seconds=1.0, batch_size=1, prompt_truncated=True)
    for prompt in ("<" * 4096, "x" * 4096, "a fox"):
        params = GenerationParams(prompt, 768, 768, 50, 4.0, 1.0, seed=5)
        for lang in ("en", "ru"):
            text = caption(params, result, lang)
            assert visible_length(text) <= 1024
            assert "<<" not in text  # escaped
    assert "Details" not in caption(GenerationParams("a fox", 768, 768, 50, 4.0, 1.0, seed=5), result, "en")


def test_details_read_back_and_stay_within_a_message() -> None:
    limits = request_limits_for_tests()
    for draw in ('"quoted" words --seed 1', "«a» and «b» --neg 'x' --seed 2 --guidance 4.5", "a cat --size 128x64"):
        params = parse_draw_args(draw, limits).params
        shown = details_text(params, False, "en")
        command = html.unescape(re.search(r"<code>(.*?)</code>", shown, re.S).group(1))
        assert parse_draw_args(command.removeprefix("/draw"), limits).params == params
    huge = GenerationParams("<" * 4096, 64, 64, 4, 4.0, 1.0, seed=1, negative_prompt=">" * 4096)
    shown = details_text(huge, True, "ru")
    assert visible_length(shown) <= 4096 and "обрезана" in shown


def request_limits_for_tests():
    from generation import DrawLimits

    return DrawLimits(768, 768, 50, 4.0, 1.0, max_side=1024, max_steps=100, max_prompt_chars=4096)


async def test_a_press_delivered_twice_draws_once(bot: FakeTelegram) -> None:
    """Telegram may send a press again (e.g. after a restart): its journal row, keyed by
    the press, is written once, like a /draw sent twice."""
    await bot.send_text("/draw a kite", user_id=15)
    [photo] = await bot.wait_for("sendPhoto", chat_id=15)
    press = {
        "id": "the-same-press",
        "from": {"id": 15, "is_bot": False, "first_name": "u", "language_code": "en"},
        "chat_instance": "ci",
        "message": photo.result,
        "data": buttons(photo)["again"],
    }
    for _ in range(2):
        await bot._push({"callback_query": dict(press)})
    await bot.wait_for("sendPhoto", chat_id=15, count=2)
    await asyncio.sleep(1.0)
    assert len(bot.find("sendPhoto", chat_id=15)) == 2
