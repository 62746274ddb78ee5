"""Mode "multi": the production path, with the bot's defaults.

The engine built as generation/factory.py builds it: COMPILE (default "auto", as the bot:
CUDA graphs on a GPU) and MAX_BATCH (default 8) from the environment, warmed up with
``prepare`` on the worker thread that will draw, one worker per visible GPU (DEVICE=all).
A plain diffusers baseline runs first in the same process, for the speed-up and the
drift. Then 1 user (6 requests) and 16 users per GPU (2 rounds): phases, peak memory, warm-up
time per batch size, Dynamo counters.
"""

from __future__ import annotations

import asyncio
import json
import time

import torch

from bench.common import (
    Bench,
    TimedPipelines,
    compile_counters,
    compile_setting,
    log,
    max_batch_setting,
    sync,
)
from bench.models import build_pipelines
from bench.plain import plain_case
from bench.users import engine_cases
from generation.engine import GenerationEngine
from generation.pipelines import KandinskyPipelines


def run(bench: Bench) -> None:
    cfg, device = bench.cfg, bench.device
    compile_, max_batch = compile_setting(), max_batch_setting()
    bench.count_flops()
    ref = plain_case(bench, "plain diffusers on the GPU, batch 1 (same-process baseline)", 2)
    devices = (
        [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())] if device.type == "cuda" else [device]
    )
    built = {str(device): (bench.prior, bench.decoder)}
    for other in devices[1:]:
        built[str(other)] = build_pipelines(other, bench.dtype, tiny=cfg.tiny)
    warm: dict[str, float] = {}
    made: list[TimedPipelines] = []

    def load(d: torch.device) -> KandinskyPipelines:
        # As generation/factory.py does: compile and warm up on the worker thread that will
        # draw (CUDA graphs belong to the thread that recorded them). Timed per batch size,
        # with the same sizes and fallback as prepare().
        p, dec = built[str(d)]
        pipe = TimedPipelines(p, dec, d, prior_steps=cfg.prior_steps, compile=compile_, max_batch=max_batch)
        try:
            for b in pipe.serving_batch_sizes():
                t0 = time.perf_counter()
                pipe.warm_up(cfg.size, cfg.size, batch_sizes=(b,))
                sync(d)
                warm[f"{d} batch {b}"] = time.perf_counter() - t0
                log(f"{d} warm-up batch {b}: {warm[f'{d} batch {b}']:.1f} s")
        except Exception:
            if not pipe.compiled:
                raise
            log(f"{d}: compiling failed, drawing eagerly as the bot would")
            warm[f"{d} compile failed"] = True
            pipe.drop_compiled()
            pipe.prepare(cfg.size, cfg.size)
        pipe.records.clear()
        made.append(pipe)
        return pipe

    bench.info["multi"] = {
        "devices": [str(d) for d in devices],
        "compile": compile_,
        "max_batch": max_batch,
        "warmup_s": warm,
    }
    bench.save()
    label = f"engine on {len(devices)} GPU(s), COMPILE={compile_}"
    engine = GenerationEngine(devices, load, max_batch=max_batch, max_queue=1000)
    try:
        # 16 users per GPU: each GPU busy with two full batches, as on one GPU.
        crowd = 16 * len(devices)
        rounds = {1: 1 if cfg.smoke else 6, crowd: cfg.rounds[16]}
        asyncio.run(engine_cases(bench, label, made, [1, crowd], rounds, max_batch, engine, ref=ref))
    finally:
        bench.info["multi"]["compile_counters"] = compile_counters()
        log(f"counters: {json.dumps(bench.info['multi']['compile_counters'], default=str)}")
        bench.save()
