"""Build an engine from plain values (the bot passes its settings; a CLI could too)."""

from __future__ import annotations

from pathlib import Path

import torch

from generation.compile_cache import CompileCacheFile
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
    compile_in_background: bool = True,
    compile_cache_file: Path | None = None,
) -> GenerationEngine:
    """``compile_in_background``: serve eager at once and compile meanwhile (the bot);
    otherwise compile before serving. ``compile_cache_file``: torch's portable compile cache
    (generation.compile_cache), loaded before the first compile and saved after one."""
    devices = resolve_devices(device)
    cache = CompileCacheFile(compile_cache_file) if compile_cache_file is not None and compile != "off" else None

    def load(target: torch.device) -> KandinskyPipelines:
        if cache is not None:
            cache.load_once()
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
            )
        if target.type == "cuda" or pipes.compiled:
            # Kernels (and compiled graphs) get ready before the first user asks.
            pipes.prepare(*warm_up_size, background=compile_in_background)
        return pipes

    return GenerationEngine(
        devices,
        load,
        max_batch=max_batch,
        max_queue=max_queue,
        max_pending_per_user=max_pending_per_user,
        on_compiled=cache.save if cache is not None else None,
    )
