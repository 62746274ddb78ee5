"""Upscale 2x outside Telegram: the size rule, POST /upscale and ``main.py upscale``."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from conftest import png_image, running_bot
from fake_telegram import FakeTelegram
from PIL import Image
from test_cli import run_main
from test_http_api import free_port, wait_healthy

from generation.upscale import enlarge, upscale_params, upscale_size

API_TOKEN = "api-secret-123"


def picture(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((64, 64), 2048, (128, 128)),
        ((768, 768), 2048, (1536, 1536)),
        ((768, 512), 1024, (1024, 704)),  # capped, the ratio kept, 64-pixel tiles
        ((1024, 1024), 2048, (2048, 2048)),
        ((1500, 1000), 2048, (2048, 1344)),
        ((2048, 1024), 2048, None),  # as large as an upscale makes pictures
        ((100, 60), 2048, (192, 128)),
    ],
)
def test_upscale_size(size: tuple[int, int], max_side: int, expected: tuple[int, int] | None) -> None:
    assert upscale_size(*size, max_side) == expected


def test_enlarge_and_params() -> None:
    start = png_image(enlarge(picture(64, 32), (128, 64)))
    assert start.size == (128, 64) and start.getpixel((5, 5)) == (200, 40, 40)
    params = upscale_params((128, 64), prompt="x", steps=2, guidance=4.0, prior_guidance=1.0, strength=0.3, seed=1)
    assert (params.kind, params.init_image, params.image_count) == ("img2img", 0, 1)
    assert int(params.num_inference_steps * params.strength) >= 1  # at least one decoder step runs


async def test_upscale_api_returns_a_png_twice_the_size(telegram: FakeTelegram, make_settings) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port), API_TOKEN=API_TOKEN)):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)

            def form(image: bytes | None = None, **fields: str) -> aiohttp.FormData:
                data = aiohttp.FormData()
                if image is not None:
                    data.add_field("image", image, filename="in.png", content_type="image/png")
                for name, value in fields.items():
                    data.add_field(name, value)
                return data

            async with http.post(f"{base}/upscale", data=form(picture(64, 128)), headers={}) as response:
                assert response.status == 401  # the same token as /generate
            async with http.post(
                f"{base}/upscale", data=form(picture(64, 128), seed="5", steps="4"), headers=auth
            ) as response:
                assert response.status == 200, await response.text()
                assert response.content_type == "image/png" and response.headers["X-Seed"] == "5"
                assert png_image(await response.read()).size == (128, 256)
            async with http.post(
                f"{base}/upscale", data=form(picture(64, 64), strength="0.6"), headers=auth
            ) as response:
                assert png_image(await response.read()).size == (128, 128)
            for data, expected in (
                (form(b"not a picture"), "not a picture"),
                (form(seed="1"), "'image'"),
                (form(picture(64, 64), strength="2"), "strength"),
                (form(picture(64, 64), steps="0"), "steps"),
                (form(picture(64, 64), colour="red"), "fields"),
            ):
                async with http.post(f"{base}/upscale", data=data, headers=auth) as response:
                    assert response.status == 400 and expected in (await response.json())["error"]
            async with http.post(f"{base}/upscale", json={"image": "x"}, headers=auth) as response:
                assert response.status == 400 and "multipart" in (await response.json())["error"]


def test_cli_upscale(tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    prior, decoder = tiny_models
    (tmp_path / "in.png").write_bytes(picture(96, 64))
    env = dict(PRIOR_MODEL=str(prior), DECODER_MODEL=str(decoder), DEVICE="cpu", PRIOR_STEPS="2", DEFAULT_STEPS="4")
    result = run_main(["upscale", "in.png", "-o", "out.png", "--seed", "3"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert png_image((tmp_path / "out.png").read_bytes()).size == (192, 128)
    assert "192x128, seed 3" in result.stdout
    refused = run_main(["upscale", "missing.png"], tmp_path, **env)
    assert refused.returncode == 2 and "missing.png" in refused.stderr
