"""POST /img2img, /variations and /mix: multipart forms in, the engine's own PNG out,
a JSON error for every bad input, the same token as /generate."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch
from conftest import png_image, running_bot
from fake_telegram import FakeTelegram
from PIL import Image

from bot.web.picture_forms import MAX_FORM_BYTES
from generation import GenerationParams
from generation.params import MixPart
from generation.pipelines import KandinskyPipelines

API_TOKEN = "api-secret-456"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def encoded(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


WIDE = picture(1, (200, 100))  # 2:1 -> 192x64 at the 128x128 default's pixel count
SQUARE = picture(2, (90, 90))


def form(*fields: tuple[str, object]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields:
        if isinstance(value, bytes):
            data.add_field(name, value, filename=f"{name}.png", content_type="application/octet-stream")
        else:
            data.add_field(name, str(value))
    return data


@pytest.fixture(scope="module")
def ours(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    prior, decoder = tiny_models
    return KandinskyPipelines.load(str(prior), str(decoder), torch.device("cpu"), torch.float32, prior_steps=3)


def settings_for(make_settings, telegram: FakeTelegram, port: int, **extra: str):
    return make_settings(
        telegram.url, HTTP_PORT=str(port), DEFAULT_WIDTH="128", DEFAULT_HEIGHT="128", DEFAULT_STEPS="4", **extra
    )


async def wait_healthy(http: aiohttp.ClientSession, base: str) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/health") as response:
                if (await response.json())["status"] == "healthy":
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("never healthy")


async def test_each_endpoint_draws_what_the_engine_draws(
    telegram: FakeTelegram, make_settings, ours: KandinskyPipelines
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cases = [
        (
            "/img2img",
            [("image", encoded(WIDE)), ("prompt", "a watercolor"), ("strength", "0.5"), ("seed", "5")],
            GenerationParams("a watercolor", 192, 64, 4, 4.0, 1.0, seed=5, init_image=0, strength=0.5),
            [WIDE],
        ),
        (
            "/img2img",  # a size given: the picture's shape is not kept
            [
                ("image", encoded(WIDE)),
                ("prompt", "ink"),
                ("strength", "0.75"),
                ("seed", "6"),
                ("width", "64"),
                ("height", "128"),
                ("num_inference_steps", "4"),
            ],
            GenerationParams("ink", 64, 128, 4, 4.0, 1.0, seed=6, init_image=0, strength=0.75),
            [WIDE],
        ),
        (
            "/variations",
            [("image", encoded(SQUARE)), ("seed", "7")],
            GenerationParams("", 128, 128, 4, 4.0, 1.0, seed=7, mix=(MixPart(1.0, image=0),)),
            [SQUARE],
        ),
        (
            "/variations",
            [("image", encoded(SQUARE)), ("prompt", "in winter"), ("seed", "8"), ("width", "64"), ("height", "64")],
            GenerationParams(
                "in winter", 64, 64, 4, 4.0, 1.0, seed=8, mix=(MixPart(0.7, image=0), MixPart(0.3, text="in winter"))
            ),
            [SQUARE],
        ),
        (
            "/mix",
            [
                ("image", encoded(WIDE)),
                ("image", encoded(SQUARE)),
                ("prompt", "in winter"),
                ("weights", "0.4,0.4,0.2"),
                ("seed", "9"),
                ("negative_prompt", "blur"),
            ],
            GenerationParams(
                "in winter",
                128,
                128,
                4,
                4.0,
                1.0,
                seed=9,
                negative_prompt="blur",
                mix=(MixPart(0.4, image=0), MixPart(0.4, image=1), MixPart(0.2, text="in winter")),
            ),
            [WIDE, SQUARE],
        ),
    ]
    async with running_bot(settings_for(make_settings, telegram, port, API_TOKEN=API_TOKEN)):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            async with http.get(f"{base}/") as response:
                assert {"POST /img2img", "POST /variations", "POST /mix"} <= set((await response.json())["endpoints"])
            for path, fields, params, pictures in cases:
                async with http.post(base + path, data=form(*fields)) as response:
                    assert response.status == 401, path  # the same token as /generate
                async with http.post(base + path, data=form(*fields), headers=AUTH) as response:
                    body = await response.read()
                    assert response.status == 200, (path, body)
                    assert response.content_type == "image/png" and response.headers["X-Seed"] == str(params.seed)
                got = png_image(body)
                assert got.size == (params.width, params.height), path
                [expected] = ours.draw([params], None, [pictures])
                # The bot's worker thread and this one may split the CPU's matrix products
                # differently: allow one level of 255.
                difference = np.abs(np.asarray(got.convert("RGB")).astype(int) - np.asarray(expected.image).astype(int))
                assert difference.max() <= 1, path


def gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


PNG = encoded(SQUARE)
HUGE = encoded(Image.new("L", (8000, 5001)))  # 40,008,000 pixels, a small file
BAD = [
    ("/img2img", [("image", b"not a picture"), ("prompt", "x")], "isn't a picture"),
    ("/img2img", [("image", PNG[:200]), ("prompt", "x")], "isn't a picture"),  # cut short
    ("/img2img", [("image", gif()), ("prompt", "x")], "Animated"),
    ("/img2img", [("image", HUGE), ("prompt", "x")], "40 million pixels"),
    ("/img2img", [("image", b"\0" * (20 * 1024 * 1024 + 1)), ("prompt", "x")], "over 20 MB"),
    ("/img2img", [("prompt", "x")], "exactly one picture"),
    ("/img2img", [("image", PNG), ("image", PNG), ("prompt", "x")], "exactly one picture"),
    ("/img2img", [("image", PNG)], "prompt"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("strength", "1.5")], "strength needs a number from 0.05"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("strength", "strong")], "strength needs a number"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("strength", "0.1")], "--steps 10"),  # 4 x 0.1 < 1 step
    ("/img2img", [("image", PNG), ("prompt", "x"), ("weights", "1,2")], "Unknown field weights"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("num_inference_steps", "many")], "num_inference_steps"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("width", "1000")], "64 to 512"),
    ("/img2img", [("image", PNG), ("prompt", "x"), ("seed", "9" * 60)], "digits"),
    ("/variations", [("image", PNG), ("weights", "0.5,0.5")], "2 weights for 1 input"),
    ("/variations", [("image", PNG), ("prompt", "snow"), ("weights", "a,b")], "Can't read the weights"),
    ("/variations", [("prompt", "snow")], "exactly one picture"),
    ("/variations", [("image", PNG), ("strength", "0.5")], "Unknown field strength"),
    ("/mix", [("image", PNG)], "from 2 to 4 inputs"),
    ("/mix", [("prompt", "a")], "from 2 to 4 inputs"),
    ("/mix", [("image", PNG)] * 3 + [("prompt", "a"), ("prompt", "b")], "got 5"),
    ("/mix", [("image", PNG), ("prompt", "a"), ("weights", "1,2,3")], "3 weights for 2 inputs"),
    ("/mix", [("image", PNG), ("prompt", "a"), ("weights", "0,0")], "Can't read the weights"),
    ("/mix", [("image", PNG), ("image", b"GIF89a")], "isn't a picture"),
    ("/mix", [("image", PNG), ("prompt", "   ")], "empty"),
]


async def test_bad_input_gets_400_with_a_json_error(telegram: FakeTelegram, make_settings) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with running_bot(settings_for(make_settings, telegram, port)):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
            for path, fields, message in BAD:
                async with http.post(base + path, data=form(*fields)) as response:
                    body = await response.json()
                    assert response.status == 400, (path, message, body)
                    assert message in body["error"], (path, body)
            async with http.post(f"{base}/img2img", json={"prompt": "x"}) as response:
                assert response.status == 400 and "multipart/form-data" in (await response.json())["error"]
            # More than 4 pictures' worth is refused before it is read.
            too_big = form(*[("image", b"\0" * (20 * 1024 * 1024))] * 4, ("prompt", "x" * (2 * 1024 * 1024)))
            async with http.post(f"{base}/mix", data=too_big) as response:
                assert response.status == 413 and str(MAX_FORM_BYTES) in (await response.json())["error"]
            async with http.post(f"{base}/mix", data=form(("image", PNG), ("prompt", "a"))) as response:
                assert response.status == 200  # still serving
