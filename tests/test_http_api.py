"""The old service's HTTP API, /metrics and webhook mode on the bot's own server."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from conftest import png_image, running_bot
from fake_telegram import FakeTelegram

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
                "device": "cpu",
                "models_loaded": True,
                "queue_length": 0,
                "running": 0,
                "error": None,
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
                assert response.status == 200 and (await response.json())["status"] == "reloaded"


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
