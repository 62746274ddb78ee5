"""Each decoder sampler draws what diffusers' own Kandinsky 2.2 pipelines draw with that
scheduler (``<Scheduler>.from_config(decoder.scheduler.config)``), alone, inside a batch
and from a picture (img2img); requests of different samplers never share a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    KandinskyV22Img2ImgPipeline,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
)
from PIL import Image

from generation import GenerationParams
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
