"""One composition module maps the settings to the engine and the request limits, for the
bot, the HTTP API and the CLI alike; the CLI gets there without the Telegram layer."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import ROOT

import generation
from bot.draw_args import DrawLimits
from bot.web.api import add_api
from config import Settings
from generation.composition import create_engine, request_limits


def test_request_limits_follow_the_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(MAX_STEPS="60", MAX_PROMPT_CHARS="300", DEFAULT_GUIDANCE="6.5", DEFAULT_SAMPLER="ddim")
    limits = request_limits(settings)
    assert DrawLimits is generation.DrawLimits  # the old import keeps working
    assert (limits.default_width, limits.default_height, limits.default_steps) == (64, 64, 4)
    assert (limits.max_side, limits.max_steps, limits.max_prompt_chars) == (512, 60, 300)
    assert (limits.default_guidance, limits.default_prior_guidance) == (6.5, 1.0)
    assert limits.default_sampler == "ddim"


def test_model_state_is_public() -> None:
    from generation.engine import ModelState

    assert generation.ModelState is ModelState and "ModelState" in generation.__all__


def test_cli_draw_path_imports_no_aiogram(tmp_path: Path) -> None:
    """``python main.py draw`` up to its engine, in a fresh interpreter: aiogram stays out."""
    code = (
        "import sys, main\n"
        "assert main.main(['draw', 'a fox', '--steps', 'many']) == 2\n"  # all of draw's imports, no model
        "from generation.composition import create_engine, request_limits\n"
        "telegram = sorted(m for m in sys.modules if m.split('.')[0] == 'aiogram' or m.startswith('bot.handlers'))\n"
        "assert not telegram, telegram\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


async def test_api_accepts_every_configured_token(make_settings: Callable[..., Settings]) -> None:
    """API_TOKEN and each of API_TOKENS open /generate; anything else gets 401."""
    settings = make_settings(API_TOKEN="first-token", API_TOKENS="client-a,client-b")
    engine = create_engine(settings)  # not started: the requests below never reach a model
    app = web.Application()
    add_api(app, engine, request_limits(settings), settings.api_tokens)
    async with TestClient(TestServer(app)) as client:

        async def status(token: str | None) -> int:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with client.post("/generate", data=b"not json", headers=headers) as response:
                return response.status

        assert [await status(t) for t in ("first-token", "client-a", "client-b")] == [400, 400, 400]
        assert [await status(t) for t in (None, "client-c", "client-a,client-b")] == [401, 401, 401]
