"""Build an engine from plain values (the bot passes its settings; a CLI could too)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from generation.compile_cache import CacheFiller, CompileJob
from generation.devices import resolve_devices, resolve_dtype
from generation.engine import GenerationEngine
from generation.loading import LOADING
from generation.pipelines import KandinskyPipelines


def build_engine(
    *,
    prior_model: str,
    decoder_model: str,
    device: str = "auto",
    dtype: str = "auto",
    cpu_offload: bool = False,
    compile: str = "off",
    prior_steps: int = 25,
    warm_up_size: tuple[int, int] = (768, 768),
    max_batch: int = 8,
    max_queue: int = 100,
    max_pending_per_user: int = 3,
    compile_job: Callable[[str], CompileJob] | None = None,
) -> GenerationEngine:
    """``compile_job``: the background compile's job for a device
    (generation.composition.compile_job): serve uncompiled at once and compile in the
    background (generation.compile_cache); without it the models compile before serving
    (minutes with an empty compile cache)."""
    devices = resolve_devices(device)
    load = pipelines_loader(
        prior_model=prior_model,
        decoder_model=decoder_model,
        dtype=dtype,
        cpu_offload=cpu_offload,
        compile=compile,
        prior_steps=prior_steps,
        warm_up_size=warm_up_size,
        max_batch=max_batch,
        compile_later=compile_job is not None,
    )
    # One compile per GPU: the compile cache is per device index (generation.compile_cache).
    fillers = [CacheFiller(compile_job(str(target))) for target in devices] if compile_job is not None else []
    return GenerationEngine(
        devices,
        load,
        max_batch=max_batch,
        max_queue=max_queue,
        max_pending_per_user=max_pending_per_user,
        cache_fillers=fillers,
    )


def pipelines_loader(
    *,
    prior_model: str,
    decoder_model: str,
    dtype: str,
    cpu_offload: bool,
    compile: str,
    prior_steps: int,
    warm_up_size: tuple[int, int],
    max_batch: int,
    compile_later: bool,
) -> Callable[[torch.device], KandinskyPipelines]:
    """How the engine loads a device's pipelines (``compile_later``: compiled between
    batches once the compile cache is warm, generation.engine)."""

    def load(target: torch.device) -> KandinskyPipelines:
        with LOADING:  # never beside another from_pretrained (generation/loading.py)
            pipes = KandinskyPipelines.load(
                prior_model,
                decoder_model,
                target,
                resolve_dtype(dtype, target),
                cpu_offload=cpu_offload,
                compile=compile,
                prior_steps=prior_steps,
                max_batch=max_batch,
                compile_later=compile_later,
            )
        if target.type == "cuda" or pipes.compiled or pipes.compile_pending:
            # Kernels (and compiled graphs) get ready before the first user asks.
            pipes.prepare(*warm_up_size)
        return pipes

    return load
