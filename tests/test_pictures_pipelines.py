"""Pictures from pictures (img2img, variations, mixes) draw what diffusers' own
pipelines draw for the same inputs and seed, alone and inside a batch of other kinds."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import KandinskyV22Img2ImgPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline
from PIL import Image

from generation import GenerationParams
from generation.images import BadImage
from generation.params import MixPart
from generation.pipelines import KandinskyPipelines, decoder_steps
from generation.worker import DeviceWorker

CPU = torch.device("cpu")
PRIOR_STEPS = 3


@pytest.fixture(scope="module")
def ours(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    prior, decoder = tiny_models
    return KandinskyPipelines.load(str(prior), str(decoder), CPU, torch.float32, prior_steps=PRIOR_STEPS)


@pytest.fixture(scope="module")
def reference(tiny_models: tuple[Path, Path]):
    prior, decoder = tiny_models
    return (
        KandinskyV22PriorPipeline.from_pretrained(prior),
        KandinskyV22Pipeline.from_pretrained(decoder),
        KandinskyV22Img2ImgPipeline.from_pretrained(decoder),
    )


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def photo(seed: int, size=(96, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def params(prompt="a fox", **fields) -> GenerationParams:
    base = dict(width=64, height=64, num_inference_steps=4, guidance_scale=4.0, prior_guidance_scale=1.0, seed=7)
    base.update(fields)
    return GenerationParams(prompt, **base)


def reference_img2img(reference, p: GenerationParams, start: Image.Image) -> np.ndarray:
    prior, _, img2img = reference
    generator = torch.Generator().manual_seed(p.seed)
    embeds, negative = prior(
        p.prompt,
        negative_prompt=p.negative_prompt,
        guidance_scale=p.prior_guidance_scale,
        num_inference_steps=PRIOR_STEPS,
        generator=generator,
    ).to_tuple()
    image = img2img(
        image=start,
        image_embeds=embeds,
        negative_image_embeds=negative,
        strength=p.strength,
        # diffusers resizes the start to (width, height) swapped: asked this way, it draws
        # p.width x p.height (what generation.pipelines does too).
        width=p.height,
        height=p.width,
        num_inference_steps=p.num_inference_steps,
        guidance_scale=p.guidance_scale,
        generator=generator,
    ).images[0]
    return pixels(image)


def reference_mix(reference, p: GenerationParams, pictures: list[Image.Image]) -> np.ndarray:
    prior, decoder, _ = reference
    items = [part.text if part.text is not None else pictures[part.image] for part in p.mix]
    embeds, negative = prior.interpolate(
        items,
        [part.weight for part in p.mix],
        num_inference_steps=PRIOR_STEPS,
        generator=torch.Generator().manual_seed(p.seed),
        negative_prior_prompt=p.negative_prompt,
        guidance_scale=p.prior_guidance_scale,
    ).to_tuple()
    image = decoder(
        image_embeds=embeds,
        negative_image_embeds=negative,
        width=p.width,
        height=p.height,
        num_inference_steps=p.num_inference_steps,
        guidance_scale=p.guidance_scale,
        generator=torch.Generator().manual_seed(p.seed),
    ).images[0]
    return pixels(image)


@pytest.mark.parametrize("strength", [0.5, 1.0])
@pytest.mark.parametrize("negative", [None, "blurry"])
def test_img2img_same_as_diffusers(ours, reference, strength, negative) -> None:
    start = photo(1)
    p = params(init_image=0, strength=strength, negative_prompt=negative, width=128)
    [drawn] = ours.draw([p], pictures=[[png(start)]])
    assert drawn.image.size == (128, 64)
    assert np.array_equal(pixels(drawn.image), reference_img2img(reference, p, start))


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_mix_same_as_diffusers_interpolate(ours, reference, negative) -> None:
    pictures = [photo(2), photo(3, (64, 128))]
    mix = (MixPart(0.3, image=0), MixPart(0.5, text="in winter"), MixPart(0.2, image=1))
    p = params(prompt="in winter", mix=mix, negative_prompt=negative)
    [drawn] = ours.draw([p], pictures=[pictures])
    # The image encoder reads both pictures in one call (interpolate: one at a time), and
    # batched matrix products round differently: allow one level of 255.
    assert np.abs(pixels(drawn.image) - reference_mix(reference, p, pictures)).max() <= 1


def test_variation_same_as_diffusers(ours, reference) -> None:
    picture = photo(4)
    p = params(prompt="", mix=(MixPart(1.0, image=0),))
    assert p.kind == "variation"
    [drawn] = ours.draw([p], pictures=[[picture]])
    assert np.array_equal(pixels(drawn.image), reference_mix(reference, p, [picture]))


def test_each_kind_keeps_its_picture_inside_a_mixed_batch(ours) -> None:
    text = params("a red fox", seed=1)
    variation = params("", seed=2, mix=(MixPart(1.0, image=0),))
    mix = params("x", seed=3, mix=(MixPart(0.5, text="two cats"), MixPart(0.5, image=0)), negative_prompt="blur")
    two_texts = params("y", seed=4, mix=(MixPart(0.5, text="sea"), MixPart(0.5, text="forest")))
    batch = [text, variation, mix, two_texts]
    assert len({p.batch_key for p in batch}) == 1  # they share one decoder call
    pictures = [[], [photo(5)], [photo(6)], []]
    together = ours.draw(batch, pictures=pictures)
    for p, own, drawn in zip(batch, pictures, together, strict=True):
        [alone] = ours.draw([p], pictures=[own])
        # Batched matrix products round differently: allow one level of 255.
        assert np.abs(pixels(drawn.image) - pixels(alone.image)).max() <= 1, p.kind


def test_img2img_batch_keeps_each_picture(ours) -> None:
    a = params("fox", seed=1, init_image=0, strength=0.5)
    b = params("owl", seed=2, init_image=0, strength=0.5, negative_prompt="dark")
    together = ours.draw([a, b], pictures=[[photo(7)], [photo(8, (200, 100))]])
    [alone] = ours.draw([b], pictures=[[photo(8, (200, 100))]])
    assert np.abs(pixels(together[1].image) - pixels(alone.image)).max() <= 1


def test_img2img_only_batches_with_its_own_strength() -> None:
    assert params(init_image=0, strength=0.5).batch_key != params(init_image=0, strength=0.6).batch_key
    assert params(init_image=0, strength=0.5).batch_key != params().batch_key
    assert params(mix=(MixPart(1.0, image=0),)).batch_key == params().batch_key


def test_img2img_reports_the_steps_it_runs(ours) -> None:
    steps: list[tuple[int, int]] = []
    p = params(init_image=0, strength=0.5, num_inference_steps=6)
    assert decoder_steps(p) == 3
    ours.draw([p], on_step=lambda d, t: steps.append((d, t)), pictures=[[photo(9)]])
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_unreadable_picture_fails_only_its_request(ours) -> None:
    worker = DeviceWorker(CPU)
    worker._pipes = ours  # the worker's own draw path, with pipelines already loaded
    try:
        good = params("fox", seed=1, mix=(MixPart(1.0, image=0),))
        bad = params("owl", seed=2, mix=(MixPart(1.0, image=0),))
        results = worker._draw([good, bad], lambda d, t: None, [[png(photo(1))], [b"not a picture"]])
    finally:
        worker._pipes = None
        worker.shutdown()
    assert results[0].image.size == (64, 64)
    assert isinstance(results[1], BadImage) and results[1].reason == "not_image"


def test_request_must_bring_the_pictures_it_names(ours) -> None:
    with pytest.raises(ValueError, match="pictures"):
        ours.draw([params(init_image=0)], pictures=[[]])


def test_compiled_prior_calls_are_padded_to_the_row_counts_warm_up_compiled(ours) -> None:
    """A compiled prior recompiled (about 30 s on an H200) for each row count warm-up had
    not drawn; its calls are split and padded to those row counts instead."""
    seen: list[int] = []
    hook = ours.prior.prior.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).shape[0]),
        with_kwargs=True,
    )
    plain = [params(f"fox {i}", seed=i) for i in range(3)]
    negative = [params(f"owl {i}", seed=10 + i, negative_prompt="dark") for i in range(5)]
    try:
        unpadded = ours.draw(plain + negative)
        assert sorted(set(seen)) == [3, 10]  # the prior's own row counts
        seen.clear()
        ours._prior_shapes = (1, 2, 8)  # what a compiled prior warmed up with MAX_BATCH=8 sees
        padded = ours.draw(plain + negative)
    finally:
        ours._prior_shapes = ()
        hook.remove()
    # 3 rows -> 8; 5 rows with negative prompts (2 model rows each) -> 4 + 1 -> 8 and 2.
    assert set(seen) == {8, 2}
    for a, b in zip(unpadded, padded, strict=True):
        assert np.abs(pixels(a.image) - pixels(b.image)).max() <= 1
