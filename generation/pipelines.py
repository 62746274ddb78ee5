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
from generation.compiled import CompiledByBatch, compile_module, ready_thread_for_cuda_graphs
from generation.images import open_image
from generation.params import GenerationParams
from generation.schedulers import decoder_scheduler, with_host_timesteps

drop_pil_fallback_note()  # before diffusers imports the prior, which looks the processor up
from diffusers import (  # noqa: E402
    KandinskyV22Img2ImgPipeline,
    KandinskyV22Pipeline,
    KandinskyV22PriorPipeline,
)

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "cudagraphs", "auto")
# Called after each decoder step with (steps done, steps in all).
StepCallback = Callable[[int, int], None]
# The pictures of one request (GenerationParams.mix and init_image index them): PIL images,
# or the bytes of an image file, decoded here.
Pictures = Sequence["Image.Image | bytes"]
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
        compile_later: bool = False,
    ) -> None:
        """``compile_later``: draw eager until ``begin_compile`` and ``warm_up_compiled``
        (called between batches, once a compile cache is warm: generation.engine)."""
        self.prior = prior
        self.decoder = decoder
        self.device = device
        self.prior_steps = prior_steps
        self.max_batch = max_batch
        _cache_zero_image_embedding(prior)
        prior.scheduler = with_host_timesteps(prior.scheduler)
        # One scheduler per sampler, made on first use from the decoder's own config.
        self._decoder_config = decoder.scheduler.config
        self._schedulers: dict[str, object] = {}
        decoder.scheduler = self._scheduler("ddpm")
        # img2img on the decoder's own modules: no second copy of the weights. Its UNet,
        # scheduler and MoVQ decode are set from the decoder's before each call.
        self.img2img = KandinskyV22Img2ImgPipeline(unet=decoder.unet, scheduler=decoder.scheduler, movq=decoder.movq)
        self.img2img.set_progress_bar_config(disable=True)
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
        # Compiled prior only: the input row counts it was compiled for (see _compile).
        self._prior_shapes: tuple[int, ...] = ()
        # This draw's prior runs eager although compiled forms exist (set by draw: a batch
        # size not warmed up yet while compiling in steps).
        self._prior_eager_now = False
        # The size prepare() warmed up for; the compiled forms are warmed up for it too.
        self._prepared_size: tuple[int, int] | None = None
        # Compiling later: the mode. Compiling in steps (begin_compile): the batch sizes
        # warmed up so far, whose compiled forms draw already; None once all are.
        self._later: str | None = None
        self._warm_batches: set[int] | None = None
        self._warming: int | None = None  # the batch size warm_up_compiled is warming up
        if compile != "off":
            if compile_later:
                self._later = compile
            else:
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
        if cuda_graphs:
            ready_thread_for_cuda_graphs()  # this is the worker thread that will draw
        self._eager_unet, self._eager_prior = self.decoder.unet, self.prior.prior
        # The UNet is 90% of the work: full batches get static shapes too.
        self._unet = CompiledByBatch(self.decoder.unet, graphs, static_sizes=(1, self.max_batch))
        self.decoder.unet = self._unet.batched
        self._movq_decode = compile_module(self.decoder.movq.decode)
        if cuda_graphs:
            self._prior_model = CompiledByBatch(self.prior.prior, graphs)
            self.prior.prior = self._prior_model.batched
            # The prior's batch dimension does not stay dynamic: each new row count
            # compiled again, about 30 s, the first time a batch of mixed kinds gave the
            # prior 4 or 5 rows (bench/results/2026-11-29-pictures). Its calls are padded
            # to the row counts warm-up compiled instead (_prior_calls).
            self._prior_shapes = self.serving_batch_sizes()

    @property
    def compiled(self) -> bool:
        """Compiled forms exist (maybe still warming up in steps, see ``serving_compiled``)."""
        return self._unet is not None

    @property
    def serving_compiled(self) -> bool:
        """Every batch size draws with the compiled forms."""
        return self._unet is not None and self._warm_batches is None

    @property
    def compile_pending(self) -> bool:
        """Made with ``compile_later`` and not compiled yet."""
        return self._later is not None

    def begin_compile(self) -> tuple[int, ...]:
        """Make the compiled forms (cheap: torch.compile compiles on first call) and return
        the batch sizes to pass to ``warm_up_compiled``, one call each. Until a size is
        warmed up, its batches draw eager: each call compiles and records CUDA graphs for
        seconds with a warm compile cache (or minutes with a cold one), so calling it
        between batches keeps users' pictures coming. Run it on the worker thread that
        draws: CUDA graphs are recorded on the thread that replays them."""
        if self._later is None:
            raise RuntimeError("nothing to compile")
        # In this order: the event loop reads compile_pending and forms_to_compile meanwhile
        # (EngineStatus.compiling), and must never see both say "nothing left".
        self._warm_batches = set()
        self._compile(cuda_graphs=self._later == "cudagraphs" and self.device.type == "cuda")
        self._later = None
        return self.serving_batch_sizes()

    def warm_up_compiled(self, batch_size: int) -> bool:
        """Warm up one batch size's compiled forms at the prepared size; the last one puts
        every batch size on them. False when that size was warm already. Raises what
        compiling raised (``drop_compiled`` then)."""
        if self._warm_batches is None or self._prepared_size is None:
            raise RuntimeError("prepare and begin_compile first")
        if batch_size in self._warm_batches:
            return False
        width, height = self._prepared_size
        self._warming = batch_size  # its warm-up draws with the compiled forms
        try:
            self.warm_up(width, height, batch_sizes=(batch_size,))
        finally:
            self._warming = None
        self._warm_batches.add(batch_size)
        if self._warm_batches.issuperset(self.serving_batch_sizes()):
            self._warm_batches = None
        return True

    def forms_to_compile(self) -> tuple[int, ...]:
        """While compiling in steps: the batch sizes still to pass to ``warm_up_compiled``."""
        if self._warm_batches is None:
            return ()
        return tuple(size for size in self.serving_batch_sizes() if size not in self._warm_batches)

    def form_to_compile(self, count: int) -> int | None:
        """While compiling in steps: the batch size to pass to ``warm_up_compiled`` for a
        batch of ``count`` requests to draw compiled, or None when it does already."""
        if self._unet is None or self._warm_batches is None or self.compiled_for(count):
            return None
        static = set(self._unet.static)
        if count in static:
            return count
        return next((size for size in self.forms_to_compile() if size not in static), None)

    def compiled_for(self, count: int) -> bool:
        """Whether a batch of ``count`` requests uses the compiled forms (while compiling in
        steps: only a batch size warmed up, or one that shares the dynamic form with one)."""
        if self._unet is None:
            return False
        if self._warm_batches is None:
            return True
        static, warm = set(self._unet.static), self._warm_batches | {self._warming}
        if count in static:
            return count in warm
        return any(size not in static for size in warm if size is not None)  # the dynamic form warm

    def drop_compiled(self) -> None:
        """Go back to the eager models (when compiling fails, or before release)."""
        self._later = None
        self._warm_batches = None  # nothing left to compile
        if self._unet is None:
            return
        self.decoder.unet, self.prior.prior = self._eager_unet, self._eager_prior
        self._use_compiled_decode(False)
        self._unet = self._prior_model = self._movq_decode = None
        self._eager_unet = self._eager_prior = None
        self._compiled_sizes.clear()
        self._prior_shapes = ()
        self._warm_batches = None

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
        self._prepared_size = (width, height)
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
        compile_later: bool = False,
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
            prior,
            decoder,
            device,
            prior_steps=prior_steps,
            compile=compile,
            max_batch=max_batch,
            cpu_offload=offload,
            compile_later=compile_later,
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
        del self.prior, self.decoder, self.img2img
        self._schedulers.clear()
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

    def _scheduler(self, sampler: str):
        if sampler not in self._schedulers:
            self._schedulers[sampler] = decoder_scheduler(sampler, self._decoder_config)
        return self._schedulers[sampler]

    @torch.inference_mode()
    def draw(
        self,
        batch: Sequence[GenerationParams],
        on_step: StepCallback | None = None,
        pictures: Sequence[Pictures] | None = None,
    ) -> list[DrawnImage]:
        """Draw one picture per request; all must share ``batch_key``. ``pictures[i]``
        holds the pictures request i names (its mix parts and starting picture).

        Each request gets its own generator, seeded with its seed, so a seed gives the
        same picture alone or inside a batch: a text or img2img request uses it first in
        the prior and then in the decoder (the old service's two calls); a variation or mix
        uses it in the prior (``interpolate``) and a second one, seeded alike, in the decoder.
        """
        first = batch[0]
        if any(p.batch_key != first.batch_key for p in batch):
            raise ValueError("a batch must share size, steps, guidance, sampler and strength")
        inputs = [[_as_image(x) for x in (pictures[i] if pictures else ())] for i in range(len(batch))]
        for params, own in zip(batch, inputs, strict=True):
            if params.image_count > len(own):
                raise ValueError(f"the request names {params.image_count} pictures, {len(own)} given")
        prior_generators = [torch.Generator(self.device).manual_seed(p.seed) for p in batch]
        generators = [
            torch.Generator(self.device).manual_seed(p.seed) if p.mix else g
            for p, g in zip(batch, prior_generators, strict=True)
        ]
        self._prior_eager_now = self._unet is not None and not self.compiled_for(len(batch))
        image_embeds, negative_embeds = self._embeddings(batch, inputs, prior_generators)
        reporter = _StepReporter(self.device, decoder_steps(first), on_step)

        def step_end(pipe, step: int, timestep, kwargs: dict) -> dict:
            self._step_queued(step + 1)
            reporter.queued(step + 1)
            return kwargs

        if self._unet is not None:
            compiled = (first.width, first.height) in self._compiled_sizes and self.compiled_for(len(batch))
            self.decoder.unet = self._unet.for_requests(len(batch)) if compiled else self._eager_unet
            self._use_compiled_decode(compiled)
        self.decoder.scheduler = self._scheduler(first.sampler)
        call = dict(
            image_embeds=image_embeds,
            negative_image_embeds=negative_embeds,
            height=first.height,
            width=first.width,
            num_inference_steps=first.num_inference_steps,
            guidance_scale=first.guidance_scale,
            generator=generators,
            callback_on_step_end=step_end,
            output_type="pt",
        )
        if first.init_image is None:
            decoded = self.decoder(**call).images
        else:
            self.img2img.unet, self.img2img.scheduler = self.decoder.unet, self.decoder.scheduler
            starts = [own[p.init_image] for p, own in zip(batch, inputs, strict=True)]
            # diffusers' img2img resizes the start with width and height swapped
            # (``preprocess(i, width, height)``; preprocess takes height first), and the
            # picture takes the start's size: swapped here, the sizes come out right.
            call.update(width=first.height, height=first.width)
            decoded = self.img2img(image=starts, strength=first.strength, **call).images
            # Its "pt" output is already in [0, 1] (VaeImageProcessor.postprocess).
        images = _to_pil(decoded, denormalized=first.init_image is not None)
        reporter.finish()
        return [
            DrawnImage(image, any(self.prompt_truncated(t) for t in _texts(p)))
            for p, image in zip(batch, images, strict=True)
        ]

    def _step_queued(self, step: int) -> None:
        """Called when the work of decoder step ``step`` has been queued (the benchmark times it)."""

    def _embeddings(
        self,
        batch: Sequence[GenerationParams],
        pictures: Sequence[Sequence[Image.Image]],
        generators: list[torch.Generator],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's image and negative image embeddings for each request, in batch order.

        Text and img2img requests: the prior on the prompt. Mixes: what diffusers'
        ``KandinskyV22PriorPipeline.interpolate`` computes (weighted sum of each text's
        prior embedding and each picture's CLIP image embedding; the negative embedding is
        the zero-image one, or with a negative prompt the prior's drawing of it), with the
        prior calls of all requests batched: round k runs every request's k-th text, so
        each request's generator is used in the order ``interpolate`` uses it.
        """
        n = len(batch)
        image_embeds: list[torch.Tensor | None] = [None] * n
        negative_embeds: list[torch.Tensor | None] = [None] * n
        # Per request, the prior runs it needs in order: (prompt, negative prompt).
        runs: list[list[tuple[str, str | None]]] = []
        for p in batch:
            negative = p.drawn_negative  # with its style's (--style), as the prompt
            if not p.mix:
                runs.append([(p.drawn_prompt, negative)])
            else:
                texts = [(part.text or "", negative) for part in p.mix if part.text is not None]
                # interpolate's last call ("" against the negative prompt) gives the
                # negative embedding; without a negative prompt that is the zero embedding.
                runs.append(texts + ([("", negative)] if negative else []))
        drawn: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(n)]
        for round_ in range(max((len(r) for r in runs), default=0)):
            idx = [i for i in range(n) if len(runs[i]) > round_]
            outs = self._prior_rows(
                [runs[i][round_] for i in idx], [generators[i] for i in idx], batch[0].prior_guidance_scale
            )
            for i, out in zip(idx, outs, strict=True):
                drawn[i].append(out)
        # Every picture of the batch through the image encoder in one call.
        wanted = [(i, part.image) for i, p in enumerate(batch) for part in p.mix if part.image is not None]
        encoded = self._picture_embeddings([pictures[i][k] for i, k in wanted])
        picture_embeds = {key: encoded[row : row + 1] for row, key in enumerate(wanted)}
        for i, p in enumerate(batch):
            if not p.mix:
                image_embeds[i], negative_embeds[i] = drawn[i][0]
                continue
            texts = iter(drawn[i])
            parts = []
            for part in p.mix:
                embedding = next(texts)[0] if part.text is not None else picture_embeds[(i, part.image)]
                parts.append(embedding.unsqueeze(0) * part.weight)
            image_embeds[i] = torch.cat(parts).sum(dim=0)
            if p.drawn_negative:
                negative_embeds[i] = drawn[i][-1][1]
            else:
                negative_embeds[i] = self.prior.get_zero_embed(1, device=self.device).to(image_embeds[i].dtype)
        return torch.cat(image_embeds), torch.cat(negative_embeds)  # type: ignore[arg-type]

    def _prior_rows(
        self, rows: Sequence[tuple[str, str | None]], generators: Sequence[torch.Generator], guidance: float
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The prior's (image, negative image) embedding for each (prompt, negative prompt).

        The prior pipeline takes a negative prompt for all of its prompts or for none,
        so rows with and without one run as two prior calls.
        """
        out_rows: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(rows)
        for with_negative in (False, True):
            same = [i for i, (_, negative) in enumerate(rows) if bool(negative) == with_negative]
            # Rows the prior model sees per prompt: the negative prompts join the prompts,
            # and guidance doubles them again (diffusers' prior pipeline).
            factor = (2 if with_negative else 1) * (2 if guidance > 1.0 else 1)
            for idx, padding in self._prior_calls(same, factor):
                gens = [generators[i] for i in idx]
                prompts = [rows[i][0] for i in idx]
                negatives = [rows[i][1] for i in idx]
                # Padding rows repeat the first row with generators of their own: the
                # rows of a batch never mix, so the real rows draw what they would alone.
                gens += [torch.Generator(self.device).manual_seed(0) for _ in range(padding)]
                prompts += prompts[:1] * padding
                negatives += negatives[:1] * padding
                if self._prior_model is not None:
                    eager = self._prior_eager_now
                    self.prior.prior = self._eager_prior if eager else self._prior_model.for_requests(len(prompts))
                out = self.prior(
                    prompt=prompts,
                    negative_prompt=negatives if with_negative else None,
                    guidance_scale=guidance,
                    num_inference_steps=self.prior_steps,
                    # With a negative prompt the prior draws the prompts and the negative
                    # prompts as one batch: each request's generator serves both of its rows.
                    generator=gens + gens if with_negative else gens,
                    output_type="pt",
                )
                for row, i in enumerate(idx):
                    out_rows[i] = (out.image_embeds[row : row + 1], out.negative_image_embeds[row : row + 1])
        return out_rows  # type: ignore[return-value]

    def _prior_calls(self, rows: list[int], factor: int) -> list[tuple[list[int], int]]:
        """The prior calls that draw ``rows``: (the rows of a call, padding rows to add).

        Compiled, each call's model batch (rows x ``factor``) is one warm-up compiled:
        rows are split into calls of at most the largest that fits and padded up to the
        next that fits. Otherwise one call of all rows, unpadded.
        """
        if not rows:
            return []
        shapes = () if self._prior_eager_now else self._prior_shapes
        fits = sorted(shape // factor for shape in shapes if shape % factor == 0)
        if not fits:
            return [(rows, 0)]
        calls = []
        for start in range(0, len(rows), fits[-1]):
            chunk = rows[start : start + fits[-1]]
            calls.append((chunk, next(f for f in fits if f >= len(chunk)) - len(chunk)))
        return calls

    def _picture_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The pictures' CLIP image embeddings, as ``interpolate`` computes each (one row
        per picture), in one encoder call."""
        if not images:
            return torch.empty(0)
        pixels = torch.cat(
            [self.prior.image_processor(image, return_tensors="pt").pixel_values[0].unsqueeze(0) for image in images]
        )
        encoder = self.prior.image_encoder
        return encoder(pixels.to(dtype=encoder.dtype, device=self.device))["image_embeds"]


def decoder_steps(params: GenerationParams) -> int:
    """The decoder steps a request runs: img2img skips the first (1 - strength) of them
    (diffusers' ``get_timesteps``)."""
    steps = params.num_inference_steps
    if params.init_image is None:
        return steps
    return min(int(steps * params.strength), steps)


def _texts(params: GenerationParams) -> list[str | None]:
    return [params.drawn_prompt, params.drawn_negative, *(part.text for part in params.mix)]


def _as_image(picture: Image.Image | bytes) -> Image.Image:
    return open_image(picture) if isinstance(picture, bytes | bytearray) else picture


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


def _to_pil(images: torch.Tensor, denormalized: bool = False) -> list[Image.Image]:
    """diffusers' ``output_type="pil"`` from its ``"pt"`` output, computed on the device.

    The same operations in the same precision as diffusers' post-processing, so the same
    pixels, but only 8-bit pixels cross to the host and the float work runs on the GPU
    (on the CPU it took about 12 ms per 768x768 picture).
    """
    if not denormalized:  # img2img's output is in [0, 1] already
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
