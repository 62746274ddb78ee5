"""The old service's HTTP API, /metrics and webhook mode on the bot's own server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Callable

import aiohttp
import pytest
import torch
from aiohttp import web
from conftest import png_image, running_bot
from fake_telegram import FakeTelegram

import main
from bot.web.api import PATHS, add_api
from bot.web.clients import api_user_id, client_address
from config import HTTP_API_PATHS, ConfigError, settings_from_env
from generation import GenerationEngine, ModelState
from generation.composition import request_limits

API_TOKEN = "api-secret-123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_healthy(http: aiohttp.ClientSession, base: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/health") as response:
                body = await response.json()
                if body["status"] == "healthy":
                    return body
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("never healthy")


@pytest.fixture
def port() -> int:
    return free_port()


async def test_old_service_contract(telegram: FakeTelegram, make_settings, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port), API_TOKEN=API_TOKEN)):
        async with aiohttp.ClientSession() as http:
            health = await wait_healthy(http, base)
            assert health == {
                "status": "healthy",
                "models": "ready",
                "device": "cpu",
                "models_loaded": True,
                "queue_length": 0,
                "running": 0,
                "error": None,
                "translation": "off",  # TRANSLATE=off in the test settings
                "translation_error": None,
            }
            async with http.get(f"{base}/") as response:
                assert "POST /generate" in (await response.json())["endpoints"]

            body = {
                "prompt": "a red fox",
                "negative_prompt": "blurry",
                "width": 128,
                "height": 64,
                "num_inference_steps": 3,
                "guidance_scale": 4.0,
                "prior_guidance_scale": 1.0,
                "seed": 9,
            }
            async with http.post(f"{base}/generate", json=body) as response:
                assert response.status == 401
                assert "API token" in (await response.json())["error"]
            async with http.post(f"{base}/generate", json=body, headers={"Authorization": "Bearer wrong"}) as response:
                assert response.status == 401
            async with http.post(f"{base}/generate", json=body, headers=auth) as response:
                assert response.status == 200 and response.content_type == "image/png"
                assert response.headers["X-Seed"] == "9"
                assert png_image(await response.read()).size == (128, 64)

            async with http.post(f"{base}/reload") as response:
                assert response.status == 401
            async with http.post(f"{base}/reload", headers=auth) as response:
                assert response.status == 200
                answer = await response.json()
                # The old service's answer, which its clients check (extra fields may follow).
                assert answer["status"] == "success" and answer["message"] == "Модели успешно загружены"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "the body must be JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", "prompt is required"),
        (b'{"prompt": "  "}', "prompt is required"),
        (b'{"prompt": "fox", "colour": "red"}', "Unknown field colour"),
        (b'{"prompt": "fox", "width": 4096}', "from 64 to 512 pixels"),
        (b'{"prompt": "fox", "width": 100.5}', "Can't read the size"),
        (b'{"prompt": "fox", "num_inference_steps": "many"}', "num_inference_steps has the wrong type"),
        (b'{"prompt": "fox", "num_inference_steps": 0}', "whole number from 1 to 100"),
        (b'{"prompt": "fox", "guidance_scale": 99}', "number from 0 to 20"),
        (b'{"prompt": "fox", "seed": -5}', "whole number from 0 to 4294967295"),
        (b'{"prompt": "fox", "negative_prompt": 5}', "negative_prompt has the wrong type"),
    ],
)
async def test_bad_bodies_get_400_with_a_reason(
    telegram: FakeTelegram, make_settings, port: int, body, message
) -> None:
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port))):  # no API_TOKEN: open on localhost
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, f"http://127.0.0.1:{port}")
            async with http.post(
                f"http://127.0.0.1:{port}/generate", data=body, headers={"Content-Type": "application/json"}
            ) as response:
                assert response.status == 400
                assert message in (await response.json())["error"]


async def test_generate_shares_the_queue_and_metrics_count_it(telegram: FakeTelegram, make_settings, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port), MAX_PENDING_PER_USER="10")):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            await telegram.send_text("/draw keep the worker busy --size 256x256 --steps 30", user_id=60)
            await telegram.wait_for("editMessageText", chat_id=60, text_contains="step")

            async def one(i: int) -> str:
                async with http.post(f"{base}/generate", json={"prompt": f"fox {i}", "width": 64}) as response:
                    assert response.status == 200
                    return response.headers["X-Batch-Size"]

            batch_sizes = await asyncio.gather(*(one(i) for i in range(4)))
            assert max(map(int, batch_sizes)) > 1
            await telegram.wait_for("sendPhoto", chat_id=60)
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
    assert 'kandinsky_requests_total{outcome="done"} 5.0' in metrics
    assert "kandinsky_queue_depth 0.0" in metrics
    assert "kandinsky_models_loaded 1.0" in metrics
    assert "kandinsky_batch_size_bucket" in metrics and "kandinsky_generation_seconds_count 5.0" in metrics


SECRET = "s3cret-value-0123456789"  # WEBHOOK_SECRET: 16 characters at least


async def test_webhook_mode(telegram: FakeTelegram, make_settings, port: int) -> None:
    settings = make_settings(
        telegram.url,
        HTTP_PORT=str(port),
        WEBHOOK_URL="https://bot.example.org/telegram/hook",
        WEBHOOK_SECRET=SECRET,
    )
    async with running_bot(settings):
        [webhook] = await telegram.wait_for("setWebhook")
        assert webhook.data["url"] == "https://bot.example.org/telegram/hook"
        assert webhook.data["secret_token"] == SECRET
        assert not telegram.find("getUpdates")
        update = {
            "update_id": 1,
            "message": {
                "message_id": 5,
                "date": int(time.time()),
                "chat": {"id": 70, "type": "private"},
                "from": {"id": 70, "is_bot": False, "first_name": "u", "language_code": "en"},
                "text": "/draw a fox by webhook",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        url = f"http://127.0.0.1:{port}/telegram/hook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as response:
                assert response.status == 401
            async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}) as r:
                assert r.status == 200
        [photo] = await telegram.wait_for("sendPhoto", chat_id=70)
        assert "a fox by webhook" in photo.data["caption"]
        assert len(telegram.find("sendPhoto")) == 1  # the wrongly signed copy was refused


# --- httpapi: items 12.12, 12.17, 12.18, 12.22 ---

BLOCKER = "/draw keep the worker busy --size 256x256 --steps 12"


async def health_until(http: aiohttp.ClientSession, base: str, check: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
            body = await response.json()
        if check(body):
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"/health never got there; last: {body}")


async def post_generate(base: str, headers: dict[str, str]) -> int:
    """One 64x64 request on its own connection; its HTTP status."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/generate", json={"prompt": "a fox", "width": 64}, headers=headers) as response:
            return response.status


async def start_queued(http: aiohttp.ClientSession, base: str, headers: dict[str, str], queued: int) -> asyncio.Task:
    """Send a request and wait until it waits in the queue (then ``queued`` requests wait)."""
    task = asyncio.create_task(post_generate(base, headers))
    while True:
        if task.done():
            raise AssertionError(f"expected it to wait in the queue, got HTTP {task.result()}")
        async with http.get(f"{base}/health") as response:
            if (await response.json())["queue_length"] == queued:
                return task
        await asyncio.sleep(0.02)


async def hang_up(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize(
    ("env", "client_a", "client_a_again", "client_b", "b_has_own_quota"),
    [
        pytest.param(  # one token per client: the token says who it is
            {"API_TOKEN": "token-zero", "API_TOKENS": "token-a, token-b"},
            {"Authorization": "Bearer token-a"},
            {"Authorization": "Bearer token-a"},
            {"Authorization": "Bearer token-b"},
            True,
            id="per-client-tokens",
        ),
        pytest.param(  # behind a trusted proxy: the right-most address not a proxy's
            {"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"},
            {"X-Forwarded-For": "203.0.113.5"},
            {"X-Forwarded-For": "198.51.100.66, 203.0.113.5"},  # the left part is the client's own say
            {"X-Forwarded-For": "203.0.113.6, 10.1.2.3"},  # through a second, trusted proxy
            True,
            id="trusted-proxy",
        ),
        pytest.param(  # anyone else's X-Forwarded-For is ignored: both are 127.0.0.1
            {"TRUSTED_PROXIES": "10.0.0.0/8"},
            {"X-Forwarded-For": "203.0.113.5"},
            {"X-Forwarded-For": "203.0.113.5"},
            {"X-Forwarded-For": "203.0.113.6"},
            False,
            id="untrusted-peer",
        ),
    ],
)
async def test_each_api_client_has_its_own_quota(
    telegram: FakeTelegram, make_settings, port: int, env, client_a, client_a_again, client_b, b_has_own_quota
) -> None:
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(telegram.url, HTTP_PORT=str(port), MAX_PENDING_PER_USER="1", **env)
    async with running_bot(settings):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            await telegram.send_text(BLOCKER, user_id=61)
            await telegram.wait_for("editMessageText", chat_id=61, text_contains="step")
            first = await start_queued(http, base, client_a, queued=1)
            assert await post_generate(base, client_a_again) == 429  # client A's one waiting request
            if b_has_own_quota:
                second = await start_queued(http, base, client_b, queued=2)
                await hang_up([first, second])
            else:
                assert await post_generate(base, client_b) == 429
                await hang_up([first])


async def test_a_client_that_hangs_up_has_its_waiting_job_cancelled(
    telegram: FakeTelegram, make_settings, port: int
) -> None:
    base = f"http://127.0.0.1:{port}"
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port))):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            await telegram.send_text(BLOCKER, user_id=62)
            await telegram.wait_for("editMessageText", chat_id=62, text_contains="step")
            waiting = await start_queued(http, base, {}, queued=1)
            await hang_up([waiting])
            health = await health_until(http, base, lambda h: h["queue_length"] == 0)
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
            assert 'kandinsky_requests_total{outcome="cancelled"} 1.0' in metrics
            assert health["running"] == 1 and not telegram.find("sendPhoto")  # the blocker still draws


async def test_huge_numbers_deep_nesting_and_huge_bodies_get_a_json_error(
    telegram: FakeTelegram, make_settings, port: int
) -> None:
    base = f"http://127.0.0.1:{port}"
    bodies = [
        (b'{"prompt": "fox", "seed": ' + b"7" * 5000 + b"}", 400, "digits"),
        (b'{"prompt": "fox", "seed": -' + b"7" * 5000 + b"}", 400, "digits"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b'{"prompt": "fox", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
        (b'{"prompt": "' + b"a" * 2_000_000 + b'"}', 413, "at most"),
    ]
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port))):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            for body, status, message in bodies:
                headers = {"Content-Type": "application/json"}
                async with http.post(f"{base}/generate", data=body, headers=headers) as response:
                    assert response.status == status
                    assert message in (await response.json())["error"]
            async with http.post(f"{base}/generate", json={"prompt": "fox", "seed": 7}) as response:
                assert response.status == 200  # still serving


async def test_health_says_reloading_while_the_old_models_draw(
    telegram: FakeTelegram, make_settings, port: int
) -> None:
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(telegram.url, HTTP_PORT=str(port))
    async with running_bot(settings):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            await telegram.send_text(BLOCKER, user_id=63)
            await telegram.wait_for("editMessageText", chat_id=63, text_contains="step")
            reload = asyncio.create_task(http.post(f"{base}/reload"))
            health = await health_until(http, base, lambda h: h["status"] != "healthy")
            assert health["status"] == "reloading" and health["running"] == 1
            assert await asyncio.to_thread(main.health, settings) == 0  # Docker's HEALTHCHECK
            async with await reload as response:
                assert response.status == 200 and (await response.json())["status"] == "success"
            await wait_healthy(http, base)
        await telegram.wait_for("sendPhoto", chat_id=63)


async def test_a_failed_reload_says_so(telegram: FakeTelegram, make_settings, port: int, tiny_models, tmp_path) -> None:
    base = f"http://127.0.0.1:{port}"
    prior, decoder = (shutil.copytree(model, tmp_path / model.name) for model in tiny_models)
    settings = make_settings(telegram.url, HTTP_PORT=str(port), PRIOR_MODEL=str(prior), DECODER_MODEL=str(decoder))
    async with running_bot(settings):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            shutil.rmtree(decoder)
            async with http.post(f"{base}/reload") as response:
                assert response.status == 500
                answer = await response.json()
            assert answer["status"] == "error" and answer["message"].startswith("Не удалось загрузить модели")
            assert (await health_until(http, base, lambda h: True))["status"] == "unhealthy"
            assert await asyncio.to_thread(main.health, settings) == 1


async def test_health_check_passes_while_the_models_load_and_fails_when_they_failed(make_settings, port: int) -> None:
    """Docker's HEALTHCHECK (main.py health) must not kill a bot that is still downloading or
    compiling its models: it answers users meanwhile. Failed models are unhealthy."""
    loading, fail = threading.Event(), threading.Event()

    def loader(device: torch.device) -> None:
        loading.set()
        fail.wait(30)
        raise OSError("no such model")

    engine = GenerationEngine([torch.device("cpu")], loader)  # type: ignore[arg-type]
    settings = make_settings(HTTP_PORT=str(port))
    app = web.Application()
    add_api(app, engine, request_limits(settings), ())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await engine.start()
    try:
        await asyncio.to_thread(loading.wait, 30)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
            assert (await response.json())["models"] == "loading"
        assert await asyncio.to_thread(main.health, settings) == 0
        fail.set()
        while engine.models_state is ModelState.LOADING:
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(main.health, settings) == 1
    finally:
        fail.set()
        await engine.close()
        await runner.cleanup()


def test_api_tokens_and_trusted_proxies_settings() -> None:
    env = {"BOT_TOKEN": "1:a", "HTTP_PORT": "8080", "HTTP_HOST": "0.0.0.0"}
    settings = settings_from_env({**env, "API_TOKEN": "t0", "API_TOKENS": " t1, t2,,t0 "})
    assert settings.api_tokens == ("t0", "t1", "t2") and "t1" not in repr(settings)
    assert settings_from_env({**env, "API_TOKENS": "t1"}).api_tokens == ("t1",)  # enough for a public host
    assert settings_from_env({"BOT_TOKEN": "1:a"}).api_tokens == ()
    with pytest.raises(ConfigError, match=r"TRUSTED_PROXIES must be .* got 'proxy\.local'"):
        settings_from_env({"BOT_TOKEN": "1:a", "TRUSTED_PROXIES": "10.0.0.1, proxy.local"})


def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    trusted = settings_from_env({"BOT_TOKEN": "1:a", "TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies
    assert client_address("192.0.2.1", ["203.0.113.5"], trusted) == "192.0.2.1"
    assert client_address("10.0.0.2", [], trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", ["1.1.1.1, 203.0.113.5", "10.9.9.9"], trusted) == "203.0.113.5"
    assert client_address("::ffff:10.0.0.2", ["203.0.113.5"], trusted) == "203.0.113.5"
    assert client_address("::1", ["garbage, 10.1.1.1"], trusted) == "garbage"
    assert client_address("10.0.0.2", ["10.1.1.1, 10.2.2.2"], trusted) == "10.1.1.1"


def test_api_user_ids_are_stable_and_apart_from_telegram_ids() -> None:
    assert api_user_id("address:203.0.113.5") == -1000722223937734  # the same in every process
    assert api_user_id("token:a") != api_user_id("token:b")
    assert all(api_user_id(f"address:10.0.0.{i}") < -(10**15) for i in range(50))


def test_paths_lists_every_route() -> None:
    app = web.Application()
    add_api(app, GenerationEngine([], lambda device: None), limits=None, api_tokens=())  # type: ignore[arg-type]
    assert {route.resource.canonical for route in app.router.routes()} == PATHS
    # A WEBHOOK_URL on an API route would never see an update: config refuses every one of them.
    assert set(HTTP_API_PATHS) == PATHS
