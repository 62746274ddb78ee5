"""/draw end to end: the real bot, tiny real models, the stand-in Bot API server."""

from __future__ import annotations

from conftest import png_image
from fake_telegram import FakeTelegram


async def test_draw_sends_png_of_asked_size(bot: FakeTelegram) -> None:
    request_id = await bot.send_text("/draw a red fox in the snow --size 128x64 --seed 7", user_id=5)
    [photo] = await bot.wait_for("sendPhoto", chat_id=5)
    image = png_image(photo.files["photo"])
    assert image.size == (128, 64)
    assert photo.reply_to == request_id
    caption = photo.data["caption"]
    assert "a red fox in the snow" in caption
    assert "seed 7" in caption and "128×64" in caption and "4 steps" in caption
    # The status message was removed once the picture arrived, and the chat showed the action.
    await bot.wait_for("deleteMessage", chat_id=5)
    assert bot.find("sendChatAction", chat_id=5, action="upload_photo")
