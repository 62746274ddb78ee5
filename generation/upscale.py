"""Upscale 2x: a picture enlarged with Lanczos, then refined by Kandinsky img2img at a
low strength on the decoder already loaded (no extra model). Used alike by the
"Upscale 2x" button, POST /upscale and ``python main.py upscale``.

Torch-free: the enlarged starting picture is made off the event loop by the caller
(``asyncio.to_thread``), and the request then goes through the engine's queue like any.
"""

from __future__ import annotations

import io

from PIL import Image

from generation.images import TILE, open_image
from generation.params import GenerationParams, MixPart

FACTOR = 2


def upscale_size(width: int, height: int, max_side: int) -> tuple[int, int] | None:
    """Twice each side, the longer one at most ``max_side`` (the aspect ratio kept), each
    a multiple of 64; None when that is no larger than the picture already is."""
    top = max(TILE, max_side // TILE * TILE)
    scale = min(float(FACTOR), top / max(width, height))
    size = tuple(int(min(top, max(TILE, round(side * scale / TILE) * TILE))) for side in (width, height))
    if size[0] <= width and size[1] <= height:
        return None
    return size[0], size[1]


def enlarge(data: bytes, size: tuple[int, int]) -> bytes:
    """The picture in ``data`` resized with Lanczos to ``size``, as a PNG: the start of
    the img2img. Raises generation.images.BadImage."""
    image = open_image(data).resize(size, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # read once by the worker: speed over size
    return out.getvalue()


def upscale_params(
    size: tuple[int, int],
    *,
    prompt: str,
    steps: int,
    guidance: float,
    prior_guidance: float,
    strength: float,
    seed: int,
    negative_prompt: str | None = None,
    sampler: str = "ddpm",
) -> GenerationParams:
    """An img2img of the request's picture 0 (the enlarged one) at ``size``, steered by
    that picture's own CLIP embedding, so it refines what is there whatever drew it (a
    text, a variation, an upload with no text). ``prompt`` only names it in captions.
    Steps are raised where ``steps * strength`` would run no decoder step."""
    while int(steps * strength) < 1:
        steps += 1
    return GenerationParams(
        prompt=prompt,
        width=size[0],
        height=size[1],
        num_inference_steps=steps,
        guidance_scale=guidance,
        prior_guidance_scale=prior_guidance,
        seed=seed,
        negative_prompt=negative_prompt,
        sampler=sampler,
        mix=(MixPart(1.0, image=0),),
        init_image=0,
        strength=strength,
    )
