"""Build an engine from plain values (the bot passes its settings; a CLI could too)."""

from __future__ import annotations

import torch

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
) -> GenerationEngine:
    devices = resolve_devices(device)

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
            )
        if target.type == "cuda" or pipes.compiled:
            # Kernels (and compiled graphs) get ready before the first user asks.
            pipes.prepare(*warm_up_size)
        return pipes

    return GenerationEngine(
        devices,
        load,
        max_batch=max_batch,
        max_queue=max_queue,
        max_pending_per_user=max_pending_per_user,
    )
