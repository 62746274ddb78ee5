"""Simultaneous users sending text requests through the real GenerationEngine."""

from __future__ import annotations

import asyncio
import collections
import time

from bench.common import (
    PROMPT,
    REF_SEED,
    Bench,
    GiB,
    TimedPipelines,
    busy_share,
    image_diff,
    log,
    pct,
    peak_gib,
    png_image,
    reset_peak,
    summarize_records,
)
from generation.engine import GenerationEngine


async def engine_cases(
    bench: Bench,
    label: str,
    pipes: list[TimedPipelines],
    user_counts,
    rounds: dict[int, int],
    max_batch: int,
    engine: GenerationEngine,
    ref=None,
) -> None:
    """For each count of users: ``rounds`` rounds of that many users each sending one
    request at once. ``pipes``: the pipelines the engine draws with (a list its loader
    fills, for several GPUs). Drift against ``ref`` (plain diffusers) at 1 and 4 users."""
    await engine.start()
    try:
        t0 = time.perf_counter()
        await (await engine.submit(bench.params(1, "warm-up"), user_id=10_000)).result()
        log(f"[{label}] engine ready, warm-up request {time.perf_counter() - t0:.2f} s")
        for n in user_counts:
            for p in pipes:
                p.records.clear()
                reset_peak(p.device)
            lat, walls, batches, first = [], [], collections.Counter(), None
            for r in range(rounds[n]):

                async def one(i: int, r: int = r):
                    seed = REF_SEED if i == 0 else 100_000 * (r + 1) + i
                    prompt = PROMPT if i == 0 else f"{PROMPT} #{i}"
                    start = time.perf_counter()
                    job = await engine.submit(bench.params(seed, prompt), user_id=i + 1)
                    result = await job.result()
                    return time.perf_counter() - start, result

                start = time.perf_counter()
                out = await asyncio.gather(*(one(i) for i in range(n)))
                walls.append(time.perf_counter() - start)
                for dt, result in out:
                    lat.append(dt)
                    batches[result.batch_size] += 1
                if r == 0:
                    first = out[0][1]
            records = [r for p in pipes for r in p.records]
            res = {
                "case": f"{label}, {n} user{'s' if n > 1 else ''}"
                + (f", MAX_BATCH {max_batch}" if max_batch != 8 else ""),
                "users": n,
                "max_batch": max_batch,
                "rounds": rounds[n],
                "batch_sizes": {str(k): v for k, v in sorted(batches.items())},
                "median_s": pct(lat, 50),
                "p95_s": pct(lat, 95),
                "images_per_s": n * rounds[n] / sum(walls),
                "peak_gib": max(peak_gib(p.device) or 0 for p in pipes) if bench.device.type == "cuda" else None,
                "phases": summarize_records(records, bench.flops),
                "draw_share_of_wall": busy_share(records, sum(walls)),
                "latencies": lat,
                "round_walls_s": walls,
            }
            if ref is not None and n in (1, 4) and first is not None:
                res["drift_vs_plain"] = image_diff(ref, png_image(first.png))
                res["drift_vs_plain"]["engine_batch_size"] = first.batch_size
                bench.info["drift"][f"{label}, batch {first.batch_size}"] = res["drift_vs_plain"]
            status = engine.status()
            res["engine_status"] = {
                "images_per_minute": status.images_per_minute,
                "gpu_memory_gib": (status.gpu_memory_bytes or 0) / GiB,
            }
            bench.add(res)
    finally:
        await engine.close()


def user_cases(bench: Bench, label: str, pipes: TimedPipelines, ref) -> None:
    """The engine on ready pipelines at each of ``cfg.users`` simultaneous users (MAX_BATCH
    8, drift against ``ref``), then the most users with MAX_BATCH 16."""
    c = bench.cfg
    for max_batch, counts, drift in ((8, c.users, ref), (16, [c.users[-1]], None)):
        engine = GenerationEngine(
            [bench.device], lambda d: pipes, max_batch=max_batch, max_queue=1000, max_pending_per_user=3
        )
        asyncio.run(engine_cases(bench, label, [pipes], counts, c.rounds, max_batch, engine, ref=drift))
