"""Each decoder sampler draws what diffusers' own Kandinsky 2.2 pipelines draw with that
scheduler (``<Scheduler>.from_config(decoder.scheduler.config)``), alone, inside a batch
and from a picture (img2img); requests of different samplers never share a batch. A
request names its sampler with /draw's --sampler, POST /generate's "sampler" or the
command line's --sampler, and gets the sampler's own step count when it names none."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch
from conftest import png_image, running_bot
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    KandinskyV22Img2ImgPipeline,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
)
from fake_telegram import FakeTelegram
from PIL import Image

from bot.delivery import caption
from bot.draw_args import DrawArgsError, params_from_json, parse_draw_args
from bot.handlers.help import help_text
from bot.texts import text
from generation import DrawLimits, GenerationParams, GenerationResult
from generation.pipelines import KandinskyPipelines
from generation.samplers import SAMPLER_NAMES, sampler_steps

CPU = torch.device("cpu")
PRIOR_STEPS = 3
STOCK = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmpp": DPMSolverMultistepScheduler}


@pytest.fixture(scope="module")
def ours(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    prior, decoder = tiny_models
    return KandinskyPipelines.load(str(prior), str(decoder), CPU, torch.float32, prior_steps=PRIOR_STEPS)


@pytest.fixture(scope="module")
def reference(tiny_models: tuple[Path, Path]):
    prior, decoder = tiny_models
    text = KandinskyV22Pipeline.from_pretrained(decoder)
    img2img = KandinskyV22Img2ImgPipeline.from_pretrained(decoder)
    return KandinskyV22PriorPipeline.from_pretrained(prior), text, img2img, text.scheduler.config


def with_sampler(pipe, config, sampler: str):
    """diffusers' pipeline with the sampler's stock scheduler, from the decoder's config."""
    pipe.scheduler = STOCK[sampler].from_config(config)
    return pipe


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def photo(seed: int, size=(96, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def params(sampler: str, prompt="a red fox", **fields) -> GenerationParams:
    base = dict(width=64, height=64, num_inference_steps=5, guidance_scale=4.0, prior_guidance_scale=1.0, seed=7)
    base.update(fields)
    return GenerationParams(prompt, sampler=sampler, **base)


def embeddings(prior, p: GenerationParams, generator: torch.Generator):
    return prior(
        p.prompt,
        negative_prompt=p.negative_prompt,
        guidance_scale=p.prior_guidance_scale,
        num_inference_steps=PRIOR_STEPS,
        generator=generator,
    ).to_tuple()


def reference_text(reference, p: GenerationParams) -> np.ndarray:
    prior, decoder, _, config = reference
    generator = torch.Generator().manual_seed(p.seed)
    embeds, negative = embeddings(prior, p, generator)
    image = with_sampler(decoder, config, p.sampler)(
        image_embeds=embeds,
        negative_image_embeds=negative,
        width=p.width,
        height=p.height,
        num_inference_steps=p.num_inference_steps,
        guidance_scale=p.guidance_scale,
        generator=generator,
    ).images[0]
    return pixels(image)


def reference_img2img(reference, p: GenerationParams, start: Image.Image) -> np.ndarray:
    prior, _, img2img, config = reference
    generator = torch.Generator().manual_seed(p.seed)
    embeds, negative = embeddings(prior, p, generator)
    image = with_sampler(img2img, config, p.sampler)(
        image=start,
        image_embeds=embeds,
        negative_image_embeds=negative,
        strength=p.strength,
        # diffusers resizes the start to (width, height) swapped: asked this way, it draws
        # p.width x p.height (generation.pipelines does the same).
        width=p.height,
        height=p.width,
        num_inference_steps=p.num_inference_steps,
        guidance_scale=p.guidance_scale,
        generator=generator,
    ).images[0]
    return pixels(image)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_same_pixels_as_diffusers_with_that_scheduler(ours, reference, sampler) -> None:
    p = params(sampler, width=128, negative_prompt="blurry")
    [drawn] = ours.draw([p])
    assert drawn.image.size == (128, 64)
    assert np.array_equal(pixels(drawn.image), reference_text(reference, p))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_seed_gives_the_same_picture_inside_a_batch(ours, sampler) -> None:
    mine = params(sampler, seed=5, negative_prompt="blur")
    others = [params(sampler, f"other {i}", seed=100 + i, negative_prompt=None if i % 2 else "x") for i in range(3)]
    [alone] = ours.draw([mine])
    batch = ours.draw([others[0], mine, *others[1:]])
    [again] = ours.draw([mine])  # nothing of the batch (a multistep solver's history) lingers
    # Batched matrix products round differently: allow one level of 255.
    assert np.abs(pixels(batch[1].image) - pixels(alone.image)).max() <= 1
    assert np.array_equal(pixels(again.image), pixels(alone.image))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_img2img_same_pixels_as_diffusers(ours, reference, sampler) -> None:
    start = photo(1)
    p = params(sampler, init_image=0, strength=0.6, num_inference_steps=6, width=128)
    [drawn] = ours.draw([p], pictures=[[start]])
    assert drawn.image.size == (128, 64)
    assert np.array_equal(pixels(drawn.image), reference_img2img(reference, p, start))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_img2img_batch_keeps_each_picture(ours, sampler) -> None:
    a = params(sampler, "fox", seed=1, init_image=0, strength=0.6, num_inference_steps=6)
    b = params(sampler, "owl", seed=2, init_image=0, strength=0.6, num_inference_steps=6, negative_prompt="dark")
    together = ours.draw([a, b], pictures=[[photo(7)], [photo(8, (200, 100))]])
    [alone] = ours.draw([b], pictures=[[photo(8, (200, 100))]])
    assert np.abs(pixels(together[1].image) - pixels(alone.image)).max() <= 1


def test_samplers_draw_different_pictures(ours) -> None:
    """The request's sampler is the one that draws (the same seed differs by sampler)."""
    drawn = {name: pixels(ours.draw([params(name)])[0].image) for name in SAMPLER_NAMES}
    assert not np.array_equal(drawn["ddpm"], drawn["ddim"])
    assert not np.array_equal(drawn["ddim"], drawn["dpmpp"])


def test_different_samplers_never_share_a_batch(ours) -> None:
    keys = {params(name).batch_key for name in SAMPLER_NAMES}
    assert len(keys) == len(SAMPLER_NAMES)
    img2img = {params(name, init_image=0).batch_key for name in SAMPLER_NAMES}
    assert len(img2img) == len(SAMPLER_NAMES)
    with pytest.raises(ValueError, match="sampler"):
        ours.draw([params("ddpm"), params("dpmpp")])


def test_default_steps_per_sampler() -> None:
    assert [sampler_steps(name, 50) for name in SAMPLER_NAMES] == [50, 50, 25]
    assert sampler_steps("dpmpp", 7) == 4 and sampler_steps("dpmpp", 1) == 1


# --- requests -------------------------------------------------------------------------

LIMITS = DrawLimits(768, 768, 50, 4.0, 1.0, 1024, 100)


def test_draw_option_names_the_sampler() -> None:
    request = parse_draw_args("a fox --sampler DPMpp --seed 3", LIMITS)
    assert request.params.sampler == "dpmpp" and request.params.prompt == "a fox"
    assert request.params.num_inference_steps == 25  # dpmpp's own default: half of DEFAULT_STEPS
    assert parse_draw_args("a fox --sampler dpmpp --steps 40", LIMITS).params.num_inference_steps == 40
    assert parse_draw_args("a fox --sampler ddim", LIMITS).params.num_inference_steps == 50
    plain = parse_draw_args("a fox", LIMITS).params
    assert (plain.sampler, plain.num_inference_steps) == ("ddpm", 50)


def test_default_sampler_setting_applies_with_its_steps() -> None:
    limits = DrawLimits(768, 768, 50, 4.0, 1.0, 1024, 100, default_sampler="dpmpp")
    params = parse_draw_args("a fox", limits).params
    assert (params.sampler, params.num_inference_steps) == ("dpmpp", 25)
    params = parse_draw_args("a fox --sampler ddpm", limits).params
    assert (params.sampler, params.num_inference_steps) == ("ddpm", 50)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_unknown_sampler_lists_the_samplers(lang: str) -> None:
    with pytest.raises(DrawArgsError) as caught:
        parse_draw_args("a fox --sampler euler", LIMITS)
    message = text(lang, caught.value.key, **caught.value.params)
    assert "euler" in message and "ddpm, ddim, dpmpp" in message
    with pytest.raises(DrawArgsError, match="missing_value"):
        parse_draw_args("a fox --sampler", LIMITS)


def test_json_field_sampler() -> None:
    params = params_from_json({"prompt": "a fox", "sampler": "dpmpp"}, LIMITS)
    assert (params.sampler, params.num_inference_steps) == ("dpmpp", 25)
    params = params_from_json({"prompt": "a fox", "sampler": "ddim", "num_inference_steps": 30}, LIMITS)
    assert (params.sampler, params.num_inference_steps) == ("ddim", 30)
    assert params_from_json({"prompt": "a fox"}, LIMITS).sampler == "ddpm"
    with pytest.raises(DrawArgsError) as caught:
        params_from_json({"prompt": "a fox", "sampler": "unipc"}, LIMITS)
    assert caught.value.key == "sampler-unknown" and caught.value.params["available"] == "ddpm, ddim, dpmpp"
    with pytest.raises(DrawArgsError, match="bad_field"):
        params_from_json({"prompt": "a fox", "sampler": 2}, LIMITS)


def test_command_line_option(make_settings) -> None:
    from main import _BadDrawOptions, draw_request, parse_command_line

    settings = make_settings()  # DEFAULT_STEPS=4
    request = draw_request(settings, parse_command_line(["draw", "a fox", "--sampler", "dpmpp"]))
    assert (request.params.sampler, request.params.num_inference_steps) == ("dpmpp", 2)
    with pytest.raises(_BadDrawOptions, match="Available: ddpm, ddim, dpmpp"):
        draw_request(settings, parse_command_line(["draw", "a fox", "--sampler", "k_euler"]))


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_caption_names_the_sampler(lang: str) -> None:
    result = GenerationResult(b"", 768, 768, seed=5, seconds=1.2, batch_size=1)
    for name in SAMPLER_NAMES:
        shown = caption(params(name, seed=5), result, lang)
        assert re.search(rf"· (sampler|сэмплер) {name}$", shown.splitlines()[1]), shown


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_help_lists_the_samplers(make_settings, lang: str) -> None:
    shown = help_text(lang, make_settings(DEFAULT_STEPS="50", MAX_STEPS="100", DEFAULT_SAMPLER="dpmpp"), ["cpu"])
    assert all(f"<code>{name}</code>" in shown for name in SAMPLER_NAMES)
    assert "--sampler" in shown
    assert re.search(r"--steps N</code>: .*\b25\b", shown)  # the default sampler's own steps


async def test_bot_and_api_draw_with_the_named_sampler(telegram: FakeTelegram, make_settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port))):
        await telegram.send_text("/draw a red fox --sampler dpmpp --seed 4", user_id=41)
        [photo] = await telegram.wait_for("sendPhoto", chat_id=41)
        assert "seed 4" in photo.data["caption"] and "2 steps" in photo.data["caption"]  # DEFAULT_STEPS=4
        assert "sampler dpmpp" in photo.data["caption"]
        await telegram.send_text("/draw a red fox --sampler euler", user_id=42, lang="ru")
        [told] = await telegram.wait_for("sendMessage", chat_id=42)
        assert "Неизвестный сэмплер" in told.data["text"] and "ddpm, ddim, dpmpp" in told.data["text"]
        async with aiohttp.ClientSession() as http:
            body = {"prompt": "a red fox", "width": 64, "height": 64, "seed": 4, "sampler": "ddim"}
            for _ in range(600):  # the models load in the background
                async with http.post(f"{base}/generate", json=body) as response:
                    status, data = response.status, await response.read()
                if status != 503:
                    break
                await asyncio.sleep(0.1)
            assert status == 200 and png_image(data).size == (64, 64)
            async with http.post(f"{base}/generate", json={**body, "sampler": "euler"}) as response:
                assert response.status == 400 and "ddpm, ddim, dpmpp" in (await response.json())["error"]
