"""Mode "pictures": pictures from pictures (issue 9) and the 2x upscale (issue 10), on the
engine as the bot runs it (COMPILE and MAX_BATCH from the environment, the bot's
defaults otherwise; warmed up with ``prepare`` on the worker thread, as
generation/factory.py does).

1. Each kind alone, one request at a time (an idle bot): a text request, an img2img at
   strength 0.5, a variation (one picture) and a mix (2 pictures + 1 text, equal
   weights). One request of each kind is not counted (it readies its kernels), then the
   best and median of a few, with GPU phases (embeddings, UNet steps, decode).
2. 16 users at once, user i sending text, img2img (0.5) or variation as i % 3 says,
   through the real GenerationEngine: images/s and p95 latency. The first round records
   the CUDA graphs of batch sizes the warm-up did not see and is reported apart.
3. An upscale of a picture the bot drew (size x size) to 2x: Lanczos resize with Pillow,
   then img2img at strength 0.3 at 2x through the engine. 2x is not a warmed-up size, so
   it runs eager, as in the bot: time of the first and the second, and peak GPU memory.

The input pictures are synthetic photos (gradients, waves, noise) sent as JPEG bytes,
decoded by the worker as the bot's are.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import json
import math
import time
import traceback

import numpy as np
import torch
from PIL import Image

from bench.common import (
    BOT_DEFAULTS,
    PROMPT,
    Bench,
    TimedPipelines,
    allocated_gib,
    compile_counters,
    compile_setting,
    log,
    max_batch_setting,
    pct,
    peak_gib,
    reset_peak,
    summarize_records,
    sync,
)
from generation.engine import GenerationEngine
from generation.params import MixPart
from generation.pipelines import KandinskyPipelines

KINDS = ("text", "img2img", "variation", "mix")
CROWD_KINDS = ("text", "img2img", "variation")  # user i sends CROWD_KINDS[i % 3]
STRENGTH = BOT_DEFAULTS["default_strength"]
UPSCALE_STRENGTH = 0.3  # issue 10's UPSCALE_STRENGTH default


def photo(size: int, seed: int) -> bytes:
    """A photo-like JPEG: smooth colour fields, waves and sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    waves = np.sin(2 * math.pi * (x * rng.uniform(1, 3) + y * rng.uniform(0.5, 2)))
    pixels = np.stack([128 + 100 * waves, 255 * x, 255 * (1 - y) * (0.5 + 0.5 * waves**2)], axis=-1)
    pixels = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def request(bench: Bench, kind: str, seed: int, photos: list[bytes], prompt: str = PROMPT):
    """(params, images) of one request of ``kind``."""
    if kind == "text":
        return bench.params(seed, prompt), []
    if kind == "img2img":
        return bench.params(seed, prompt, init_image=0, strength=STRENGTH), photos[:1]
    if kind == "variation":
        return bench.params(seed, "variation", mix=(MixPart(1.0, image=0),)), photos[:1]
    if kind == "mix":
        third = 1 / 3
        parts = (MixPart(third, image=0), MixPart(third, image=1), MixPart(third, text=prompt))
        return bench.params(seed, "mix", mix=parts), photos[:2]
    raise ValueError(kind)


async def ask(engine: GenerationEngine, params, images, user_id: int):
    start = time.perf_counter()
    job = await engine.submit(params, user_id, images=images)
    result = await job.result()
    return time.perf_counter() - start, result


async def alone(bench: Bench, engine: GenerationEngine, pipes: TimedPipelines, kind: str, photos, runs: int) -> dict:
    params, images = request(bench, kind, 7, photos)
    t_first, _ = await ask(engine, params, images, user_id=1)  # readies this kind's kernels
    pipes.records.clear()
    reset_peak(bench.device)
    lat, last = [], None
    for r in range(runs):
        params, images = request(bench, kind, 1000 + r, photos)
        dt, last = await ask(engine, params, images, user_id=1)
        lat.append(dt)
    res = {
        "case": f"{kind} alone" + (f" (strength {STRENGTH})" if kind == "img2img" else ""),
        "kind": kind,
        "users": 1,
        "batch_sizes": {"1": runs},
        "first_s": t_first,
        "best_s": min(lat),
        "median_s": pct(lat, 50),
        "p95_s": pct(lat, 95),
        "images_per_s": runs / sum(lat),
        "peak_gib": peak_gib(bench.device),
        "phases": summarize_records(pipes.records, bench.flops),
        "latencies": lat,
        "size": f"{last.width}x{last.height}",
    }
    bench.add(res)
    return res


async def crowd(bench: Bench, engine: GenerationEngine, pipes: TimedPipelines, users: int, rounds: int, photos):
    """``rounds`` rounds of ``users`` users, each sending one request at once."""
    rows = []
    for r in range(rounds + 1):  # round 0 records the new batch sizes' graphs: apart
        pipes.records.clear()
        reset_peak(bench.device)
        reqs = []
        for i in range(users):
            kind = CROWD_KINDS[i % len(CROWD_KINDS)]
            mine = photos[i % 2 :] + photos[: i % 2]  # two different photos in turn
            params, images = request(bench, kind, 100_000 * (r + 1) + i, mine, prompt=f"{PROMPT} #{i}")
            reqs.append((kind, params, images, i + 1))
        start = time.perf_counter()
        out = await asyncio.gather(*(ask(engine, p, imgs, uid) for _, p, imgs, uid in reqs))
        wall = time.perf_counter() - start
        rows.append(
            {
                "wall_s": wall,
                "latencies": [(kind, dt) for (kind, *_), (dt, _) in zip(reqs, out, strict=True)],
                "batch_sizes": [res.batch_size for _, res in out],
                "draws": [(b, m.phases()) for b, m in pipes.records],
                "peak_gib": peak_gib(bench.device),
            }
        )
        log(f"crowd round {r}: {wall:.2f} s, batches {sorted(collections.Counter(b for b, _ in rows[-1]['draws']))}")
    counted = rows[1:] or rows
    lat = [dt for row in counted for _, dt in row["latencies"]]
    walls = [row["wall_s"] for row in counted]
    by_kind = collections.defaultdict(list)
    for row in counted:
        for kind, dt in row["latencies"]:
            by_kind[kind].append(dt)
    batches = collections.Counter(b for row in counted for b in row["batch_sizes"])
    res = {
        "case": f"{users} users: " + ", ".join(CROWD_KINDS) + f" in turn (MAX_BATCH {pipes.max_batch})",
        "users": users,
        "rounds": len(counted),
        "batch_sizes": {str(k): v for k, v in sorted(batches.items())},
        "median_s": pct(lat, 50),
        "p95_s": pct(lat, 95),
        "images_per_s": users * len(counted) / sum(walls),
        "peak_gib": max(row["peak_gib"] or 0 for row in counted) if bench.device.type == "cuda" else None,
        "phases": {},
        "by_kind": {k: {"median_s": pct(v, 50), "p95_s": pct(v, 95), "count": len(v)} for k, v in by_kind.items()},
        "round_walls_s": walls,
        "first_round": {"wall_s": rows[0]["wall_s"], "p95_s": pct([dt for _, dt in rows[0]["latencies"]], 95)},
        "draws": [
            [{"batch": b, **{k: v for k, v in ph.items() if not k.startswith("host")}} for b, ph in row["draws"]]
            for row in counted
        ],
    }
    bench.add(res)
    return res


async def upscale(bench: Bench, engine: GenerationEngine, pipes: TimedPipelines, source_png: bytes, runs: int = 2):
    """The bot's "Upscale 2x": Lanczos to twice the size, then img2img at UPSCALE_STRENGTH."""
    source = Image.open(io.BytesIO(source_png)).convert("RGB")
    w, h = 2 * source.width, 2 * source.height
    rows = []
    for r in range(runs):
        reset_peak(bench.device)
        before = allocated_gib(bench.device)
        t0 = time.perf_counter()
        big = source.resize((w, h), Image.LANCZOS)
        buf = io.BytesIO()
        big.save(buf, format="PNG", compress_level=1)
        resize_s = time.perf_counter() - t0
        params = bench.params(2000 + r, PROMPT, init_image=0, strength=UPSCALE_STRENGTH)
        params = dataclasses.replace(params, width=w, height=h)
        pipes.records.clear()
        dt, result = await ask(engine, params, [buf.getvalue()], user_id=3)
        rows.append(
            {
                "resize_s": resize_s,
                "engine_s": dt,
                "total_s": resize_s + dt,
                "peak_gib": peak_gib(bench.device),
                "allocated_before_gib": before,
                "out_size": f"{result.width}x{result.height}",
                "phases": summarize_records(pipes.records, {})["1"],
            }
        )
        log(f"upscale {r}: {json.dumps(rows[-1], default=str)}")
    res = {
        "case": f"upscale {source.width}x{source.height} -> {w}x{h} (Lanczos + img2img {UPSCALE_STRENGTH}, eager)",
        "users": 1,
        "batch_sizes": {"1": runs},
        "median_s": rows[-1]["total_s"],
        "p95_s": None,
        "images_per_s": None,
        "peak_gib": max(row["peak_gib"] or 0 for row in rows) if bench.device.type == "cuda" else None,
        "phases": {"1": {**rows[-1]["phases"], "draws": 1, "unet_tflops": None}},
        "runs": rows,
    }
    bench.add(res)
    return res


async def section(bench: Bench, name: str, work):
    """One part of the run; a failure is kept in the JSON and the next part still runs."""
    try:
        return await work
    except Exception as exc:
        log(f"{name} failed: {exc!r}")
        bench.info.setdefault("errors", {})[name] = traceback.format_exc()[-3000:]
        bench.save()
        return None


def run(bench: Bench) -> None:
    cfg, device = bench.cfg, bench.device
    compile_, max_batch = compile_setting(), max_batch_setting()
    holder: dict[str, TimedPipelines] = {}
    warm = {}

    def load(d: torch.device) -> KandinskyPipelines:
        # generation/factory.py's loader, on the worker thread: build, then prepare().
        pipes = TimedPipelines(
            bench.prior, bench.decoder, d, prior_steps=cfg.prior_steps, compile=compile_, max_batch=max_batch
        )
        t0 = time.perf_counter()
        pipes.prepare(cfg.size, cfg.size)
        sync(d)
        warm["prepare_s"] = time.perf_counter() - t0
        warm["compiled"] = pipes.compiled
        warm["batch_sizes"] = list(pipes.serving_batch_sizes())
        log(f"prepare() on {d}: {warm['prepare_s']:.1f} s, compiled: {pipes.compiled}")
        holder["pipes"] = pipes
        return pipes

    bench.info["pictures"] = {"compile": compile_, "max_batch": max_batch, "warm_up": warm, "strength": STRENGTH}
    photos = [photo(cfg.size, 1), photo(cfg.size, 2)]
    bench.info["pictures"]["photo_bytes"] = [len(p) for p in photos]
    runs = 2 if cfg.smoke else 4
    rounds = 1 if cfg.smoke else 3

    async def main() -> None:
        engine = GenerationEngine([device], load, max_batch=max_batch, max_queue=1000, max_pending_per_user=3)
        await engine.start()
        try:
            t0 = time.perf_counter()
            params, _ = request(bench, "text", 1, photos)
            _, first = await ask(engine, params, [], user_id=10_000)
            bench.info["pictures"]["ready_s"] = time.perf_counter() - t0
            bench.save()
            pipes = holder["pipes"]
            alone_rows = {}
            for kind in KINDS:
                work = alone(bench, engine, pipes, kind, photos, runs)
                alone_rows[kind] = await section(bench, f"alone {kind}", work)
            if alone_rows["text"] and alone_rows["img2img"]:
                text_unet = alone_rows["text"]["phases"]["1"]["unet_s"]
                i2i_unet = alone_rows["img2img"]["phases"]["1"]["unet_s"]
                bench.info["pictures"]["img2img_unet_share_of_text"] = i2i_unet / text_unet
                bench.save()
            await section(bench, "crowd", crowd(bench, engine, pipes, 16, rounds, photos))
            bench.info["pictures"]["counters_before_upscale"] = compile_counters()
            await section(bench, "upscale", upscale(bench, engine, pipes, first.png))
        finally:
            bench.info["pictures"]["compile_counters"] = compile_counters()
            bench.save()
            await engine.close()

    asyncio.run(main())
