"""/draw end to end: the real bot, tiny real models, the stand-in Bot API server."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import numpy as np
import pytest
from conftest import ADMIN_ID, png_image, running_bot
from fake_telegram import Call, FakeTelegram


async def test_draw_sends_png_of_asked_size(bot: FakeTelegram) -> None:
    request_id = await bot.send_text("/draw a red fox in the snow --size 128x64 --seed 7", user_id=5)
    [photo] = await bot.wait_for("sendPhoto", chat_id=5)
    image = png_image(photo.files["photo"])
    assert image.size == (128, 64)
    assert photo.reply_to == request_id
    caption = photo.data["caption"]
    assert "a red fox in the snow" in caption
    assert "seed 7" in caption and "128×64" in caption and "4 steps" in caption
    assert re.search(r"\d+\.\d s", caption)
    # The status message was removed once the picture arrived, and the chat showed the action.
    await bot.wait_for("deleteMessage", chat_id=5)
    assert bot.find("sendChatAction", chat_id=5, action="upload_photo")


async def test_random_seed_is_shown_and_reproduces_the_picture(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a lighthouse", user_id=6)
    [first] = await bot.wait_for("sendPhoto", chat_id=6)
    seed = re.search(r"seed (\d+)", first.data["caption"]).group(1)
    await bot.send_text(f"/draw a lighthouse --seed {seed}", user_id=6)
    photos = await bot.wait_for("sendPhoto", chat_id=6, count=2)
    again = photos[1]
    assert f"seed {seed}" in again.data["caption"]
    a, b = (np.asarray(png_image(p.files["photo"])).astype(int) for p in (first, again))
    assert np.abs(a - b).max() <= 1


async def test_file_option_sends_a_document(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a cat --file --size 64x128", user_id=7)
    [document] = await bot.wait_for("sendDocument", chat_id=7)
    assert png_image(document.files["document"]).size == (64, 128)
    assert not bot.find("sendPhoto", chat_id=7)


async def test_plain_text_in_private_chat_draws(bot: FakeTelegram) -> None:
    await bot.send_text("a quiet forest", user_id=8)
    [photo] = await bot.wait_for("sendPhoto", chat_id=8)
    assert "a quiet forest" in photo.data["caption"]


async def test_group_command_with_bot_name(bot: FakeTelegram) -> None:
    await bot.send_text("/draw@someone_else_bot not for us", user_id=9, chat_id=-100)
    await bot.send_text("/draw@kandinsky_test_bot a boat", user_id=9, chat_id=-100)
    [photo] = await bot.wait_for("sendPhoto", chat_id=-100)
    assert "a boat" in photo.data["caption"]
    await asyncio.sleep(0.5)
    assert len(bot.find("sendPhoto", chat_id=-100)) == 1
    # Plain chatter in a group is not a prompt.
    await bot.send_text("hello everyone", user_id=9, chat_id=-100)
    await asyncio.sleep(0.5)
    assert not bot.find("sendMessage", chat_id=-100, text_contains="description")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/draw", "Add a description"),
        ("/draw   ", "Add a description"),
        ("/draw --steps 5", "Add a description"),
        ("/draw a fox --colour red", "Unknown option <code>--colour</code>"),
        ("/draw a fox --steps", "needs a value"),
        ("/draw a fox --steps many", "whole number from 1 to 100"),
        ("/draw a fox --steps 1000", "whole number from 1 to 100"),
        ("/draw a fox --seed -1", "whole number from 0 to 4294967295"),
        ("/draw a fox --guidance lots", "number from 0 to 20"),
        ("/draw a fox --size 9000x64", "from 64 to 512 pixels"),
        ("/draw a fox --size big", "Write it as WxH"),
        ("/draw a fox --ar 20:1", "aspect ratio"),
        ("/draw a <b>fox</b> --size 64x64 --bad<i>", "Unknown option <code>--bad&lt;i&gt;</code>"),
    ],
)
async def test_bad_input_gets_a_clear_answer(bot: FakeTelegram, command: str, expected: str) -> None:
    request_id = await bot.send_text(command, user_id=11)
    [answer] = await bot.wait_for("sendMessage", chat_id=11)
    assert expected in answer.data["text"]
    assert answer.reply_to == request_id
    assert not bot.find("sendPhoto") and not bot.find("sendDocument")


async def test_russian_user_gets_russian(bot: FakeTelegram) -> None:
    await bot.send_text("/draw лиса --steps много", user_id=12, lang="ru")
    [error] = await bot.wait_for("sendMessage", chat_id=12)
    assert "целое число от 1 до 100" in error.data["text"]
    await bot.send_text("/draw " + "л" * 1001, user_id=12, lang="ru")
    [too_long] = await bot.wait_for("sendMessage", chat_id=12, text_contains="В описании")
    assert "В описании 1001 символ," in too_long.data["text"]  # counts reach the catalogue as numbers
    await bot.send_text("/draw a fox", user_id=12, lang="ru")
    [photo] = await bot.wait_for("sendPhoto", chat_id=12)
    assert "· 4 шага ·" in photo.data["caption"]  # DEFAULT_STEPS=4: "4 шага", never "4 шагов"


async def test_long_prompt_is_drawn_and_said_to_be_cut(bot: FakeTelegram) -> None:
    await bot.send_text("/draw " + "a very long description " * 10, user_id=13)
    [photo] = await bot.wait_for("sendPhoto", chat_id=13)
    assert "the end was cut" in photo.data["caption"]


async def test_help_and_start(bot: FakeTelegram) -> None:
    await bot.send_text("/start", user_id=14)
    [start] = await bot.wait_for("sendMessage", chat_id=14)
    assert "/draw a red fox in the snow" in start.data["text"]
    assert "English descriptions best" in start.data["text"]
    assert "from 64 to 512" in start.data["text"]  # the configured limit
    await bot.send_text("/help", user_id=15, lang="ru")
    [help_ru] = await bot.wait_for("sendMessage", chat_id=15)
    assert "Kandinsky 2.2" in help_ru.data["text"] and "на английском" in help_ru.data["text"]


async def test_status(bot: FakeTelegram) -> None:
    await bot.send_text("/draw warm up", user_id=16)
    await bot.wait_for("sendPhoto", chat_id=16)
    await bot.send_text("/status", user_id=16)
    [status] = await bot.wait_for("sendMessage", chat_id=16, text_contains="Device")
    text = status.data["text"]
    assert "✅ Healthy" in text and "Device: cpu" in text and "Models: loaded" in text
    assert "Waiting: 0" in text


async def test_reload_by_admin_and_by_others(bot: FakeTelegram) -> None:
    await bot.send_text("/reload", user_id=17)
    [refusal] = await bot.wait_for("sendMessage", chat_id=17)
    assert "Only the bot's admins" in refusal.data["text"]
    await bot.send_text("/reload", user_id=ADMIN_ID)
    await bot.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Reloading")
    await bot.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Models reloaded")
    await bot.send_text("/draw after reload", user_id=ADMIN_ID)
    await bot.wait_for("sendPhoto", chat_id=ADMIN_ID)


async def test_failed_reload_keeps_bot_up(telegram: FakeTelegram, make_settings, tmp_path) -> None:
    missing = tmp_path / "no-such-model"
    async with running_bot(make_settings(telegram.url, PRIOR_MODEL=str(missing))):
        await telegram.send_text("/draw a fox", user_id=18)
        # Told at once if loading already failed, or in the status message if it fails later.
        await telegram.wait_for(None, chat_id=18, text_contains="aren't loaded")
        await telegram.send_text("/reload", user_id=ADMIN_ID)
        [failed] = await telegram.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Reloading failed")
        assert "no-such-model" in failed.data["text"]
        await telegram.send_text("/status", user_id=ADMIN_ID)
        [status] = await telegram.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Device")
        assert "Not ready" in status.data["text"] and "not loaded" in status.data["text"]
        await telegram.send_text("/draw a fox", user_id=18)
        await telegram.wait_for("sendMessage", chat_id=18, text_contains="aren't loaded")


async def test_event_loop_answers_while_drawing(bot: FakeTelegram) -> None:
    await bot.send_text("/draw a slow big picture --size 256x256 --steps 80", user_id=19)
    await bot.wait_for("editMessageText", chat_id=19, text_contains="step")  # drawing now
    for command, marker in (("/status", "Device"), ("/start", "Kandinsky")):
        sent = time.monotonic()
        await bot.send_text(command, user_id=20)
        [answer] = await bot.wait_for("sendMessage", chat_id=20, text_contains=marker, timeout=5)
        assert answer.at - sent < 1.0, f"{command} took {answer.at - sent:.2f}s while drawing"
    assert not bot.find("sendPhoto", chat_id=19), "the picture should still be in progress"
    await bot.wait_for("sendPhoto", chat_id=19, timeout=120)


async def test_flood_control_on_send_does_not_lose_the_picture(bot: FakeTelegram) -> None:
    failures = {"sendPhoto": 1}

    def plan(method: str, data: dict):
        if failures.get(method, 0) > 0:
            failures[method] -= 1
            return 429, {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests",
                "parameters": {"retry_after": 1},
            }
        return None

    bot.fault_plan = plan
    await bot.send_text("/draw a fox", user_id=21)
    [photo] = await bot.wait_for("sendPhoto", chat_id=21)
    assert png_image(photo.files["photo"]).size == (64, 64)


async def test_sixteen_users_at_once(bot: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.draw_service")
    # A fixed seed drawn alone first, to compare with the same request inside a batch.
    await bot.send_text("/draw the same fox --seed 77", user_id=300)
    [alone] = await bot.wait_for("sendPhoto", chat_id=300)
    # Keep the worker busy so the 16 requests pile up and get batched.
    await bot.send_text("/draw a bigger picture --size 256x256 --steps 30", user_id=299)
    await bot.wait_for("editMessageText", chat_id=299, text_contains="step")
    users = range(301, 317)
    await asyncio.gather(
        *(bot.send_text("/draw the same fox --seed 77" if u == 301 else f"/draw fox {u}", user_id=u) for u in users)
    )
    for user in users:
        [photo] = await bot.wait_for("sendPhoto", chat_id=user, timeout=120)
        assert str(user) in photo.data["caption"] or user == 301
    # Everyone heard where they stand while waiting.
    queued = [c for c in bot.find("sendMessage") if (c.chat_id or 0) in users and "In line" in c.data["text"]]
    assert {c.chat_id for c in queued} == set(users)
    assert max(int(re.search(r"In line: (\d+)", c.data["text"]).group(1)) for c in queued) > 1
    batch_sizes = [int(m) for m in re.findall(r"batch=(\d+)", caplog.text)]
    assert max(batch_sizes) > 1, batch_sizes
    [in_batch] = bot.find("sendPhoto", chat_id=301)
    a, b = (np.asarray(png_image(p.files["photo"])).astype(int) for p in (alone, in_batch))
    assert np.abs(a - b).max() <= 2


async def test_cancel_button(bot: FakeTelegram) -> None:
    await bot.send_text("/draw keep the worker busy --size 256x256 --steps 30", user_id=30)
    await bot.wait_for("editMessageText", chat_id=30, text_contains="step")
    await bot.send_text("/draw to be cancelled", user_id=31)
    [status] = await bot.wait_for("sendMessage", chat_id=31, text_contains="In line")
    [button] = status.data["reply_markup"]["inline_keyboard"][0]
    assert button["text"] == "✖ Cancel"
    await bot.press_button(status, button["callback_data"], user_id=32)  # not the owner
    [refused] = await bot.wait_for("answerCallbackQuery", text="Only the person who asked can cancel this.")
    assert refused.data.get("show_alert") in (True, "true", "True")
    await bot.press_button(status, button["callback_data"], user_id=31)
    await bot.wait_for("answerCallbackQuery", text="Cancelled.")
    await bot.wait_for("editMessageText", chat_id=31, text="Cancelled.")
    await bot.wait_for("sendPhoto", chat_id=30, timeout=120)
    await asyncio.sleep(0.5)
    assert not bot.find("sendPhoto", chat_id=31)


async def test_waiting_limits_answer_busy(telegram: FakeTelegram, make_settings) -> None:
    async with running_bot(make_settings(telegram.url, MAX_PENDING_PER_USER="1", MAX_QUEUE="2")):
        await telegram.send_text("/draw keep the worker busy --size 256x256 --steps 30", user_id=40)
        await telegram.wait_for("editMessageText", chat_id=40, text_contains="step")
        await telegram.send_text("/draw first wait", user_id=41)
        await telegram.wait_for("sendMessage", chat_id=41, text_contains="In line")
        await telegram.send_text("/draw second wait", user_id=41)
        [busy] = await telegram.wait_for("sendMessage", chat_id=41, text_contains="as many requests waiting")
        assert "(1)" in busy.data["text"]
        await telegram.send_text("/draw another user", user_id=42)
        await telegram.wait_for("sendMessage", chat_id=42, text_contains="In line")
        await telegram.send_text("/draw one too many", user_id=43)
        await telegram.wait_for("sendMessage", chat_id=43, text_contains="very busy")
        for user in (40, 41, 42):  # everyone accepted is still served
            await telegram.wait_for("sendPhoto", chat_id=user, timeout=120)
        assert not telegram.find("sendPhoto", chat_id=43)


async def test_photo_refused_by_telegram_comes_as_document(bot: FakeTelegram) -> None:
    def plan(method: str, data: dict):
        if method == "sendPhoto":
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: PHOTO_INVALID_DIMENSIONS"}
        return None

    bot.fault_plan = plan
    await bot.send_text("/draw a fox", user_id=50)
    [document] = await bot.wait_for("sendDocument", chat_id=50)
    assert png_image(document.files["document"]).size == (64, 64)


async def test_unexpected_error_gets_an_apology(bot: FakeTelegram) -> None:
    failed = []

    def plan(method: str, data: dict):
        if method == "sendMessage" and "Device" in data.get("text", "") and not failed:
            failed.append(method)
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities"}
        return None

    bot.fault_plan = plan
    await bot.send_text("/status", user_id=51)
    await bot.wait_for("sendMessage", chat_id=51, text_contains="Sorry, something went wrong")
    await bot.send_text("/status", user_id=51)  # and the bot keeps serving
    await bot.wait_for("sendMessage", chat_id=51, text_contains="Device")


async def test_picture_arrives_even_if_the_status_message_fails(bot: FakeTelegram) -> None:
    def plan(method: str, data: dict):
        if method == "sendMessage" and "In line" in data.get("text", ""):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        return None

    bot.fault_plan = plan
    await bot.send_text("/draw a fox", user_id=52)
    await bot.wait_for("sendPhoto", chat_id=52)


async def test_blocked_user_is_not_retried_forever(bot: FakeTelegram, tmp_path) -> None:
    attempts = []

    def plan(method: str, data: dict):
        if method in ("sendPhoto", "sendDocument"):
            attempts.append(method)
            return 403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}
        return None

    bot.fault_plan = plan
    await bot.send_text("/draw a fox", user_id=53)
    await bot.wait_for("editMessageText", chat_id=53, text_contains="Sorry")
    assert attempts == ["sendPhoto"]
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "jobs.sqlite3") as db:
        [(state, error)] = db.execute("SELECT state, error FROM jobs").fetchall()
    assert state == "failed" and "blocked" in error


async def test_huge_bad_value_gets_a_short_answer(bot: FakeTelegram) -> None:
    """12.14: the error repeated a 5000-character value, Telegram refused the 4096+ character
    reply and the user got "something went wrong"."""
    await bot.send_text("/draw a fox --size " + "9" * 5000, user_id=60)
    [answer] = await bot.wait_for("sendMessage", chat_id=60)
    assert "Can't read the size" in answer.data["text"] and "…" in answer.data["text"]
    assert len(answer.data["text"]) < 500


async def test_every_button_press_gets_an_answer(bot: FakeTelegram) -> None:
    """12.21: malformed, stale or oversized button data gets a short notice, never a spinner."""
    message = Call("sendMessage", {"chat_id": 61, "text": "an old message"})
    for data in ("cancel:abc", "garbage", "cancel:" + "9" * 5000, "x" * 5000, "", None):
        query_id = await bot.press_button(message, data, user_id=61)
        [answer] = await bot.wait_for("answerCallbackQuery", callback_query_id=query_id)
        assert answer.data["text"] == "This button no longer works."
    assert not bot.find("sendMessage", chat_id=61, text_contains="Sorry")


async def test_load_error_details_are_for_admins_only(telegram: FakeTelegram, make_settings, tmp_path) -> None:
    """12.21: the load error names the server's model path; only admins see it in /status."""
    missing = tmp_path / "no-such-model"
    async with running_bot(make_settings(telegram.url, PRIOR_MODEL=str(missing))):
        await telegram.send_text("/draw a fox", user_id=62)  # wait until loading failed
        await telegram.wait_for(None, chat_id=62, text_contains="aren't loaded")
        await telegram.send_text("/status", user_id=62)
        [status] = await telegram.wait_for("sendMessage", chat_id=62, text_contains="Device")
        assert "failed to load" in status.data["text"] and "no-such-model" not in status.data["text"]
        await telegram.send_text("/status", user_id=ADMIN_ID)
        [status] = await telegram.wait_for("sendMessage", chat_id=ADMIN_ID, text_contains="Device")
        assert "no-such-model" in status.data["text"]
