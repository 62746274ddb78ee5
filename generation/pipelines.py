"""Kandinsky 2.2 prior + decoder on one device, run in batches.

Every method here runs on the device's worker thread (see ``generation.worker``): a
diffusers pipeline is not thread-safe, so nothing else may call it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
from PIL import Image

from generation.params import GenerationParams

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "cudagraphs")
# Called after each decoder step with (steps done, steps in all).
StepCallback = Callable[[int, int], None]


@dataclass
class DrawnImage:
    image: Image.Image
    prompt_truncated: bool


class KandinskyPipelines:
    """The two diffusers pipelines of one device and the one way we call them."""

    def __init__(
        self,
        prior: KandinskyV22PriorPipeline,
        decoder: KandinskyV22Pipeline,
        device: torch.device,
        prior_steps: int = 25,
        compile: str = "off",
    ) -> None:
        self.prior = prior
        self.decoder = decoder
        self.device = device
        self.prior_steps = prior_steps
        _cache_zero_image_embedding(prior)
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
        if compile != "off":
            self._compile(cuda_graphs=compile == "cudagraphs" and device.type == "cuda")

    def _compile(self, cuda_graphs: bool) -> None:
        # The UNet runs once per decoder step and the MoVQ decoder once per picture. Mode
        # "default": on an H200 it took the UNet step from 31.6 to 19.9 ms at batch 1, warming
        # up in about 80 s; "max-autotune-no-cudagraphs" needed 17 minutes for batch 1 alone.
        # With CUDA graphs ("reduce-overhead") the launch-bound parts shrink further: UNet
        # step 15.9 ms and the prior 0.24 -> 0.085 s, one picture in 1.02 s instead of 1.34 s
        # (bench/results/2026-11-26-engine-v2). CUDA graphs belong to the thread that
        # recorded them: warm up on the worker thread that will draw (generation.factory).
        graphs = "reduce-overhead" if cuda_graphs else "default"
        self.decoder.unet = torch.compile(self.decoder.unet, mode=graphs)
        self.decoder.movq.decode = torch.compile(self.decoder.movq.decode)
        if cuda_graphs:
            self.prior.prior = torch.compile(self.prior.prior, mode=graphs)

    def warm_up(self, width: int, height: int, batch_sizes: Sequence[int] = (1,), steps: int = 2) -> None:
        """Draw throw-away pictures so CUDA kernels (and a compiled UNet) are ready before
        the first user asks. With two batch sizes torch.compile marks the batch dimension
        dynamic, so the sizes in between need no compilation either."""
        for size in dict.fromkeys(batch_sizes):
            self.draw([GenerationParams("warm-up", width, height, steps, 4.0, 1.0, seed=i) for i in range(size)])

    @classmethod
    def load(
        cls,
        prior_model: str,
        decoder_model: str,
        device: torch.device,
        dtype: torch.dtype,
        *,
        cpu_offload: bool = False,
        compile: str = "off",
        prior_steps: int = 25,
    ) -> KandinskyPipelines:
        """Load both pipelines with ``from_pretrained`` (a hub id or a local directory)."""
        log.info("loading %s and %s on %s as %s", prior_model, decoder_model, device, dtype)
        prior = KandinskyV22PriorPipeline.from_pretrained(prior_model, dtype=dtype)
        decoder = KandinskyV22Pipeline.from_pretrained(decoder_model, dtype=dtype)
        for pipe in (prior, decoder):
            pipe.set_progress_bar_config(disable=True)
            if cpu_offload and device.type == "cuda":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
        return cls(prior, decoder, device, prior_steps=prior_steps, compile=compile)

    def release(self) -> None:
        """Drop the models and give their memory back before loading others."""
        del self.prior, self.decoder
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def prompt_truncated(self, text: str | None) -> bool:
        """Whether the text encoder reads only part of ``text`` (CLIP reads 77 tokens)."""
        if not text:
            return False
        tokenizer = self.prior.tokenizer
        return len(tokenizer(text, truncation=False).input_ids) > tokenizer.model_max_length

    @torch.inference_mode()
    def draw(self, batch: Sequence[GenerationParams], on_step: StepCallback | None = None) -> list[DrawnImage]:
        """Draw one picture per request; all must share ``batch_key``.

        Each request gets its own generator, used first by the prior and then by the
        decoder, so a seed gives the same picture alone or inside a batch.
        """
        first = batch[0]
        if any(p.batch_key != first.batch_key for p in batch):
            raise ValueError("a batch must share size, steps and guidance")
        generators = [torch.Generator(self.device).manual_seed(p.seed) for p in batch]
        image_embeds, negative_embeds = self._prior_embeddings(batch, generators)

        def step_end(pipe, step: int, timestep, kwargs: dict) -> dict:
            if on_step is not None:
                on_step(step + 1, first.num_inference_steps)
            return kwargs

        images = self.decoder(
            image_embeds=image_embeds,
            negative_image_embeds=negative_embeds,
            height=first.height,
            width=first.width,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            generator=generators,
            callback_on_step_end=step_end,
        ).images
        return [
            DrawnImage(
                image,
                self.prompt_truncated(p.prompt) or self.prompt_truncated(p.negative_prompt),
            )
            for p, image in zip(batch, images, strict=True)
        ]

    def _prior_embeddings(
        self, batch: Sequence[GenerationParams], generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image embeddings for each request, in batch order.

        The prior pipeline takes a negative prompt for all of its prompts or for none,
        so requests with and without one run as two prior calls.
        """
        image_embeds: list[torch.Tensor | None] = [None] * len(batch)
        negative_embeds: list[torch.Tensor | None] = [None] * len(batch)
        for with_negative in (False, True):
            idx = [i for i, p in enumerate(batch) if bool(p.negative_prompt) == with_negative]
            if not idx:
                continue
            gens = [generators[i] for i in idx]
            out = self.prior(
                prompt=[batch[i].prompt for i in idx],
                negative_prompt=[batch[i].negative_prompt for i in idx] if with_negative else None,
                guidance_scale=batch[0].prior_guidance_scale,
                num_inference_steps=self.prior_steps,
                # With a negative prompt the prior draws the prompts and the negative
                # prompts as one batch: each request's generator serves both of its rows.
                generator=gens + gens if with_negative else gens,
                output_type="pt",
            )
            for row, i in enumerate(idx):
                image_embeds[i] = out.image_embeds[row : row + 1]
                negative_embeds[i] = out.negative_image_embeds[row : row + 1]
        return torch.cat(image_embeds), torch.cat(negative_embeds)  # type: ignore[arg-type]


def _cache_zero_image_embedding(prior: KandinskyV22PriorPipeline) -> None:
    """Compute the prior's negative embedding for "no negative prompt" once.

    Without a negative prompt diffusers runs the 1.8B-parameter image encoder on an
    all-zero image on every call; the result never changes for loaded weights.
    """
    compute = prior.get_zero_embed
    cache: dict[str, torch.Tensor] = {}

    def get_zero_embed(batch_size: int = 1, device: torch.device | None = None) -> torch.Tensor:
        key = str(device)
        if key not in cache:
            cache[key] = compute(1, device=device)
        return cache[key].repeat(batch_size, 1)

    prior.get_zero_embed = get_zero_embed
