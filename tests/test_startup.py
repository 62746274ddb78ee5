"""Start-up as an operator meets it: secrets kept out of every line, one clear line for
each start-up failure (bad data directory, rejected token, no Telegram), no traceback."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from conftest import ROOT, TOKEN, BotProcess, bot_env, running_bot
from fake_telegram import FakeTelegram
from test_http_api import free_port

from bot.logging_setup import REDACTED, RedactingFilter, Redactor
from bot.startup_checks import StartupError
from bot.telegram_check import wait_for_telegram

SECRET_PART = TOKEN.split(":")[1]


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this project's modules."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120
    )


def main_py(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- 12.8: secrets in logs and crash output ------------------------------------------------


def test_log_records_are_redacted_with_their_traceback() -> None:
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor([TOKEN, "api-secret-token", ""])))
    logger = logging.getLogger("test_startup.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    error = RuntimeError(f"GET http://127.0.0.1/bot{TOKEN}/getMe failed")
    try:
        try:
            raise error
        except RuntimeError:
            logger.exception("request %s with api-secret-token", f"/bot{TOKEN}/getMe", stack_info=True)
        logger.error("only the secret part %s, url-encoded %s", SECRET_PART, TOKEN.replace(":", "%3A"))
        logger.error("a call with too many arguments", TOKEN)  # must neither raise nor leak
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "Traceback" in output and "RuntimeError" in output  # the traceback is kept, redacted
    assert TOKEN not in output and SECRET_PART not in output and "api-secret-token" not in output
    assert output.count(REDACTED) >= 6 and "too many arguments" in output
    assert TOKEN in str(error)  # the exception itself, which others may hold, is untouched


def test_uncaught_exceptions_are_printed_redacted(tmp_path: Path) -> None:
    code = f"""
import asyncio, gc, logging, threading
from bot.logging_setup import setup_logging
token = {TOKEN!r}
setup_logging("INFO", [token, "webhook-secret-value"])
logging.getLogger("x").info("using webhook-secret-value")
thread = threading.Thread(target=lambda: 1 / 0 if token.startswith("x") else int(token))
thread.start(); thread.join()

async def fail():
    raise ValueError("url /bot" + token + "/sendMessage")

async def main():
    asyncio.get_running_loop().create_task(fail())  # never awaited: asyncio logs it
    await asyncio.sleep(0.05)

asyncio.run(main())
gc.collect()
raise RuntimeError("crashed on http://host/bot" + token + "/getMe")
"""
    result = python(code, tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert TOKEN not in err and SECRET_PART not in err and "webhook-secret-value" not in err, err
    assert "Exception in thread" in err and "invalid literal for int()" in err
    assert "Task exception was never retrieved" in err and "ValueError: url /bot" in err
    assert f"RuntimeError: crashed on http://host/bot{REDACTED}/getMe" in err


@pytest.fixture
async def redirecting_server() -> AsyncIterator[str]:
    """A "Telegram" behind a misconfigured proxy: every request is redirected to itself."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(str(request.url))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def wait_for_log(bot: BotProcess, text: str, timeout: float = 90) -> None:
    """Until ``text`` is in the bot's log or the bot has exited."""
    assert bot.process is not None
    deadline = time.monotonic() + timeout
    while text not in bot.log() and bot.process.returncode is None:
        assert time.monotonic() < deadline, f"no {text!r} in the log within {timeout} s:\n{bot.log()}"
        await asyncio.sleep(0.2)


async def test_redirecting_telegram_never_shows_the_token(
    redirecting_server: str, tiny_models: tuple[Path, Path], tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(tiny_models, redirecting_server, HTTP_PORT=str(port), LOG_LEVEL="DEBUG")
    bot = await BotProcess(env, tmp_path).start()
    try:
        await wait_for_log(bot, f"can't reach Telegram at {redirecting_server}")
        log = bot.log()
        assert TOKEN not in log and SECRET_PART not in log
        assert "Traceback" not in log, log
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
            assert response.status in (200, 503)  # the HTTP API serves while Telegram can't be reached
            await response.json()
    finally:
        await bot.stop(signal.SIGINT)
    log = bot.log()
    assert TOKEN not in log and SECRET_PART not in log
    assert "TooManyRedirects" in log and f"/bot{REDACTED}/getMe" in log
    assert "Traceback" not in log


# -- 15.3: a rejected token, an unreachable Telegram -----------------------------------------


async def test_wrong_token_is_one_line(telegram: FakeTelegram, tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    env = bot_env(tiny_models, telegram.url, BOT_TOKEN="123456789:WRONG-token-of-another-bot")
    bot = await BotProcess(env, tmp_path).start()
    assert bot.process is not None
    code = await asyncio.wait_for(bot.process.wait(), 120)
    log = bot.log()
    assert code == 2, log
    assert "Telegram rejected BOT_TOKEN: check it with @BotFather" in log
    assert "Traceback" not in log and "TelegramUnauthorizedError" not in log
    assert "WRONG-token" not in log


async def test_unreachable_telegram_is_retried_while_health_answers(
    make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    caplog.set_level(logging.WARNING, logger="bot.telegram_check")
    async with running_bot(make_settings(closed, HTTP_PORT=str(port))) as task:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while len([r for r in caplog.records if "can't reach Telegram" in r.getMessage()]) < 2:
                assert time.monotonic() < deadline, caplog.text
                assert not task.done(), task
                await asyncio.sleep(0.1)
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status in (200, 503)
                assert "status" in await response.json()
    lines = [r for r in caplog.records if "can't reach Telegram" in r.getMessage()]
    assert lines[0].getMessage().startswith(f"can't reach Telegram at {closed} (")
    assert "; retrying in 1 s" in lines[0].getMessage() and "; retrying in 2 s" in lines[1].getMessage()
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)


async def test_wait_for_telegram_gives_up_on_a_rejected_token(telegram: FakeTelegram) -> None:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    bot = Bot("123:not-the-token", session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.url)))
    try:
        with pytest.raises(StartupError, match="Telegram rejected BOT_TOKEN"):
            await asyncio.wait_for(wait_for_telegram(bot, telegram.url), 10)
    finally:
        await bot.session.close()


# -- 12.20: the data directory ------------------------------------------------------------


def test_garbage_journal_is_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jobs.sqlite3").write_bytes(b"this is not an SQLite file, it's a note" * 100)
    started = time.monotonic()
    result = main_py([], tmp_path, BOT_TOKEN=TOKEN, DATA_DIR=str(data))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(data / "jobs.sqlite3") in line and "not a database" in line and "move it away" in line
    assert time.monotonic() - started < 30  # refused before loading torch and the models


def test_unusable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    result = main_py([], tmp_path, BOT_TOKEN=TOKEN, DATA_DIR=str(not_a_dir / "data"))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"DATA_DIR={not_a_dir / 'data'} is not a writable directory (Not a directory)" in line


def test_read_only_data_dir_is_one_clear_line() -> None:
    # A directory the bot's user may read but not write. Root may write anywhere, so as
    # root the bot runs as nobody (setpriv), as in the Docker image's non-root user.
    as_nobody: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: no way to be refused a write")
        as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    base = Path(tempfile.mkdtemp(prefix="ro-data-"))
    try:
        base.chmod(0o755)
        read_only = base / "ro"
        read_only.mkdir()
        read_only.chmod(0o555)
        for data_dir in (read_only, read_only / "data"):  # existing, and to be created
            result = subprocess.run(
                [*as_nobody, sys.executable, str(ROOT / "main.py")],
                cwd=base,
                env={**os.environ, "BOT_TOKEN": TOKEN, "DATA_DIR": str(data_dir)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 2, result.stderr
            [line] = result.stderr.strip().splitlines()
            assert f"DATA_DIR={data_dir} is not a writable directory (Permission denied)" in line
    finally:
        shutil.rmtree(base)


# -- 15.4: no torchvision note ------------------------------------------------------------------


def test_loading_the_models_logs_no_torchvision_note(tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    prior, decoder = tiny_models
    code = f"""
import logging, torch
logging.basicConfig(level=logging.INFO)
from generation.pipelines import KandinskyPipelines
pipes = KandinskyPipelines.load({str(prior)!r}, {str(decoder)!r}, torch.device("cpu"), torch.float32)
print(type(pipes.prior.image_processor).__name__)
"""
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CLIPImageProcessorPil"
    assert "torchvision" not in result.stderr, result.stderr


# -- 15.11: /help says where it draws ----------------------------------------------------------


async def test_help_says_cpu_when_drawing_on_the_cpu(bot: FakeTelegram) -> None:
    await bot.send_text("/help", user_id=31)
    [en] = await bot.wait_for("sendMessage", chat_id=31)
    assert "own processor" in en.data["text"] and "own GPU" not in en.data["text"]
    await bot.send_text("/help", user_id=32, lang="ru")
    [ru] = await bot.wait_for("sendMessage", chat_id=32)
    assert "на процессоре" in ru.data["text"] and "видеокарте этого бота" not in ru.data["text"]


def test_help_says_gpu_on_a_gpu(make_settings) -> None:
    from bot.handlers.help import help_text

    settings = make_settings()
    assert "on this bot's own GPU" in help_text("en", settings, ["cuda:0", "cuda:1"])
    assert "own GPU" not in help_text("en", settings, ["cpu"])
