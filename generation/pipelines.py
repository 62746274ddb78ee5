"""Kandinsky 2.2 prior + decoder on one device, run in batches.

Every method here runs on the device's worker thread (see ``generation.worker``): a
diffusers pipeline is not thread-safe, so nothing else may call it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from generation.clip_processor import drop_pil_fallback_note
from generation.compiled import CompiledByBatch
from generation.params import GenerationParams
from generation.schedulers import with_host_timesteps

drop_pil_fallback_note()  # before diffusers imports the prior, which looks the processor up
from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline  # noqa: E402

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "cudagraphs", "auto")
# Called after each decoder step with (steps done, steps in all).
StepCallback = Callable[[int, int], None]
# How many decoder steps the CPU may queue ahead of the GPU. Enough that the GPU never waits
# for Python between steps, few enough that "step k of N" tells what the GPU has done.
RUN_AHEAD_STEPS = 2


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
        max_batch: int = 8,
        cpu_offload: bool = False,
    ) -> None:
        self.prior = prior
        self.decoder = decoder
        self.device = device
        self.prior_steps = prior_steps
        self.max_batch = max_batch
        _cache_zero_image_embedding(prior)
        prior.scheduler = with_host_timesteps(prior.scheduler)
        decoder.scheduler = with_host_timesteps(decoder.scheduler)
        compile = _resolve_compile(compile, device, cpu_offload)
        # Compiled mode only: the compiled forms and the eager modules they wrap.
        self._unet: CompiledByBatch | None = None
        self._prior_model: CompiledByBatch | None = None
        self._movq_decode: Callable | None = None
        self._eager_unet: torch.nn.Module | None = None
        self._eager_prior: torch.nn.Module | None = None
        # Picture sizes drawn with the compiled decoder: those warmed up. Any other size runs
        # eager, since compiling it would stall every user's request for a minute or more.
        self._compiled_sizes: set[tuple[int, int]] = set()
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
        # A single request and a full batch run on static shapes, other batches on a dynamic
        # batch dimension (generation.compiled says why).
        graphs = "reduce-overhead" if cuda_graphs else "default"
        self._eager_unet, self._eager_prior = self.decoder.unet, self.prior.prior
        # The UNet is 90% of the work: full batches get static shapes too.
        self._unet = CompiledByBatch(self.decoder.unet, graphs, static_sizes=(1, self.max_batch))
        self.decoder.unet = self._unet.batched
        self._movq_decode = torch.compile(self.decoder.movq.decode)
        if cuda_graphs:
            self._prior_model = CompiledByBatch(self.prior.prior, graphs)
            self.prior.prior = self._prior_model.batched

    @property
    def compiled(self) -> bool:
        return self._unet is not None

    def drop_compiled(self) -> None:
        """Go back to the eager models (when compiling fails, or before release)."""
        if self._unet is None:
            return
        self.decoder.unet, self.prior.prior = self._eager_unet, self._eager_prior
        self._use_compiled_decode(False)
        self._unet = self._prior_model = self._movq_decode = None
        self._eager_unet = self._eager_prior = None
        self._compiled_sizes.clear()

    def _use_compiled_decode(self, compiled: bool) -> None:
        # The compiled decode is an instance attribute of the MoVQ; without it the class's
        # own method serves (an instance attribute holding the bound method would be a
        # reference cycle through the MoVQ).
        if compiled:
            self.decoder.movq.decode = self._movq_decode
        else:
            vars(self.decoder.movq).pop("decode", None)

    def prepare(self, width: int, height: int) -> None:
        """Warm up for serving. If the compiled graphs fail (no C compiler for Triton, a GPU
        Triton does not support, a PyTorch bug), draw without them: a slower bot beats one
        that draws nothing."""
        try:
            self.warm_up(width, height, batch_sizes=self.serving_batch_sizes())
        except Exception:
            if not self.compiled:
                raise
            log.exception("torch.compile failed on %s; drawing without it (COMPILE=false skips trying)", self.device)
            self.drop_compiled()
            self.warm_up(width, height, batch_sizes=self.serving_batch_sizes())

    def warm_up(self, width: int, height: int, batch_sizes: Sequence[int] = (1,), steps: int = 2) -> None:
        """Draw throw-away pictures so CUDA kernels (and compiled graphs) are ready before
        the first user asks (``serving_batch_sizes`` says which batch sizes that takes).
        Compiled pipelines use their compiled decoder only for the sizes warmed up."""
        self._compiled_sizes.add((width, height))
        for size in dict.fromkeys(batch_sizes):
            self.draw([GenerationParams("warm-up", width, height, steps, 4.0, 1.0, seed=i) for i in range(size)])

    def serving_batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes to warm up before serving. Compiled: a single request and a full
        batch (static graphs), and 2 for the graph of the sizes in between. Not compiled:
        one picture readies the kernels."""
        if self._unet is None:
            return (1,)
        return tuple(dict.fromkeys((1, min(2, self.max_batch), self.max_batch)))

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
        max_batch: int = 8,
    ) -> KandinskyPipelines:
        """Load both pipelines with ``from_pretrained`` (a hub id or a local directory).

        The weights go from the files straight to ``device`` (``device_map``), one tensor at
        a time. Loaded into host memory first, files in another precision than ``dtype``
        (float32 files loaded as float16) were converted there all at once: 9.6 GiB of host
        memory, more than the 8 GB docker-compose.yml gives; now 0.9 GiB
        (bench/results/2026-11-29-load-memory). With CPU offload they live in host memory.
        """
        log.info("loading %s and %s on %s as %s", prior_model, decoder_model, device, dtype)
        offload = cpu_offload and device.type == "cuda"
        placement: dict[str, str] = {} if offload else {"device_map": device.type}
        # diffusers takes "cuda", not "cuda:1": the index comes from the current device.
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            prior = KandinskyV22PriorPipeline.from_pretrained(prior_model, dtype=dtype, **placement)
            decoder = KandinskyV22Pipeline.from_pretrained(decoder_model, dtype=dtype, **placement)
        for pipe in (prior, decoder):
            pipe.set_progress_bar_config(disable=True)
            if offload:
                pipe.enable_model_cpu_offload(device=device)
            else:
                # Placed as a whole on one device: a plain pipeline there (diffusers refuses
                # .to() on a device-mapped one), and .to() only checks the placement.
                pipe.hf_device_map = None
                pipe.to(device)
        return cls(
            prior, decoder, device, prior_steps=prior_steps, compile=compile, max_batch=max_batch, cpu_offload=offload
        )

    def release(self) -> None:
        """Drop the models and give their memory back before loading others.

        Compiled, the old models stay reachable through the eager copies kept beside the
        compiled forms, the compiled forms themselves and Dynamo's caches of compiled code:
        all of them go, and Dynamo is reset (for every pipeline of the process: the engine
        releases all devices before loading any, see ``GenerationEngine.reload``).
        """
        compiled = self.compiled
        self.drop_compiled()
        # The cached zero embedding is a closure on the prior: a cycle through it.
        vars(self.prior).pop("get_zero_embed", None)
        del self.prior, self.decoder
        if compiled:
            torch._dynamo.reset()
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
        reporter = _StepReporter(self.device, first.num_inference_steps, on_step)

        def step_end(pipe, step: int, timestep, kwargs: dict) -> dict:
            self._step_queued(step + 1)
            reporter.queued(step + 1)
            return kwargs

        if self._unet is not None:
            compiled = (first.width, first.height) in self._compiled_sizes
            self.decoder.unet = self._unet.for_requests(len(batch)) if compiled else self._eager_unet
            self._use_compiled_decode(compiled)
        decoded = self.decoder(
            image_embeds=image_embeds,
            negative_image_embeds=negative_embeds,
            height=first.height,
            width=first.width,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="pt",
        ).images
        images = _to_pil(decoded)
        reporter.finish()
        return [
            DrawnImage(
                image,
                self.prompt_truncated(p.prompt) or self.prompt_truncated(p.negative_prompt),
            )
            for p, image in zip(batch, images, strict=True)
        ]

    def _step_queued(self, step: int) -> None:
        """Called when the work of decoder step ``step`` has been queued (the benchmark times it)."""

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
            if self._prior_model is not None:
                self.prior.prior = self._prior_model.for_requests(len(idx))
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


def _resolve_compile(compile: str, device: torch.device, cpu_offload: bool) -> str:
    """The compile mode to use: ``auto`` becomes CUDA graphs on a GPU, where compiled graphs
    halve the time per picture (2.0 -> 0.87 s on an H200), and nothing on the CPU (no CUDA
    graphs, only the compile time to pay) or with CPU offload (which moves the weights on
    every call, so CUDA graphs cannot hold them)."""
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
    if compile != "auto":
        return compile
    return "cudagraphs" if device.type == "cuda" and not cpu_offload else "off"


class _StepReporter:
    """Tells ``on_step`` about decoder steps once the device has done them.

    Without host-device waits in the loop (generation.schedulers) the CPU would queue all
    steps at once and report them long before the GPU is through; instead it stays
    ``RUN_AHEAD_STEPS`` ahead, which still keeps the GPU fed.
    """

    def __init__(self, device: torch.device, total: int, on_step: StepCallback | None) -> None:
        self._device = device
        self._total = total
        self._on_step = on_step
        self._pending: deque[tuple[int, torch.cuda.Event]] = deque()

    def queued(self, step: int) -> None:
        if self._device.type != "cuda":
            self._report(step)  # CPU work is done when it returns
            return
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self._device))
        self._pending.append((step, event))
        while len(self._pending) > RUN_AHEAD_STEPS:
            done, oldest = self._pending.popleft()
            oldest.synchronize()
            self._report(done)

    def finish(self) -> None:
        """Report the steps still pending; call once the results are on the host."""
        while self._pending:
            self._report(self._pending.popleft()[0])

    def _report(self, step: int) -> None:
        if self._on_step is not None:
            self._on_step(step, self._total)


def _to_pil(images: torch.Tensor) -> list[Image.Image]:
    """diffusers' ``output_type="pil"`` from its ``"pt"`` output, computed on the device.

    The same operations in the same precision as diffusers' post-processing, so the same
    pixels, but only 8-bit pixels cross to the host and the float work runs on the GPU
    (on the CPU it took about 12 ms per 768x768 picture).
    """
    images = (images * 0.5 + 0.5).clamp(0, 1)
    images = (images.float() * 255).round().to(torch.uint8)
    return [Image.fromarray(array) for array in images.permute(0, 2, 3, 1).cpu().numpy()]


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
