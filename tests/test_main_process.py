"""``python main.py`` as a user runs it: settings from the environment, no test-only paths."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from conftest import ROOT, TOKEN, BotProcess, bot_env, png_image
from fake_telegram import FakeTelegram


async def test_main_draws_and_keeps_the_token_out_of_logs(
    telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    # cwd is a fresh directory: no .env there, everything comes from the environment.
    bot = await BotProcess(bot_env(tiny_models, telegram.url, LOG_LEVEL="DEBUG"), tmp_path).start()
    try:
        await telegram.send_text("/draw a red fox --size 64x128", user_id=3)
        [photo] = await telegram.wait_for("sendPhoto", chat_id=3, timeout=120)
        assert png_image(photo.files["photo"]).size == (64, 128)
    finally:
        code = await bot.stop(signal.SIGINT)  # what Ctrl+C sends; docker stop sends SIGTERM
    log = bot.log()
    assert code == 0, log
    assert "Start polling" in log  # DEBUG logging really ran
    assert TOKEN not in log and TOKEN.split(":")[1] not in log
    assert (tmp_path / "data" / "jobs.sqlite3").exists()  # DATA_DIR defaults to ./data


async def test_bad_setting_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    env = {**os.environ, "BOT_TOKEN": TOKEN, "DEFAULT_STEPS": "lots"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "main.py"), cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "DEFAULT_STEPS must be an integer" in stderr.decode()
    assert TOKEN not in stderr.decode()


def test_log_filter_redacts_the_token() -> None:
    import logging

    from bot.logging_setup import RedactingFilter, Redactor

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "GET %s failed", (f"/bot{TOKEN}/getMe",), None)
    RedactingFilter(Redactor([TOKEN])).filter(record)
    assert TOKEN not in record.getMessage() and "<redacted>" in record.getMessage()
