"""Mode "eager": where the time goes without torch.compile, and the old service.

FLOPs of one UNet step; plain diffusers batch 1; component timings (UNet step, MoVQ decode
with and without channels_last and cudnn.benchmark, the prior, PNG); host-device syncs of
one plain draw; our engine (COMPILE=off) at 1, 4 and 16 simultaneous users (MAX_BATCH 8,
and 16 users with MAX_BATCH 16) with its drift against plain diffusers; last the old
service's enable_model_cpu_offload() setup (it moves the weights to the CPU).
"""

from __future__ import annotations

import collections
import io
import json
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

from bench.common import PROMPT, Bench, Marks, TimedPipelines, gpu_time, image_diff, log
from bench.plain import plain_case, plain_draw
from bench.users import user_cases


@torch.inference_mode()
def components(bench: Bench, png_image: Image.Image | None) -> dict:
    """Single-component timings and the cheap ideas (cudnn.benchmark, channels_last MoVQ)."""
    cfg, device, dtype, prior = bench.cfg, bench.device, bench.dtype, bench.prior
    out: dict = {}
    unet, movq = bench.decoder.unet, bench.decoder.movq
    lat = cfg.size // 8
    iters = 3 if cfg.smoke else 10
    cuda = device.type == "cuda"
    for b in (1, 8):
        x = torch.randn(2 * b, 4, lat, lat, device=device, dtype=dtype)
        emb = torch.randn(2 * b, unet.config.encoder_hid_dim, device=device, dtype=dtype)
        t = torch.tensor(500, device=device)
        z = torch.randn(b, 4, lat, lat, device=device, dtype=dtype)

        def unet_step(x=x, emb=emb, t=t):
            return unet(
                sample=x,
                timestep=t,
                encoder_hidden_states=None,
                added_cond_kwargs={"image_embeds": emb},
                return_dict=False,
            )

        def movq_decode(z=z):
            return movq.decode(z, force_not_quantize=True)

        out[f"unet_step_b{b}_s"] = gpu_time(unet_step, device, iters)
        if cuda:
            torch.backends.cudnn.benchmark = True
            out[f"unet_step_b{b}_cudnn_benchmark_s"] = gpu_time(unet_step, device, iters, warmup=3)
            torch.backends.cudnn.benchmark = False
        out[f"movq_decode_b{b}_s"] = gpu_time(movq_decode, device, iters)
        if cuda:
            movq.to(memory_format=torch.channels_last)
            zc = z.contiguous(memory_format=torch.channels_last)
            out[f"movq_decode_b{b}_channels_last_s"] = gpu_time(lambda zc=zc: movq_decode(zc), device, iters)
            movq.to(memory_format=torch.contiguous_format)
    # The prior pipeline alone (text encoder + 25 prior steps; zero-image embedding
    # recomputed by the image encoder on every call, as plain diffusers does).
    for b in (1, 8):
        gens = [torch.Generator(device).manual_seed(i) for i in range(b)]

        def prior_call(b=b, gens=gens):
            return prior(
                prompt=[PROMPT] * b,
                guidance_scale=1.0,
                num_inference_steps=cfg.prior_steps,
                generator=gens,
                output_type="pt",
            )

        out[f"prior_pipeline_b{b}_s"] = gpu_time(prior_call, device, 3 if cfg.smoke else 5, warmup=1)
    size = prior.image_encoder.config.image_size
    zero = torch.zeros(1, 3, size, size, device=device, dtype=dtype)
    out["image_encoder_zero_image_s"] = gpu_time(lambda: prior.image_encoder(zero), device, iters)
    if png_image is not None:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        for _ in range(5):
            buf.seek(0)
            buf.truncate()
            png_image.save(buf, format="PNG", compress_level=3)
        out["png_encode_s"] = (time.perf_counter() - t0) / 5
        out["png_bytes"] = buf.tell()
    return out


@torch.inference_mode()
def sync_points(bench: Bench) -> dict:
    """Host-device synchronisations in one plain draw (each one stalls the CPU, which
    then cannot queue kernels ahead of the GPU). Counted by call site."""
    if bench.device.type != "cuda":
        return {}
    sites: collections.Counter = collections.Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batch = [bench.params(7, steps=10)]
            plain_draw(bench.prior, bench.decoder, batch, bench.device, bench.cfg.prior_steps, Marks(True))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            sites[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return {"decoder_steps": 10, "prior_steps": bench.cfg.prior_steps, "by_site": dict(sites.most_common(20))}


def run(bench: Bench) -> None:
    cfg, device = bench.cfg, bench.device
    bench.count_flops()
    ref = plain_case(bench, "plain diffusers on the GPU, batch 1", cfg.plain_runs)
    try:
        bench.info["sync_points"] = sync_points(bench)
    except Exception as exc:  # diagnostics only
        bench.info["sync_points"] = {"error": repr(exc)}
    bench.info["components"] = components(bench, ref)
    log("components: " + json.dumps(bench.info["components"]))
    bench.save()

    pipes = TimedPipelines(bench.prior, bench.decoder, device, prior_steps=cfg.prior_steps, compile="off")
    user_cases(bench, "engine, COMPILE=off", pipes, ref)

    # The old service: plain pipelines with model CPU offload (last: moves weights off the GPU).
    if device.type == "cuda":
        bench.prior.__dict__.pop("get_zero_embed", None)  # undo the engine's zero-embedding cache
        t0 = time.perf_counter()
        bench.prior.enable_model_cpu_offload(device=device)
        bench.decoder.enable_model_cpu_offload(device=device)
        bench.info["offload_setup_s"] = time.perf_counter() - t0
        img = plain_case(bench, "old service: enable_model_cpu_offload(), batch 1", cfg.offload_runs)
        bench.results[-1]["drift_vs_plain"] = image_diff(ref, img)
        bench.save()
