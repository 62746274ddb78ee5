"""Pictures from pictures in Telegram end to end: the real bot, tiny real models, the
stand-in Bot API serving the users' photos and files. Each kind is compared with the
engine's own pipelines drawing the same request from the same picture."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from aiogram.types import Update
from conftest import TOKEN, png_image, running_bot
from fake_telegram import FakeTelegram
from PIL import Image

from bot.inbox import Inbox
from config import Settings
from generation import GenerationParams
from generation.params import MixPart
from generation.pipelines import KandinskyPipelines

PRIOR_STEPS = 3  # as conftest's bot_env
BOT_ID = int(TOKEN.split(":")[0])  # aiogram reads a bot's id from its token; the inbox keys by it


@pytest.fixture(scope="module")
def engine_pipes(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    """The engine's own pipelines on the same tiny models: what the bot must have drawn."""
    prior, decoder = tiny_models
    return KandinskyPipelines.load(
        str(prior), str(decoder), torch.device("cpu"), torch.float32, prior_steps=PRIOR_STEPS
    )


def photo(seed: int, size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def gif(frames: int = 2) -> bytes:
    images = [Image.new("RGB", (32, 32), (i * 100, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


def pixels(data: bytes | bytearray | Image.Image) -> np.ndarray:
    image = png_image(bytes(data)) if isinstance(data, bytes | bytearray) else data
    return np.asarray(image.convert("RGB")).astype(int)


def expected(pipes: KandinskyPipelines, settings: Settings, pictures: list[bytes], **fields) -> np.ndarray:
    """What the engine draws for this request (the defaults are the bot's settings)."""
    base = dict(
        prompt="",
        width=settings.default_width,
        height=settings.default_height,
        num_inference_steps=settings.default_steps,
        guidance_scale=settings.default_guidance,
        prior_guidance_scale=settings.default_prior_guidance,
    )
    params = GenerationParams(**(base | fields))
    [drawn] = pipes.draw([params], pictures=[pictures])
    return pixels(drawn.image)


def seed_of(caption: str) -> int:
    return int(re.search(r"seed (\d+)", caption).group(1))


def no_pictures(telegram: FakeTelegram, chat_id: int) -> bool:
    return not telegram.find("sendPhoto", chat_id=chat_id) and not telegram.find("sendDocument", chat_id=chat_id)


@pytest.fixture
def settings(telegram: FakeTelegram, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(telegram.url)


@pytest.fixture
async def bot(telegram: FakeTelegram, settings: Settings):
    async with running_bot(settings):
        yield telegram


# -- redraw -------------------------------------------------------------------------------


async def test_photo_with_draw_caption_redraws_it_keeping_its_shape(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    wide = photo(1, (256, 64))  # 4:1 at the default 64x64 pixel count: 128x64
    request_id = await bot.send_photo(wide, "/draw a watercolor --seed 5 --strength 0.75", user_id=20)
    [result] = await bot.wait_for("sendPhoto", chat_id=20)
    assert result.reply_to == request_id
    assert "a watercolor" in result.data["caption"] and "seed 5" in result.data["caption"]
    assert "Redrawn from the picture at <code>--strength 0.75</code>" in result.data["caption"]
    drawn = pixels(result.files["photo"])
    assert drawn.shape == (64, 128, 3)
    want = expected(engine_pipes, settings, [wide], prompt="a watercolor", width=128, height=64, seed=5,
                    init_image=0, strength=0.75)  # fmt: skip
    assert np.abs(drawn - want).max() <= 2
    # Another photo, the same caption: another picture (the photo was drawn from).
    await bot.send_photo(photo(2, (256, 64)), "/draw a watercolor --seed 5 --strength 0.75", user_id=20)
    results = await bot.wait_for("sendPhoto", chat_id=20, count=2)
    assert np.abs(pixels(results[1].files["photo"]) - drawn).max() > 10


async def test_size_option_overrides_the_photos_shape(bot: FakeTelegram) -> None:
    await bot.send_photo(photo(1, (256, 64)), "/draw a fox --size 64x128 --steps 2 --strength 1", user_id=21)
    [result] = await bot.wait_for("sendPhoto", chat_id=21)
    assert png_image(result.files["photo"]).size == (64, 128)


async def test_reply_with_draw_to_the_bots_own_result(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    await bot.send_text("/draw a lighthouse --seed 3", user_id=22)
    [first] = await bot.wait_for("sendPhoto", chat_id=22)
    own = first.result["message_id"]
    request_id = await bot.send_text("/draw as a pencil sketch --seed 4", user_id=22, reply_to=own)
    results = await bot.wait_for("sendPhoto", chat_id=22, count=2)
    assert results[1].reply_to == request_id
    assert "as a pencil sketch" in results[1].data["caption"]
    want = expected(engine_pipes, settings, [first.files["photo"]], prompt="as a pencil sketch", seed=4,
                    init_image=0, strength=settings.default_strength)  # fmt: skip
    assert np.abs(pixels(results[1].files["photo"]) - want).max() <= 2


async def test_photo_sent_as_a_file_is_redrawn(bot: FakeTelegram) -> None:
    await bot.send_document(photo(3, (64, 256), "JPEG"), "/draw a tower --seed 1", file_name="x.jpg",
                            mime_type="image/jpeg", user_id=23)  # fmt: skip
    [result] = await bot.wait_for("sendPhoto", chat_id=23)
    assert png_image(result.files["photo"]).size == (64, 128)


# -- variations ---------------------------------------------------------------------------


async def test_reply_with_vary_to_a_photo_in_a_group(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    tall = photo(4, (64, 256))
    photo_id = await bot.send_photo(tall, user_id=24, chat_id=-300)  # a group: no answer to a bare photo
    await bot.send_text("/vary --seed 11", user_id=24, chat_id=-300, reply_to=photo_id)
    [result] = await bot.wait_for("sendPhoto", chat_id=-300)
    assert png_image(result.files["photo"]).size == (64, 128)  # the photo's shape
    want = expected(engine_pipes, settings, [tall], width=64, height=128, seed=11, mix=(MixPart(1.0, image=0),))
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2
    assert "A variation of the picture" in result.data["caption"]
    assert len(bot.find("sendMessage", chat_id=-300)) == 1  # only the status message


async def test_captionless_photo_in_a_private_chat_is_a_variation(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    picture = photo(5)
    await bot.send_photo(picture, user_id=25)
    [result] = await bot.wait_for("sendPhoto", chat_id=25)
    want = expected(engine_pipes, settings, [picture], seed=seed_of(result.data["caption"]),
                    mix=(MixPart(1.0, image=0),))  # fmt: skip
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2
    assert not bot.find("sendMessage", chat_id=25, text_contains="Send me a description")


async def test_photo_with_a_plain_caption_in_a_private_chat_is_a_steered_variation(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    picture = photo(6)
    await bot.send_photo(picture, "in winter --seed 8", user_id=32)
    [result] = await bot.wait_for("sendPhoto", chat_id=32)
    want = expected(engine_pipes, settings, [picture], prompt="in winter", seed=8,
                    mix=(MixPart(0.7, image=0), MixPart(0.3, text="in winter")))  # fmt: skip
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2
    assert "steered by «in winter»" in result.data["caption"]


async def test_static_sticker_in_a_private_chat_is_a_variation(bot: FakeTelegram) -> None:
    sticker = {"file_id": bot.add_file(photo(12, (64, 256), "WEBP")), "file_unique_id": "us", "type": "regular",
               "width": 64, "height": 256, "is_animated": False, "is_video": False}  # fmt: skip
    await bot.send_message({"sticker": sticker}, user_id=31)
    [result] = await bot.wait_for("sendPhoto", chat_id=31)
    assert png_image(result.files["photo"]).size == (64, 128)


async def test_vary_caption_with_a_text_steers_it(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    picture = photo(6)
    await bot.send_photo(picture, "/vary in winter --seed 8", user_id=26)
    [result] = await bot.wait_for("sendPhoto", chat_id=26)
    want = expected(engine_pipes, settings, [picture], prompt="in winter", seed=8,
                    mix=(MixPart(0.7, image=0), MixPart(0.3, text="in winter")))  # fmt: skip
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2


# -- mixes --------------------------------------------------------------------------------


async def test_album_of_two_with_mix_and_weights(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    a, b = photo(7), photo(8, (128, 64))
    request_id = await bot.send_photo(a, "/mix --weights 0.3,0.7 --seed 12", user_id=27, media_group_id="g1")
    await bot.send_photo(b, user_id=27, media_group_id="g1")
    [result] = await bot.wait_for("sendPhoto", chat_id=27)
    assert result.reply_to == request_id
    want = expected(engine_pipes, settings, [a, b], seed=12, mix=(MixPart(0.3, image=0), MixPart(0.7, image=1)))
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2
    assert "A mix of picture 1, picture 2 · <code>--weights 0.3,0.7</code>" in result.data["caption"]
    await asyncio.sleep(1.5)
    assert len(bot.find("sendPhoto", chat_id=27)) == 1  # one request for the album
    assert len(bot.find("sendMessage", chat_id=27)) == 1  # its status message only


async def test_album_caption_on_the_last_piece_with_a_text(
    bot: FakeTelegram, settings: Settings, engine_pipes: KandinskyPipelines
) -> None:
    a, b = photo(9), photo(10)
    await bot.send_photo(a, user_id=28, media_group_id="g2")
    await bot.send_photo(b, "/mix a starry night --seed 13", user_id=28, media_group_id="g2")
    [result] = await bot.wait_for("sendPhoto", chat_id=28)
    third = 1 / 3
    parts = (MixPart(third, image=0), MixPart(third, image=1), MixPart(third, text="a starry night"))
    want = expected(engine_pipes, settings, [a, b], prompt="a starry night", seed=13, mix=parts)
    assert np.abs(pixels(result.files["photo"]) - want).max() <= 2


async def test_mix_text_as_a_reply_to_a_photo(bot: FakeTelegram) -> None:
    photo_id = await bot.send_photo(photo(11), user_id=29, chat_id=-301)
    await bot.send_text("/mix a red fox --seed 2", user_id=29, chat_id=-301, reply_to=photo_id)
    [result] = await bot.wait_for("sendPhoto", chat_id=-301)
    assert "a red fox" in result.data["caption"]


async def test_album_without_a_command_in_a_private_chat_gets_a_hint(bot: FakeTelegram) -> None:
    await bot.send_photo(photo(1), user_id=30, media_group_id="g3")
    await bot.send_photo(photo(2), user_id=30, media_group_id="g3")
    [hint] = await bot.wait_for("sendMessage", chat_id=30)
    assert "/mix" in hint.data["text"]
    await asyncio.sleep(1.5)
    assert len(bot.find("sendMessage", chat_id=30)) == 1 and no_pictures(bot, 30)


# -- bad input ----------------------------------------------------------------------------

BIG = 25 * 1024 * 1024


def _photo_sizes(file_id: str, size: int) -> list[dict]:
    return [{"file_id": file_id, "file_unique_id": "u" + file_id, "width": 1000, "height": 1000, "file_size": size}]


def _huge_pixels() -> bytes:
    out = io.BytesIO()
    Image.new("1", (7000, 7000)).save(out, format="PNG")  # 49 MP, a few kB
    return out.getvalue()


async def _send(telegram: FakeTelegram, case: str, user_id: int) -> int:
    """Send the bad input ``case``; returns the id of the message that gets the answer."""
    good = photo(1)
    if case == "not an image":
        return await telegram.send_document(b"hello", "/draw a fox", file_name="a.txt", mime_type="text/plain",
                                            user_id=user_id)  # fmt: skip
    if case == "not an image, said to be one":
        return await telegram.send_document(b"hello", "/vary", mime_type="image/png", user_id=user_id)
    if case == "corrupt image":
        return await telegram.send_photo(good[: len(good) // 2], "/draw a fox", user_id=user_id)
    if case == "animated sticker":
        sticker = {"file_id": "s1", "file_unique_id": "us1", "type": "regular", "width": 512, "height": 512,
                   "is_animated": True, "is_video": False}  # fmt: skip
        return await telegram.send_message({"sticker": sticker}, user_id=user_id)
    if case == "gif":
        file_id = telegram.add_file(gif())
        animation = {"file_id": file_id, "file_unique_id": "ua", "width": 32, "height": 32, "duration": 1}
        document = {"file_id": file_id, "file_unique_id": "ua", "mime_type": "video/mp4"}
        return await telegram.send_message({"animation": animation, "document": document, "caption": "/vary"},
                                           user_id=user_id)  # fmt: skip
    if case == "gif as a file":
        return await telegram.send_document(gif(), "/draw a fox", mime_type="image/gif", user_id=user_id)
    if case == "video":
        video = {"file_id": "v1", "file_unique_id": "uv", "width": 64, "height": 64, "duration": 3}
        return await telegram.send_message({"video": video, "caption": "/mix"}, user_id=user_id)
    if case == "over 20 MB, said by its size":  # refused before any download: the file isn't there
        return await telegram.send_message({"photo": _photo_sizes("absent", BIG), "caption": "/draw a fox"},
                                           user_id=user_id)  # fmt: skip
    if case == "over 20 MB, said by Telegram":
        file_id = telegram.add_file(b"\0" * BIG)
        document = {"file_id": file_id, "file_unique_id": "ub", "mime_type": "image/png"}  # no file_size
        return await telegram.send_message({"document": document, "caption": "/draw a fox"}, user_id=user_id)
    if case == "over 40 MP":
        return await telegram.send_document(_huge_pixels(), "/draw a fox", user_id=user_id)
    if case == "vary with nothing":
        return await telegram.send_text("/vary in winter", user_id=user_id)
    if case == "mix with nothing":
        return await telegram.send_text("/mix", user_id=user_id)
    if case == "mix of one picture":
        return await telegram.send_photo(good, "/mix", user_id=user_id)
    if case == "weights that don't parse":
        return await telegram.send_photo(good, "/mix a fox --weights a,b", user_id=user_id)
    if case == "weights that don't match":
        return await telegram.send_photo(good, "/mix a fox --weights 0.2,0.3,0.5", user_id=user_id)
    if case == "strength out of range":
        return await telegram.send_photo(good, "/draw a fox --strength 1.5", user_id=user_id)
    if case == "strength too low for the steps":
        return await telegram.send_photo(good, "/draw a fox --strength 0.1", user_id=user_id)
    if case == "draw without a description":
        return await telegram.send_photo(good, "/draw --strength 0.5", user_id=user_id)
    if case == "strength on vary":
        return await telegram.send_photo(good, "/vary --strength 0.5", user_id=user_id)
    if case == "album of five":
        first = await telegram.send_photo(good, "/mix", user_id=user_id, media_group_id="g5")
        for seed in range(4):
            await telegram.send_photo(photo(seed), user_id=user_id, media_group_id="g5")
        return first
    if case == "album with draw":
        first = await telegram.send_photo(good, "/draw a fox", user_id=user_id, media_group_id="g6")
        await telegram.send_photo(photo(2), user_id=user_id, media_group_id="g6")
        return first
    raise AssertionError(case)


BAD_INPUTS = {
    "not an image": "isn't a picture",
    "not an image, said to be one": "isn't a picture",
    "corrupt image": "isn't a picture",
    "animated sticker": "Animated pictures",
    "gif": "Animated pictures",
    "gif as a file": "Animated pictures",
    "video": "Animated pictures",
    "over 20 MB, said by its size": "over 20 MB",
    "over 20 MB, said by Telegram": "over 20 MB",
    "over 40 MP": "more than 40 million pixels",
    "vary with nothing": "/vary needs a picture",
    "mix with nothing": "/mix needs pictures",
    "mix of one picture": "from 2 to 4 inputs",
    "weights that don't parse": "Can't read the weights",
    "weights that don't match": "3 weights for 2 inputs",
    "strength out of range": "<code>--strength</code> needs a number from 0.05 to 1.0",
    "strength too low for the steps": "Use <code>--steps 10</code> or more",
    "draw without a description": "Say after /draw what the picture should become",
    "strength on vary": "Unknown option <code>--strength</code>",
    "album of five": "at most 4 pictures; this album has 5",
    "album with draw": "/draw redraws one picture",
}


async def test_bad_input_gets_a_clear_answer_and_the_bot_keeps_serving(bot: FakeTelegram) -> None:
    """Every bad input at once (one bot, a user each): each gets its message in reply, no
    picture, and the bot then still draws."""
    users = {case: 100 + n for n, case in enumerate(BAD_INPUTS)}
    requests = {case: await _send(bot, case, user_id=users[case]) for case in BAD_INPUTS}
    for case, expected_text in BAD_INPUTS.items():
        [answer] = await bot.wait_for("sendMessage", chat_id=users[case])
        assert expected_text in answer.data["text"], (case, answer.data["text"])
        assert answer.reply_to == requests[case], case
    await bot.send_photo(photo(3), "/draw a fox --steps 2 --strength 0.5", user_id=99)
    await bot.wait_for("sendPhoto", chat_id=99)
    await asyncio.sleep(1.5)  # albums collected, anything late would have come
    for case, user in users.items():
        assert len(bot.find("sendMessage", chat_id=user)) == 1, case
        assert no_pictures(bot, user), case


async def test_bad_input_in_russian(bot: FakeTelegram) -> None:
    await bot.send_text("/vary", user_id=41, lang="ru")
    [answer] = await bot.wait_for("sendMessage", chat_id=41)
    assert "Для /vary нужна картинка" in answer.data["text"]
    await bot.send_message({"animation": {"file_id": "a", "file_unique_id": "a", "width": 1, "height": 1,
                                          "duration": 1}}, user_id=41, lang="ru")  # fmt: skip
    await bot.wait_for("sendMessage", chat_id=41, count=2)
    assert no_pictures(bot, 41)


# -- limits, help, restarts ---------------------------------------------------------------


async def test_an_album_is_one_request_for_the_rate_limit(
    telegram: FakeTelegram, make_settings: Callable[..., Settings]
) -> None:
    async with running_bot(make_settings(telegram.url, RATE_LIMIT_PER_MIN="1")):
        await telegram.send_photo(photo(1), "/mix --steps 2", user_id=42, media_group_id="g7")
        await telegram.send_photo(photo(2), user_id=42, media_group_id="g7")
        await telegram.send_photo(photo(3), user_id=42, media_group_id="g7")
        await telegram.wait_for("sendPhoto", chat_id=42)
        await telegram.send_photo(photo(4), user_id=42)  # a variation: the second request this minute
        [limited] = await telegram.wait_for("sendMessage", chat_id=42, text_contains="Please wait")
        assert "1, the most" in limited.data["text"]
        assert len(telegram.find("sendPhoto", chat_id=42)) == 1


async def test_pending_cap_applies_to_pictures(telegram: FakeTelegram, make_settings: Callable[..., Settings]) -> None:
    async with running_bot(make_settings(telegram.url, MAX_PENDING_PER_USER="1")):
        await telegram.send_text("/draw a slow one --steps 30", user_id=48)
        await telegram.wait_for("sendMessage", chat_id=48)  # accepted: its status message
        await telegram.send_photo(photo(1), "/vary", user_id=48)
        [busy] = await telegram.wait_for("sendMessage", chat_id=48, text_contains="as many requests waiting")
        assert "(1)" in busy.data["text"]
        await telegram.wait_for("sendPhoto", chat_id=48)
        await asyncio.sleep(0.5)
        assert len(telegram.find("sendPhoto", chat_id=48)) == 1


async def test_a_strangers_album_in_a_group_gets_one_refusal(
    telegram: FakeTelegram, make_settings: Callable[..., Settings]
) -> None:
    async with running_bot(make_settings(telegram.url, ALLOWED_USER_IDS="1")):
        await telegram.send_photo(photo(1), user_id=47, chat_id=-302, media_group_id="g10")
        await telegram.send_photo(photo(2), user_id=47, chat_id=-302, media_group_id="g10")
        await telegram.send_photo(photo(3), "/mix", user_id=47, chat_id=-303, media_group_id="g11")
        await telegram.send_photo(photo(4), user_id=47, chat_id=-303, media_group_id="g11")
        await telegram.wait_for("sendMessage", chat_id=-303, text_contains="private")
        await asyncio.sleep(1.5)
        assert not telegram.find("sendMessage", chat_id=-302)  # chatter, not for us
        assert len(telegram.find("sendMessage", chat_id=-303)) == 1 and no_pictures(telegram, -303)


async def test_help_explains_pictures_in_both_languages(bot: FakeTelegram) -> None:
    await bot.send_text("/help", user_id=43)
    [en] = await bot.wait_for("sendMessage", chat_id=43)
    assert "/draw a watercolor painting --strength 0.6" in en.data["text"]
    assert "/vary in winter" in en.data["text"] and "--weights 0.3,0.7" in en.data["text"]
    await bot.send_text("/help", user_id=44, lang="ru")
    [ru] = await bot.wait_for("sendMessage", chat_id=44)
    assert "Картинки из картинок" in ru.data["text"] and "/mix" in ru.data["text"]


async def test_album_left_mid_collection_by_a_killed_bot_is_drawn_after_restart(
    telegram: FakeTelegram, settings: Settings
) -> None:
    """The inbox holds an album's updates unhandled (the bot was killed while collecting
    it): the next start feeds them again, the album is collected anew and drawn once."""
    inbox = Inbox.in_dir(settings.data_dir)
    first_id = None
    for update_id, (seed, caption) in enumerate([(1, "/mix --seed 3"), (2, None)], start=500):
        message = {
            "message_id": 9000 + update_id,
            "date": 0,
            "chat": {"id": 45, "type": "private"},
            "from": {"id": 45, "is_bot": False, "first_name": "u", "language_code": "en"},
            "media_group_id": "g8",
            "photo": _photo_sizes(telegram.add_file(photo(seed)), 100),
        }
        if caption:
            message |= {"caption": caption, "caption_entities": [{"type": "bot_command", "offset": 0, "length": 4}]}
            first_id = message["message_id"]
        inbox.add(BOT_ID, Update.model_validate({"update_id": update_id, "message": message}))
    inbox.close()
    async with running_bot(settings):
        [result] = await telegram.wait_for("sendPhoto", chat_id=45)
        assert result.reply_to == first_id and "seed 3" in result.data["caption"]
        await asyncio.sleep(1.5)
        assert len(telegram.find("sendPhoto", chat_id=45)) == 1


async def test_album_pieces_stay_unhandled_in_the_inbox_while_collected(bot: FakeTelegram, settings: Settings) -> None:
    """What makes the restart above safe: a piece's update is not marked handled until its
    album has been submitted (the handler waits for the album), so a kill meanwhile
    leaves every piece to be fed again."""
    db = sqlite3.connect(Path(settings.data_dir) / "inbox.sqlite3")

    def rows(where: str = "1") -> int:
        return db.execute(f"SELECT COUNT(*) FROM inbox WHERE {where}").fetchone()[0]

    await bot.send_photo(photo(1), "/mix --steps 2", user_id=46, media_group_id="g9")
    await bot.send_photo(photo(2), user_id=46, media_group_id="g9")
    for _ in range(100):
        if rows() >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # well within the album's quiet second
    assert rows("done_at IS NULL") == 2
    await bot.wait_for("sendPhoto", chat_id=46)
    assert rows("done_at IS NULL") == 0
    db.close()
