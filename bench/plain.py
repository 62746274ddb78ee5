"""Plain diffusers, as a service without our engine calls it: the baseline of each mode."""

from __future__ import annotations

import time

import torch
from PIL import Image

from bench.common import REF_SEED, Bench, Marks, log_row, pct, peak_gib, reset_peak, summarize_records
from generation.params import GenerationParams


@torch.inference_mode()
def plain_draw(prior, decoder, batch: list[GenerationParams], device, prior_steps: int, marks: Marks):
    """The prior, then the decoder, one generator per request used by both (the engine's
    convention for text requests, so images can be compared)."""
    first = batch[0]
    gens = [torch.Generator(device).manual_seed(p.seed) for p in batch]
    marks.mark("start")
    out = prior(
        prompt=[p.prompt for p in batch],
        guidance_scale=first.prior_guidance_scale,
        num_inference_steps=prior_steps,
        generator=gens if len(gens) > 1 else gens[0],
        output_type="pt",
    )
    marks.mark("prior")

    def step_end(pipe, i, t, kwargs):
        marks.mark(f"step{i + 1}")
        return kwargs

    images = decoder(
        image_embeds=out.image_embeds,
        negative_image_embeds=out.negative_image_embeds,
        height=first.height,
        width=first.width,
        num_inference_steps=first.num_inference_steps,
        guidance_scale=first.guidance_scale,
        generator=gens if len(gens) > 1 else gens[0],
        callback_on_step_end=step_end,
    ).images
    marks.mark("end")
    return images


def plain_case(bench: Bench, name: str, runs: int, extra: dict | None = None) -> Image.Image:
    """``runs`` pictures at batch 1 after one not counted; adds the row, returns the first
    picture (the reference for the engine's drift)."""
    device = bench.device
    reset_peak(device)
    records, lat = [], []
    ref = None
    for r in range(runs + 1):  # the first run warms up and is not counted
        marks = Marks(device.type == "cuda")
        t0 = time.perf_counter()
        images = plain_draw(bench.prior, bench.decoder, [bench.params(REF_SEED)], device, bench.cfg.prior_steps, marks)
        dt = time.perf_counter() - t0
        if r == 0:
            ref = images[0]
            continue
        lat.append(dt)
        records.append((1, marks))
    res = {
        "case": name,
        "users": 1,
        "batch_sizes": {"1": runs},
        "runs": runs,
        "median_s": pct(lat, 50),
        "p95_s": pct(lat, 95),
        "images_per_s": runs / sum(lat),
        "peak_gib": peak_gib(device),
        "phases": summarize_records(records, bench.flops),
        "latencies": lat,
    }
    res.update(extra or {})
    bench.results.append(res)
    log_row(res)
    bench.save()
    return ref
