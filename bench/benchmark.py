"""GPU benchmark of Kandinsky 2.2 serving: the old setup, plain diffusers and our engine.

Full-size pipelines with random weights are built directly on the GPU (bench/models.py);
timings are real, pictures are noise. Three modes, each one process (run them back to
back on the same machine; bench/run_gpu.sh does):

  eager    FLOPs of one UNet step; component timings (UNet step, MoVQ decode, PNG; with
           cudnn.benchmark / channels_last variants); plain diffusers batch 1; our engine
           (compile=False) at 1, 4, 16 simultaneous users (MAX_BATCH 8, and 16 users with
           MAX_BATCH 16); drift engine vs plain diffusers; the old service's
           enable_model_cpu_offload() setup, batch 1 (last: it moves the weights to the CPU).
  compile  plain diffusers reference image; KandinskyPipelines(compile=True) warmed up at
           every batch size the engine will use (timed); the engine at 1, 4, 16 users
           (MAX_BATCH 8, and 16 users with MAX_BATCH 16); drift.
  lite     like compile, but with Inductor's mode="default" instead of the project's
           "max-autotune-no-cudagraphs" (bench-only subclass): minutes instead of tens of
           minutes of warm-up; warm-up per batch size timed, then 1 and 16 users.
  ideas    batch-1 latency ideas that need their own process: CUDA graphs against launch
           overhead, i.e. the UNet and the prior's transformer compiled with
           mode="reduce-overhead", MoVQ decode with mode="default"; warm-up timed, then 6
           sequential single requests through the engine and the drift vs plain diffusers.

On an H200, "compile" spent 1019 s warming up batch 1 alone and was still autotuning the
batch-size recompile after 7 more minutes: it does not fit a 30-minute lease.

    python bench/benchmark.py --mode eager --out /tmp/bench      # on a CUDA machine
    python bench/benchmark.py --mode eager --tiny --smoke        # CPU check of this script

Each mode writes ``results_<mode>.json`` under --out (rewritten after every case, so a
run cut short keeps what it measured) and prints a table; bench/report.py renders the
JSON files as markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build_pipelines, count_params  # noqa: E402
from generation.engine import GenerationEngine  # noqa: E402
from generation.params import GenerationParams  # noqa: E402
from generation.pipelines import KandinskyPipelines  # noqa: E402

PROMPT = "a cozy cabin in a snowy pine forest at dusk, warm light, detailed"
REF_SEED = 1234
GiB = 1024**3


# --------------------------------------------------------------------------- timing


class Marks:
    """Named points in time: CUDA events on the current stream (what the GPU did) and
    the host clock. Read them only once the work is done."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.names: list[str] = []
        self.host: list[float] = []
        self.events: list[torch.cuda.Event] = []

    def mark(self, name: str) -> None:
        self.names.append(name)
        self.host.append(time.perf_counter())
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)

    def times(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [self.events[0].elapsed_time(e) / 1000 for e in self.events]
        return [h - self.host[0] for h in self.host]

    def phases(self) -> dict:
        t = self.times()
        at = {n: t[i] for i, n in enumerate(self.names)}
        steps = [t[i] for i, n in enumerate(self.names) if n.startswith("step")]
        step_dt = np.diff(steps) if len(steps) > 1 else np.array([np.nan])
        return {
            "prior_s": at["prior"] - at["start"],
            "denoise_s": (steps[-1] if steps else at["prior"]) - at["prior"],
            "step_s": float(np.median(step_dt)),
            "decode_s": at["end"] - (steps[-1] if steps else at["prior"]),
            "gpu_total_s": at["end"] - at["start"],
            "host_start": self.host[0],
            "host_end": self.host[-1],
        }


class TimedPipelines(KandinskyPipelines):
    """The engine's pipelines with phase marks; computes exactly what the parent does."""

    def __init__(self, *args, **kwargs) -> None:
        self.records: list[tuple[int, Marks]] = []
        self._marks: Marks | None = None
        super().__init__(*args, **kwargs)

    def draw(self, batch, on_step=None):
        marks = Marks(self.device.type == "cuda")
        self._marks = marks
        marks.mark("start")
        out = super().draw(batch, on_step)
        marks.mark("end")
        self.records.append((len(batch), marks))
        return out

    def _step_queued(self, step: int) -> None:
        # When the step's work is queued: the CUDA event lands between this step and the next.
        self._marks.mark(f"step{step}")

    def _prior_embeddings(self, batch, generators):
        out = super()._prior_embeddings(batch, generators)
        self._marks.mark("prior")
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else None


def gpu_time(fn, device: torch.device, iters: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``iters`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        marks = Marks(device.type == "cuda")
        marks.mark("a")
        fn()
        marks.mark("b")
        t = marks.times()
        times.append(t[1] - t[0])
    return float(np.median(times))


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def summarize_records(records: list[tuple[int, Marks]], flops: dict[int, float]) -> dict:
    by_batch: dict[int, list[dict]] = collections.defaultdict(list)
    for b, marks in records:
        by_batch[b].append(marks.phases())
    out = {}
    for b, rows in sorted(by_batch.items()):
        med = {
            k: float(np.median([r[k] for r in rows]))
            for k in ("prior_s", "denoise_s", "step_s", "decode_s", "gpu_total_s")
        }
        med["draws"] = len(rows)
        f = flops.get(b)
        med["unet_tflops"] = f / med["step_s"] / 1e12 if f and med["step_s"] == med["step_s"] else None
        out[str(b)] = med
    return out


def busy_share(records: list[tuple[int, Marks]], wall: float) -> float:
    """Share of the wall time the worker spent inside draw() (the rest: PNG encoding,
    queueing, event-loop hand-offs, during which the GPU waits)."""
    return sum(m.host[-1] - m.host[0] for _, m in records) / wall if wall > 0 else float("nan")


# --------------------------------------------------------------------------- cases


def params(cfg, seed: int, prompt: str = PROMPT, steps: int | None = None) -> GenerationParams:
    return GenerationParams(prompt, cfg.size, cfg.size, steps or cfg.steps, 4.0, 1.0, seed=seed)


@torch.inference_mode()
def plain_draw(prior, decoder, batch: list[GenerationParams], device, prior_steps: int, marks: Marks):
    """What a plain diffusers service does: the prior, then the decoder, one generator
    per request used by both (the engine's convention, so images can be compared)."""
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


def plain_case(name, prior, decoder, cfg, device, runs: int, flops, extra=None) -> tuple[dict, Image.Image]:
    reset_peak(device)
    records, lat = [], []
    ref = None
    for r in range(runs + 1):  # the first run warms up and is not counted
        marks = Marks(device.type == "cuda")
        t0 = time.perf_counter()
        images = plain_draw(prior, decoder, [params(cfg, REF_SEED)], device, cfg.prior_steps, marks)
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
        "phases": summarize_records(records, flops),
        "latencies": lat,
    }
    res.update(extra or {})
    return res, ref


async def engine_cases(
    label,
    pipes: TimedPipelines | list[TimedPipelines],
    cfg,
    device,
    user_counts,
    rounds,
    max_batch,
    flops,
    results,
    save,
    refs=None,
    drift=None,
    engine_factory=None,
):
    """``pipes``: the pipelines the engine draws with, or a list its loader fills (several GPUs)."""
    all_pipes = pipes if isinstance(pipes, list) else [pipes]
    if engine_factory is None:
        engine = GenerationEngine(
            [device], lambda d: all_pipes[0], max_batch=max_batch, max_queue=1000, max_pending_per_user=3
        )
    else:
        engine = engine_factory()
    await engine.start()
    try:
        t0 = time.perf_counter()
        await (await engine.submit(params(cfg, 1, "warm-up"), user_id=10_000)).result()
        log(f"[{label}] engine ready, warm-up request {time.perf_counter() - t0:.2f} s")
        for n in user_counts:
            for p in all_pipes:
                p.records.clear()
            for p in all_pipes:
                reset_peak(p.device)
            lat, walls, batches, pngs = [], [], collections.Counter(), {}
            for r in range(rounds[n]):

                async def one(i: int, r: int = r):
                    seed = REF_SEED if i == 0 else 100_000 * (r + 1) + i
                    prompt = PROMPT if i == 0 else f"{PROMPT} #{i}"
                    start = time.perf_counter()
                    job = await engine.submit(params(cfg, seed, prompt), user_id=i + 1)
                    result = await job.result()
                    return time.perf_counter() - start, result

                start = time.perf_counter()
                out = await asyncio.gather(*(one(i) for i in range(n)))
                walls.append(time.perf_counter() - start)
                for dt, result in out:
                    lat.append(dt)
                    batches[result.batch_size] += 1
                if r == 0:
                    pngs[n] = out[0][1]
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
                "peak_gib": max(peak_gib(p.device) or 0 for p in all_pipes) if device.type == "cuda" else None,
                "phases": summarize_records([r for p in all_pipes for r in p.records], flops),
                "draw_share_of_wall": busy_share([r for p in all_pipes for r in p.records], sum(walls)),
                "latencies": lat,
                "round_walls_s": walls,
            }
            if refs is not None and n in (1, 4) and n in pngs:
                img = Image.open(io.BytesIO(pngs[n].png)).convert("RGB")
                res["drift_vs_plain"] = image_diff(refs, img)
                res["drift_vs_plain"]["engine_batch_size"] = pngs[n].batch_size
                if drift is not None:
                    drift[f"{label}, batch {pngs[n].batch_size}"] = res["drift_vs_plain"]
            status = engine.status()
            res["engine_status"] = {
                "images_per_minute": status.images_per_minute,
                "gpu_memory_gib": (status.gpu_memory_bytes or 0) / GiB,
            }
            results.append(res)
            log_row(res)
            save()
    finally:
        await engine.close()


def user_cases(label, pipes, cfg, device, flops, results, info, save, ref) -> None:
    """The engine at each of ``cfg.users`` simultaneous users (MAX_BATCH 8, with drift against
    ``ref``), then the most users with MAX_BATCH 16."""
    asyncio.run(
        engine_cases(
            label, pipes, cfg, device, cfg.users, cfg.rounds, 8, flops, results, save, refs=ref, drift=info["drift"]
        )
    )
    asyncio.run(engine_cases(label, pipes, cfg, device, [cfg.users[-1]], cfg.rounds, 16, flops, results, save))


def image_diff(ref: Image.Image, img: Image.Image) -> dict:
    a = np.asarray(ref.convert("RGB"), dtype=np.int16)
    b = np.asarray(img, dtype=np.int16)
    d = np.abs(a - b)
    return {
        "max_abs": int(d.max()),
        "mean_abs": float(d.mean()),
        "share_pixels_diff_gt_2": float((d.max(-1) > 2).mean()),
    }


def unet_flops(unet, b: int, cfg, device, dtype) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    lat = cfg.size // 8
    x = torch.randn(2 * b, 4, lat, lat, device=device, dtype=dtype)
    emb = torch.randn(2 * b, unet.config.encoder_hid_dim, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(
            sample=x, timestep=t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": emb}, return_dict=False
        )
    return float(counter.get_total_flops())


@torch.inference_mode()
def components(prior, decoder, cfg, device, dtype, png_image: Image.Image | None) -> dict:
    """Single-component timings and the cheap ideas (cudnn.benchmark, channels_last MoVQ)."""
    out: dict = {}
    unet, movq = decoder.unet, decoder.movq
    lat = cfg.size // 8
    iters = 3 if cfg.smoke else 10
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
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            out[f"unet_step_b{b}_cudnn_benchmark_s"] = gpu_time(unet_step, device, iters, warmup=3)
            torch.backends.cudnn.benchmark = False
        out[f"movq_decode_b{b}_s"] = gpu_time(movq_decode, device, iters)
        if device.type == "cuda":
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
def sync_points(prior, decoder, cfg, device) -> dict:
    """Host-device synchronisations in one plain draw (each one stalls the CPU, which
    then cannot queue kernels ahead of the GPU). Counted by call site."""
    if device.type != "cuda":
        return {}
    sites: collections.Counter = collections.Counter()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain_draw(prior, decoder, [params(cfg, 7, steps=10)], device, cfg.prior_steps, Marks(True))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if "synchroniz" in str(w.message):
            sites[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return {"decoder_steps": 10, "prior_steps": cfg.prior_steps, "by_site": dict(sites.most_common(20))}


# --------------------------------------------------------------------------- modes


def run_eager(cfg, device, dtype, prior, decoder, flops, results, info, save):
    plain, ref = plain_case("plain diffusers on the GPU, batch 1", prior, decoder, cfg, device, cfg.plain_runs, flops)
    results.append(plain)
    log_row(plain)
    save()
    try:
        info["sync_points"] = sync_points(prior, decoder, cfg, device)
    except Exception as exc:  # diagnostics only
        info["sync_points"] = {"error": repr(exc)}
    info["components"] = components(prior, decoder, cfg, device, dtype, ref)
    log("components: " + json.dumps(info["components"]))
    save()

    pipes = TimedPipelines(prior, decoder, device, prior_steps=cfg.prior_steps, compile="off")
    user_cases("engine, compile=False", pipes, cfg, device, flops, results, info, save, ref)

    # The old service: plain pipelines with model CPU offload (last: moves weights off the GPU).
    if device.type == "cuda":
        prior.__dict__.pop("get_zero_embed", None)  # undo the engine's zero-embedding cache
        t0 = time.perf_counter()
        prior.enable_model_cpu_offload(device=device)
        decoder.enable_model_cpu_offload(device=device)
        info["offload_setup_s"] = time.perf_counter() - t0
        res, img = plain_case(
            "old service: enable_model_cpu_offload(), batch 1", prior, decoder, cfg, device, cfg.offload_runs, flops
        )
        res["drift_vs_plain"] = image_diff(ref, img)
        results.append(res)
        log_row(res)
        save()


def run_compile(cfg, device, dtype, prior, decoder, flops, results, info, save):
    plain, ref = plain_case(
        "plain diffusers on the GPU, batch 1 (same-process baseline)", prior, decoder, cfg, device, 2, flops
    )
    results.append(plain)
    log_row(plain)
    save()
    pipes = TimedPipelines(prior, decoder, device, prior_steps=cfg.prior_steps, compile="default")
    warm = {}
    sizes = sorted({1, *[min(n, mb) for n in cfg.users for mb in (8, 16)]})
    for b in sizes:  # torch.compile specialises on the batch: warm each size the engine will use
        t0 = time.perf_counter()
        if b == 1:
            pipes.warm_up(cfg.size, cfg.size, steps=2)
        else:
            pipes.draw([params(cfg, i, "warm-up", steps=2) for i in range(b)])
        sync(device)
        warm[str(b)] = time.perf_counter() - t0
        log(f"compile warm-up batch {b}: {warm[str(b)]:.1f} s")
        info["compile_warmup_s"] = warm
        save()
    # a second pass shows whether any size still recompiles
    again = {}
    for b in sizes:
        t0 = time.perf_counter()
        pipes.draw([params(cfg, i, "warm-up", steps=2) for i in range(b)])
        sync(device)
        again[str(b)] = time.perf_counter() - t0
    info["compile_warmup_second_pass_s"] = again
    log(f"second pass: {again}")
    pipes.records.clear()
    user_cases("engine, compile=True", pipes, cfg, device, flops, results, info, save, ref)


class FastPipelines(TimedPipelines):
    """Idea: CUDA graphs against launch overhead at batch 1. The UNet and the prior's
    transformer compiled with mode="reduce-overhead" (Inductor's default kernels, replayed
    as CUDA graphs), MoVQ decode with mode="default". Warmed up inside the loader, on the
    worker thread that serves it (CUDA graph trees belong to the thread that recorded them).
    On the CPU (no CUDA graphs) every module uses mode="default"."""

    unet_mode = "reduce-overhead"
    prior_mode = "reduce-overhead"
    decode_mode = "default"

    def _compile(self, cuda_graphs: bool = False) -> None:
        cuda = self.device.type == "cuda"
        self.decoder.unet = torch.compile(self.decoder.unet, mode=self.unet_mode if cuda else "default")
        self.decoder.movq.decode = torch.compile(self.decoder.movq.decode, mode=self.decode_mode)
        self.prior.prior = torch.compile(self.prior.prior, mode=self.prior_mode if cuda else "default")


def compile_counters() -> dict:
    """Dynamo/Inductor counters worth watching: graph breaks, recompiles, CUDA graph skips."""
    from torch._dynamo.utils import counters

    out = {k: dict(v) for k, v in counters.items() if k in ("stats", "graph_break", "inductor")}
    out["inductor"] = {
        k: v for k, v in out.get("inductor", {}).items() if "cudagraph" in k or k in ("fxgraph_cache_miss",)
    }
    return out


def run_ideas(cfg, device, dtype, prior, decoder, flops, results, info, save):
    started = time.perf_counter()
    budget = float(os.environ.get("IDEAS_BUDGET_S", "420"))
    left = lambda: budget - (time.perf_counter() - started)  # noqa: E731
    plain, ref = plain_case(
        "plain diffusers on the GPU, batch 1 (same-process baseline)", prior, decoder, cfg, device, 2, flops
    )
    results.append(plain)
    log_row(plain)
    save()
    label = (
        f'engine, UNet "{FastPipelines.unet_mode}" + prior "{FastPipelines.prior_mode}"'
        f' + decode "{FastPipelines.decode_mode}"'
    )
    idea = info.setdefault("ideas", {}).setdefault(label, {"warm_up_s": {}})
    holder: dict = {}

    def load(d):  # runs on the engine's worker thread
        p = FastPipelines(prior, decoder, d, prior_steps=cfg.prior_steps, compile="default")
        # The first warm-up compiles and records (2 decoder steps); the next ones run the
        # serving shape (all steps) so that any late recompile or re-recording shows here.
        for i in range(3):
            if i and left() < 120:
                idea["warm_up_skipped"] = f"rounds {i}.. (time)"
                break
            t0 = time.perf_counter()
            p.warm_up(cfg.size, cfg.size, steps=cfg.steps if i else 2)
            sync(d)
            idea["warm_up_s"][str(i)] = time.perf_counter() - t0
            log(f"[{label}] warm-up {i}: {idea['warm_up_s'][str(i)]:.1f} s")
            save()
        idea["counters_after_warm_up"] = compile_counters()
        p.records.clear()
        holder["p"] = p
        return p

    rounds = cfg.rounds[1] if cfg.smoke else 6
    try:
        asyncio.run(engine_sequential(label, load, holder, cfg, device, rounds, flops, results, save, ref, idea))
    except Exception as exc:
        idea["error"] = f"{type(exc).__name__}: {exc}"
        idea["trace"] = traceback.format_exc()[-3000:]
        log(f"[{label}] failed: {exc!r}")
    idea["counters_end"] = compile_counters()
    log(f"[{label}] counters: {json.dumps(idea['counters_end'], default=str)}")
    if "drift_vs_plain" in idea:
        info["drift"][f"{label}, batch 1"] = idea["drift_vs_plain"]
    save()


async def engine_sequential(label, load, holder, cfg, device, rounds, flops, results, save, ref, idea):
    """One user at a time (an idle bot), on pipelines built by the engine's own loader."""
    engine = GenerationEngine([device], load, max_batch=8, max_queue=1000, max_pending_per_user=3)
    await engine.start()
    try:
        t0 = time.perf_counter()
        await (await engine.submit(params(cfg, 1, "warm-up"), user_id=10_000)).result()
        log(f"[{label}] loaded and warmed in {time.perf_counter() - t0:.1f} s")
        pipes = holder["p"]
        pipes.records.clear()
        reset_peak(device)
        lat = []
        for r in range(rounds):
            seed = REF_SEED if r == 0 else REF_SEED + r
            s = time.perf_counter()
            result = await (await engine.submit(params(cfg, seed), user_id=1)).result()
            lat.append(time.perf_counter() - s)
            if r == 0:
                idea["drift_vs_plain"] = image_diff(ref, Image.open(io.BytesIO(result.png)).convert("RGB"))
        res = {
            "case": f"{label}, 1 user",
            "users": 1,
            "max_batch": 8,
            "rounds": rounds,
            "batch_sizes": {"1": rounds},
            "median_s": pct(lat, 50),
            "p95_s": pct(lat, 95),
            "images_per_s": rounds / sum(lat),
            "peak_gib": peak_gib(device),
            "phases": summarize_records(pipes.records, flops),
            "draw_share_of_wall": busy_share(pipes.records, sum(lat)),
            "latencies": lat,
            "drift_vs_plain": idea.get("drift_vs_plain"),
        }
        results.append(res)
        log_row(res)
        save()
    finally:
        await engine.close()


class LitePipelines(TimedPipelines):
    """The project's compile=True with Inductor's default mode instead of
    "max-autotune-no-cudagraphs" (same modules compiled: the UNet and MoVQ decode).
    max-autotune spent 1019 s warming up batch 1 alone on an H200 (results_compile.json);
    the default mode compiles in a fraction of that."""

    mode = "default"

    def _compile(self, cuda_graphs: bool = False) -> None:
        self.decoder.unet = torch.compile(self.decoder.unet, mode=self.mode)
        self.decoder.movq.decode = torch.compile(self.decoder.movq.decode, mode=self.mode)


def run_lite(cfg, device, dtype, prior, decoder, flops, results, info, save):
    started = time.perf_counter()
    budget = float(os.environ.get("LITE_BUDGET_S", "470"))
    left = lambda: budget - (time.perf_counter() - started)  # noqa: E731
    plain, ref = plain_case(
        "plain diffusers on the GPU, batch 1 (same-process baseline)", prior, decoder, cfg, device, 2, flops
    )
    results.append(plain)
    log_row(plain)
    save()
    pipes = LitePipelines(prior, decoder, device, prior_steps=cfg.prior_steps, compile="default")
    warm = info.setdefault("compile_warmup_s", {})
    label = 'engine, compile mode="default"'

    def warm_up(b: int) -> None:
        t0 = time.perf_counter()
        pipes.draw([params(cfg, i, "warm-up", steps=2) for i in range(b)])
        sync(device)
        warm[str(b)] = time.perf_counter() - t0
        log(f"default-mode compile warm-up batch {b}: {warm[str(b)]:.1f} s")
        save()

    warm_up(1)
    pipes.records.clear()
    asyncio.run(
        engine_cases(label, pipes, cfg, device, [1], {1: 6}, 8, flops, results, save, refs=ref, drift=info["drift"])
    )
    if left() < 150:
        info["skipped"] = "batch 8 and 16 (time)"
        return
    warm_up(8)
    pipes.records.clear()
    asyncio.run(engine_cases(label, pipes, cfg, device, [16], {16: 1}, 8, flops, results, save))
    if left() < 60:
        info["skipped"] = "MAX_BATCH 16 (time)"
        return
    warm_up(16)
    pipes.records.clear()
    asyncio.run(engine_cases(label, pipes, cfg, device, [16], {16: 1}, 16, flops, results, save))


def run_multi(cfg, device, dtype, prior, decoder, flops, results, info, save):
    """The production path: every visible GPU gets its own full-size pipelines and engine
    worker, all fed from one queue (DEVICE=all). COMPILE=default or COMPILE=cudagraphs in the
    environment compiles as the project's setting does, warmed up on the worker thread with
    the batch sizes generation/factory.py uses. A plain diffusers baseline runs first in the
    same process, for the speed-up and the drift."""
    compile_ = os.environ.get("COMPILE", "off")  # off, default or cudagraphs, as COMPILE
    max_batch = int(os.environ.get("MAX_BATCH", "8"))
    plain, ref = plain_case(
        "plain diffusers on the GPU, batch 1 (same-process baseline)", prior, decoder, cfg, device, 2, flops
    )
    results.append(plain)
    log_row(plain)
    save()
    devices = (
        [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())] if device.type == "cuda" else [device]
    )
    built = {str(device): (prior, decoder)}
    for other in devices[1:]:
        built[str(other)] = build_pipelines(other, dtype, tiny=cfg.tiny)
    warm: dict[str, float] = {}
    made: list[TimedPipelines] = []

    def load(d: torch.device) -> KandinskyPipelines:
        # As generation/factory.py does: compile and warm up on the worker thread that will
        # draw (CUDA graphs belong to the thread that recorded them).
        p, dec = built[str(d)]
        pipe = TimedPipelines(p, dec, d, prior_steps=cfg.prior_steps, compile=compile_, max_batch=max_batch)
        for b in pipe.serving_batch_sizes():
            t0 = time.perf_counter()
            pipe.warm_up(cfg.size, cfg.size, batch_sizes=(b,))
            sync(d)
            warm[f"{d} batch {b}"] = time.perf_counter() - t0
            log(f"{d} warm-up batch {b}: {warm[f'{d} batch {b}']:.1f} s")
        pipe.records.clear()
        made.append(pipe)
        return pipe

    info["multi"] = {
        "devices": [str(d) for d in devices],
        "compile": compile_,
        "max_batch": max_batch,
        "warmup_s": warm,
    }
    save()
    label = f"engine on {len(devices)} GPU(s), COMPILE={compile_}"
    try:
        asyncio.run(
            engine_cases(
                label,
                made,
                cfg,
                device,
                [1, 16],
                {1: 1 if cfg.smoke else 6, 16: cfg.rounds[16]},
                max_batch,
                flops,
                results,
                save,
                refs=ref,
                drift=info["drift"],
                engine_factory=lambda: GenerationEngine(devices, load, max_batch=max_batch, max_queue=1000),
            )
        )
    finally:
        info["multi"]["compile_counters"] = compile_counters()
        log(f"counters: {json.dumps(info['multi']['compile_counters'], default=str)}")
        save()


# --------------------------------------------------------------------------- output


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main_batch(res: dict) -> str | None:
    phases = res.get("phases") or {}
    if not phases:
        return None
    return max(phases, key=lambda b: (phases[b]["draws"], int(b)))


def row(res: dict) -> list[str]:
    b = main_batch(res)
    ph = res["phases"].get(b, {}) if b else {}
    f = lambda v, fmt: "-" if v is None or v != v else format(v, fmt)  # noqa: E731
    return [
        res["case"],
        ",".join(f"{k}x{v}" for k, v in res.get("batch_sizes", {}).items()),
        f(res.get("median_s"), ".2f"),
        f(res.get("p95_s"), ".2f"),
        f(res.get("images_per_s"), ".2f"),
        f(res.get("peak_gib"), ".1f"),
        f(ph.get("prior_s"), ".3f"),
        f(ph.get("step_s", None) and ph["step_s"] * 1e3, ".1f"),
        f(ph.get("decode_s"), ".3f"),
        f(ph.get("unet_tflops"), ".0f"),
    ]


HEADER = [
    "case",
    "batches (size x images)",
    "median s",
    "p95 s",
    "img/s",
    "peak GiB",
    "prior s",
    "UNet step ms",
    "decode+post s",
    "UNet TFLOP/s",
]


def log_row(res: dict) -> None:
    log(" | ".join(row(res)))


def table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


def environment(device) -> dict:
    import diffusers
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
    }
    try:
        import huggingface_hub

        info["huggingface_hub"] = huggingface_hub.__version__
    except Exception:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / GiB
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except Exception as exc:
            info["nvidia_smi"] = repr(exc)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("eager", "compile", "ideas", "lite", "multi"), default="eager")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "bench" / "results" / "raw")))
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--prior-steps", type=int, default=25)
    ap.add_argument("--smoke", action="store_true", help="small size and few steps/rounds: checks the code paths")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (no GPU needed)")
    cfg = ap.parse_args()
    if cfg.smoke:
        cfg.size, cfg.steps, cfg.prior_steps = 256, 4, 3
    cfg.users = [1, 4, 16]
    cfg.rounds = {1: 2, 4: 1, 16: 1} if cfg.smoke else {1: 8, 4: 3, 16: 2}
    cfg.plain_runs = 2 if cfg.smoke else 5
    cfg.offload_runs = 1 if cfg.smoke else 3

    device = torch.device("cpu" if cfg.tiny or not torch.cuda.is_available() else "cuda:0")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("BENCH_TAG") or cfg.mode  # run_gpu.sh names runs with settings after them
    out_file = out_dir / f"results_{name}{'_smoke' if cfg.smoke else ''}{'_tiny' if cfg.tiny else ''}.json"

    info: dict = {
        "mode": cfg.mode,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "size": cfg.size,
            "decoder_steps": cfg.steps,
            "prior_steps": cfg.prior_steps,
            "guidance_scale": 4.0,
            "prior_guidance_scale": 1.0,
            "negative_prompt": None,
            "dtype": str(dtype),
            "rounds": cfg.rounds,
            "tiny": cfg.tiny,
            "smoke": cfg.smoke,
        },
        "environment": environment(device),
        "drift": {},
    }
    results: list[dict] = []

    def save() -> None:
        out_file.write_text(json.dumps({"info": info, "results": results}, indent=1, default=str))

    log(f"environment: {json.dumps(info['environment'])}")
    t0 = time.perf_counter()
    prior, decoder = build_pipelines(device, dtype, tiny=cfg.tiny)
    sync(device)
    info["build_s"] = time.perf_counter() - t0
    info["params"] = {
        "text_encoder": count_params(prior.text_encoder),
        "image_encoder": count_params(prior.image_encoder),
        "prior": count_params(prior.prior),
        "unet": count_params(decoder.unet),
        "movq": count_params(decoder.movq),
    }
    info["weights_gib"] = torch.cuda.memory_allocated(device) / GiB if device.type == "cuda" else None
    log(f"built in {info['build_s']:.1f} s: {info['params']}, {info['weights_gib']} GiB")
    flops = {}
    for b in (1, 4, 8, 16):
        flops[b] = unet_flops(decoder.unet, b, cfg, device, dtype)
    info["unet_step_tflop"] = {str(b): f / 1e12 for b, f in flops.items()}
    log(f"UNet step TFLOP (CFG, 2 samples per image): {info['unet_step_tflop']}")
    save()

    try:
        {"eager": run_eager, "compile": run_compile, "ideas": run_ideas, "lite": run_lite, "multi": run_multi}[
            cfg.mode
        ](cfg, device, dtype, prior, decoder, flops, results, info, save)
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        info["trace"] = traceback.format_exc()
        traceback.print_exc()
    info["total_s"] = time.perf_counter() - t0
    save()
    print()
    print(
        f"{info['environment'].get('gpu', 'CPU')} | torch {torch.__version__} | {cfg.size}x{cfg.size}, "
        f"prior {cfg.prior_steps} steps, decoder {cfg.steps} steps | mode {cfg.mode}"
    )
    print(table(results))
    if info["drift"]:
        print("drift vs plain diffusers (same seed and prompt):", json.dumps(info["drift"]))
    print(f"wrote {out_file}")
    if "error" in info:
        sys.exit(1)


if __name__ == "__main__":
    main()
