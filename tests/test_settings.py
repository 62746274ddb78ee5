"""/settings end to end: defaults typed or set with the keyboard are used by the next /draw,
survive a restart, give way to what a /draw types, and belong to their owner alone."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from conftest import png_image, running_bot
from fake_telegram import Call, FakeTelegram

from bot.draw_args import request_from_options
from bot.user_settings import CHOICES_VERSION, UserChoices, UserSettings, decode_choices
from generation.composition import request_limits


def buttons(message: Call) -> dict[str, str]:
    """The inline keyboard of a message the bot sent or edited: callback data by label."""
    markup = message.data.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def button_data(message: Call, data_start: str) -> str:
    [data] = [d for d in buttons(message).values() if d.startswith(data_start)]
    return data


async def draw_result(telegram: FakeTelegram, command: str, user_id: int, chat_id: int | None = None) -> Call:
    """Send a /draw and return the picture that comes back (photo or document)."""
    chat = user_id if chat_id is None else chat_id
    before = len(telegram.find("sendPhoto", chat_id=chat)) + len(telegram.find("sendDocument", chat_id=chat))
    await telegram.send_text(command, user_id=user_id, chat_id=chat_id)
    for _ in range(600):
        sent = telegram.find("sendPhoto", chat_id=chat) + telegram.find("sendDocument", chat_id=chat)
        if len(sent) > before:
            return sorted(sent, key=lambda c: c.at)[-1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no picture for {command!r}; last calls: {[c.method for c in telegram.calls[-10:]]}")


def size_of(picture: Call) -> tuple[int, int]:
    return png_image(picture.files.get("photo") or picture.files["document"]).size


async def test_typed_settings_are_used_by_the_next_draw_and_survive_a_restart(
    telegram: FakeTelegram, make_settings
) -> None:
    settings = make_settings(telegram.url)
    wide = request_from_options("x", {"ar": "16:9"}, request_limits(settings)).params
    assert wide.width > wide.height
    async with running_bot(settings):
        await telegram.send_text(
            '/settings --ar 16:9 --steps 3 --neg "blurry, text" --style watercolor --file', user_id=21
        )
        [saved] = await telegram.wait_for("sendMessage", chat_id=21)
        assert "Saved" in saved.data["text"] and "16:9" in saved.data["text"] and "watercolor" in saved.data["text"]
        picture = await draw_result(telegram, "/draw a red fox", 21)
        assert picture.method == "sendDocument"  # --file saved
        assert size_of(picture) == (wide.width, wide.height)
        assert "3 steps" in picture.data["caption"] and "Style: watercolor" in picture.data["caption"]
    # A new bot on the same DATA_DIR: the defaults are still there.
    async with running_bot(settings):
        picture = await draw_result(telegram, "/draw a blue fox", 21)
        assert picture.method == "sendDocument" and size_of(picture) == (wide.width, wide.height)
        assert "3 steps" in picture.data["caption"] and "Style: watercolor" in picture.data["caption"]
        # Someone else has none of them.
        other = await draw_result(telegram, "/draw a blue fox", 22)
        assert other.method == "sendPhoto" and size_of(other) == (64, 64) and "Style" not in other.data["caption"]


async def test_keyboard_sets_defaults_in_place_and_reset_clears_them(bot: FakeTelegram) -> None:
    await bot.send_text("/settings", user_id=23)
    [shown] = await bot.wait_for("sendMessage", chat_id=23)
    assert "Your defaults" in shown.data["text"] and "(default)" in shown.data["text"]
    keyboard = buttons(shown)
    assert "9:16" in keyboard and "⚡ Fast" in keyboard and "♻️ Reset" in keyboard

    async def press(data: str, edits: int) -> Call:
        await bot.press_button(shown, data, user_id=23)
        return (await bot.wait_for("editMessageText", chat_id=23, count=edits))[-1]

    edited = await press(keyboard["9:16"], 1)
    assert "✓ 9:16" in buttons(edited)  # the message itself changed, with its keyboard
    edited = await press(keyboard["⚡ Fast"], 2)
    assert "25 steps" in edited.data["text"]
    styles = await press(button_data(edited, "set.v1:23:view:"), 3)
    assert "pixel-art" in buttons(styles) and "« Back" in buttons(styles)
    edited = await press(buttons(styles)["pixel-art"], 4)
    assert "pixel-art" in edited.data["text"]
    edited = await press(button_data(edited, "set.v1:23:file:"), 5)
    assert "Send as a file: yes" in edited.data["text"]
    assert bot.find("answerCallbackQuery")  # every press answered

    tall = request_from_options("x", {"ar": "9:16"}, request_limits_for_tests()).params
    picture = await draw_result(bot, "/draw a lighthouse", 23)
    assert picture.method == "sendDocument" and size_of(picture) == (tall.width, tall.height)
    assert "25 steps" in picture.data["caption"] and "Style: pixel-art" in picture.data["caption"]

    # The keyboard's reset, then typed defaults and /settings reset.
    await press(keyboard["♻️ Reset"], 6)
    picture = await draw_result(bot, "/draw a lighthouse", 23)
    assert picture.method == "sendPhoto" and size_of(picture) == (64, 64) and "Style" not in picture.data["caption"]
    await bot.send_text("/settings --size 128x64 --style sketch", user_id=23)
    await bot.wait_for("sendMessage", chat_id=23, text_contains="Saved")
    assert size_of(await draw_result(bot, "/draw a lighthouse", 23)) == (128, 64)
    await bot.send_text("/settings reset", user_id=23)
    await bot.wait_for("sendMessage", chat_id=23, text_contains="cleared")
    picture = await draw_result(bot, "/draw a lighthouse", 23)
    assert size_of(picture) == (64, 64) and "4 steps" in picture.data["caption"]
    assert "Style" not in picture.data["caption"]


def request_limits_for_tests():
    """The limits of the test bot (conftest's bot_env: 64x64 default, MAX_SIDE 512)."""
    from generation.params import DrawLimits

    return DrawLimits(64, 64, 4, 4.0, 1.0, 512, 100)


async def test_the_command_always_wins(bot: FakeTelegram) -> None:
    await bot.send_text("/settings --ar 16:9 --steps 3 --style watercolor --neg text", user_id=24)
    await bot.wait_for("sendMessage", chat_id=24, text_contains="Saved")
    picture = await draw_result(bot, "/draw a boat --size 64x128 --steps 2 --style none", 24)
    assert size_of(picture) == (64, 128)  # a typed --size over a saved --ar, not "use either"
    assert "2 steps" in picture.data["caption"] and "Style" not in picture.data["caption"]
    picture = await draw_result(bot, "/draw a boat --style sketch", 24)
    assert "Style: sketch" in picture.data["caption"] and "3 steps" in picture.data["caption"]


async def test_a_stranger_changes_nothing_of_the_owners_settings(bot: FakeTelegram) -> None:
    group = -300
    await bot.send_text("/settings --steps 3", user_id=25, chat_id=group)
    [shown] = await bot.wait_for("sendMessage", chat_id=group)
    keyboard = buttons(shown)
    assert all(data.startswith("set.v1:25:") for data in keyboard.values())
    await bot.press_button(shown, keyboard["16:9"], user_id=26)
    await bot.press_button(shown, keyboard["♻️ Reset"], user_id=26)
    answers = await bot.wait_for("answerCallbackQuery", count=2)
    assert all("someone else's" in a.data["text"] and a.data.get("show_alert") for a in answers)
    await asyncio.sleep(0.3)
    assert not bot.find("editMessageText", chat_id=group)
    owner = await draw_result(bot, "/draw a tree", 25, group)
    assert size_of(owner) == (64, 64) and "3 steps" in owner.data["caption"]  # untouched
    stranger = await draw_result(bot, "/draw a tree", 26, group)
    assert size_of(stranger) == (64, 64) and "4 steps" in stranger.data["caption"]  # nor given to them


async def test_an_anonymous_admins_settings_are_their_groups(bot: FakeTelegram) -> None:
    group = -301
    bot.chat_admins[group] = {27}
    await bot.send_text("/settings --steps 3", user_id=27, chat_id=group, anonymous=True)
    [shown] = await bot.wait_for("sendMessage", chat_id=group)
    assert all(data.startswith(f"set.v1:{group}:") for data in buttons(shown).values())
    await bot.press_button(shown, buttons(shown)["⚡ Fast"], user_id=28)  # not an admin of the group
    await bot.wait_for("answerCallbackQuery", text_contains="someone else's")
    await bot.press_button(shown, buttons(shown)["1:1"], user_id=27)  # an admin, by their real account
    [edited] = await bot.wait_for("editMessageText", chat_id=group)
    assert "✓ 1:1" in buttons(edited) and "3 steps" in edited.data["text"]
    await bot.send_text("/draw a hill", user_id=27, chat_id=group, anonymous=True)
    [picture] = await bot.wait_for("sendPhoto", chat_id=group)
    assert "3 steps" in picture.data["caption"]
    # Written by the admin's own account, a /draw is theirs: the group's defaults don't apply.
    assert "4 steps" in (await draw_result(bot, "/draw a hill", 27, group)).data["caption"]


async def test_garbled_button_data_is_answered(bot: FakeTelegram) -> None:
    await bot.send_text("/settings", user_id=29)
    [shown] = await bot.wait_for("sendMessage", chat_id=29)
    for data in ("set.v1:abc:ar:1x1", "set.v1:29:ar:99x1", "set.v1:29:zz:1", "set.v1", "set.v9:x", "set.v1:29:ar"):
        query_id = await bot.press_button(shown, data, user_id=29)
        [answer] = await bot.wait_for("answerCallbackQuery", callback_query_id=query_id)
        assert "no longer works" in answer.data["text"], data
    assert not bot.find("editMessageText")
    await bot.send_text("/settings", user_id=29)  # still answering
    await bot.wait_for("sendMessage", chat_id=29, count=2)


TYPED_MISTAKES = [
    ("/settings --seed 5", "A seed can't be a default"),
    ("/settings a red fox --ar 16:9", "<code>a red fox</code> is not one"),
    ("/settings --steps 1000", "whole number from 1 to 100"),  # /draw's own check and words
    ("/settings --ar 16:9 --size 64x64", "not both"),
    ("/settings --style nope", "There is no style <code>nope</code>. Styles: photo,"),
    ("/settings --colour red", "Unknown option"),
]


async def test_typed_settings_are_checked_as_draw_checks_them(bot: FakeTelegram) -> None:
    for count, (command, expected) in enumerate(TYPED_MISTAKES, 1):
        await bot.send_text(command, user_id=30)
        answer = (await bot.wait_for("sendMessage", chat_id=30, count=count))[-1]
        assert expected in answer.data["text"], command
    await bot.send_text("/settings", user_id=30)
    shown = (await bot.wait_for("sendMessage", chat_id=30, count=len(TYPED_MISTAKES) + 1))[-1]
    assert "(default)" in shown.data["text"] and "Style: none" in shown.data["text"]  # nothing was saved


async def test_language_chosen_in_settings_is_used(bot: FakeTelegram) -> None:
    await bot.send_text("/settings", user_id=31, lang="en")
    [shown] = await bot.wait_for("sendMessage", chat_id=31)
    await bot.press_button(shown, buttons(shown)["Русский"], user_id=31, lang="en")
    [edited] = await bot.wait_for("editMessageText", chat_id=31)
    assert "Ваши настройки" in edited.data["text"]  # at once, in the edited message
    await bot.send_text("/draw", user_id=31, lang="en")
    await bot.wait_for("sendMessage", chat_id=31, text_contains="Напишите описание")
    await bot.press_button(shown, buttons(edited)["🌐 Авто"], user_id=31, lang="en")
    [_, back] = await bot.wait_for("editMessageText", chat_id=31, count=2)
    assert "Your defaults" in back.data["text"]


def test_rows_are_decoded_tolerantly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert decode_choices("{not json", 1, 7) == UserChoices()
        assert decode_choices("[1, 2]", 1, 7) == UserChoices()
        assert decode_choices(None, 1, 7) == UserChoices()
        newer = json.dumps({"options": {"steps": "3", "seed": "5", "sampler2": "x", "neg": 4}, "file": "yes",
                            "language": "de", "colour": "red"})  # fmt: skip
        assert decode_choices(newer, CHOICES_VERSION + 1, 7) == UserChoices({"steps": "3"})
    assert "not JSON" in caplog.text and "'seed'" in caplog.text and "language 'de'" in caplog.text


async def test_a_corrupt_settings_row_is_ignored_not_fatal(
    telegram: FakeTelegram, make_settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(telegram.url)
    store = UserSettings.in_dir(settings.data_dir)
    store.save(33, UserChoices({"steps": "3"}))
    store.close()
    with sqlite3.connect(Path(settings.data_dir) / "user_settings.sqlite3") as db:
        db.execute("INSERT INTO user_settings VALUES (32, 1, '{broken', 0)")
        db.execute("INSERT INTO user_settings VALUES (34, 99, ?, 0)", (json.dumps({"options": {"steps": "999"}}),))
        db.execute("INSERT INTO user_settings VALUES (35, 1, ?, 0)", (json.dumps({"options": {"style": "gone"}}),))
    async with running_bot(settings):
        broken = await draw_result(telegram, "/draw a cat", 32)
        assert "4 steps" in broken.data["caption"]
        assert "3 steps" in (await draw_result(telegram, "/draw a cat", 33)).data["caption"]
        # A saved value today's limits refuse (MAX_STEPS 100) or a style gone from STYLES_FILE: left out.
        assert "4 steps" in (await draw_result(telegram, "/draw a cat", 34)).data["caption"]
        assert "Style" not in (await draw_result(telegram, "/draw a cat", 35)).data["caption"]
        await telegram.send_text("/settings", user_id=32)
        await telegram.wait_for("sendMessage", chat_id=32, text_contains="Your defaults")
    assert "settings of 32 are not JSON" in caplog.text
