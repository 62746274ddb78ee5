"""GPU benchmark of the decoder's samplers: ddpm at 50 steps against dpmpp at 25 steps.

Full-size Kandinsky 2.2 with random fp16 weights (bench/models.py; timings are real,
pictures are noise), 768x768, prior 25 steps at guidance 1.0, decoder guidance 4.0, no
negative prompt. Through our ``GenerationEngine`` (eager: COMPILE=cudagraphs needs about
5 minutes of warm-up, more than this run's device time), for each sampler:

  1 user    requests one after another (latency = the time per picture)
  16 users  16 users at once (batches of MAX_BATCH 8), ``--rounds`` times

and, per sampler, the host-device synchronisations of one 10-step decoder call with our
host-timestep scheduler and with diffusers' stock one (torch.cuda.set_sync_debug_mode).

    python bench/samplers.py --out /tmp/bench            # on a CUDA machine
    python bench/samplers.py --tiny --out /tmp/bench     # CPU check of this script
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import build_pipelines  # noqa: E402
from generation.engine import GenerationEngine  # noqa: E402
from generation.params import GenerationParams  # noqa: E402
from generation.pipelines import KandinskyPipelines  # noqa: E402
from generation.schedulers import SAMPLERS  # noqa: E402

PROMPT = "a cozy cabin in a snowy pine forest at dusk, warm light, detailed"
CASES = (("ddpm", 50), ("dpmpp", 25))  # the comparison
STOCK = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmpp": DPMSolverMultistepScheduler}  # diffusers' own


class TimedPipelines(KandinskyPipelines):
    """The engine's pipelines with phase marks: CUDA events (GPU time) and the host clock
    at the start, after the prior, at each decoder step queued and at the end."""

    def __init__(self, *args, **kwargs) -> None:
        self.phases: list[dict] = []
        self._marks: list[tuple[str, float, torch.cuda.Event | None]] = []
        super().__init__(*args, **kwargs)

    def _mark(self, name: str) -> None:
        event = None
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
        self._marks.append((name, time.perf_counter(), event))

    def draw(self, batch, on_step=None, pictures=None):
        self._marks = []
        self._mark("start")
        out = super().draw(batch, on_step, pictures)
        self._mark("end")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            first = self._marks[0][2]
            gpu = [first.elapsed_time(e) / 1000 for _, _, e in self._marks]
        else:
            gpu = [h - self._marks[0][1] for _, h, _ in self._marks]
        host = [h - self._marks[0][1] for _, h, _ in self._marks]
        names = [n for n, _, _ in self._marks]
        steps = [i for i, n in enumerate(names) if n.startswith("step")]
        prior = names.index("prior")
        self.phases.append(
            {
                "batch": len(batch),
                "sampler": batch[0].sampler,
                "gpu_prior_s": gpu[prior],
                "gpu_step_ms": float(np.median(np.diff([gpu[i] for i in steps]))) * 1000,
                "host_step_ms": float(np.median(np.diff([host[i] for i in steps]))) * 1000,
                "gpu_decode_s": gpu[-1] - gpu[steps[-1]],
                "gpu_total_s": gpu[-1],
                "host_total_s": host[-1],
            }
        )
        return out

    def _embeddings(self, *args, **kwargs):
        out = super()._embeddings(*args, **kwargs)
        self._mark("prior")
        return out

    def _step_queued(self, step: int) -> None:
        self._mark(f"step{step}")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def params(cfg, sampler: str, steps: int, seed: int, prompt: str = PROMPT) -> GenerationParams:
    return GenerationParams(prompt, cfg.size, cfg.size, steps, 4.0, 1.0, seed=seed, sampler=sampler)


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


async def engine_cases(cfg, pipes: KandinskyPipelines, device: torch.device, results: list, save) -> None:
    engine = GenerationEngine([device], lambda d: pipes, max_batch=8, max_queue=1000, max_pending_per_user=3)
    await engine.start()
    try:
        for sampler, steps in CASES:
            steps = cfg.steps_override or steps
            t0 = time.perf_counter()  # warm-up: kernels, and the sampler's scheduler made
            await (await engine.submit(params(cfg, sampler, steps, 1, "warm-up"), user_id=10_000)).result()
            log(f"{sampler}@{steps}: warm-up request {time.perf_counter() - t0:.2f} s")
            for users, rounds in ((1, cfg.single), (16, cfg.rounds)):
                lat, walls, batches = [], [], collections.Counter()
                pipes.phases.clear()
                for r in range(rounds):
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)

                    async def one(i: int, r: int = r, sampler: str = sampler, steps: int = steps):
                        start = time.perf_counter()
                        p = params(cfg, sampler, steps, 1000 * (r + 1) + i, f"{PROMPT} #{i}")
                        result = await (await engine.submit(p, user_id=i + 1)).result()
                        return time.perf_counter() - start, result.batch_size

                    start = time.perf_counter()
                    if users == 1:
                        out = [await one(0)]
                    else:
                        out = await asyncio.gather(*(one(i) for i in range(users)))
                    walls.append(time.perf_counter() - start)
                    for dt, size in out:
                        lat.append(dt)
                        batches[size] += 1
                res = {
                    "case": f"{sampler} {steps} steps, {users} user{'s' if users > 1 else ''}",
                    "sampler": sampler,
                    "steps": steps,
                    "users": users,
                    "rounds": rounds,
                    "batch_sizes": {str(k): v for k, v in sorted(batches.items())},
                    "median_s": pct(lat, 50),
                    "p95_s": pct(lat, 95),
                    "images_per_s": users * rounds / sum(walls),
                    "peak_gib": torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None,
                    "latencies": lat,
                    "round_walls_s": walls,
                    "phases_median": {
                        k: float(np.median([p[k] for p in pipes.phases]))
                        for k in pipes.phases[0]
                        if k not in ("batch", "sampler")
                    },
                    "phases": list(pipes.phases),
                }
                results.append(res)
                log(
                    f"{res['case']}: median {res['median_s']:.3f} s, p95 {res['p95_s']:.3f} s, "
                    f"{res['images_per_s']:.3f} img/s, batches {res['batch_sizes']}, "
                    f"phases {json.dumps({k: round(v, 4) for k, v in res['phases_median'].items()})}"
                )
                save()
    finally:
        await engine.close()


def sync_counts(cfg, pipes: KandinskyPipelines, device: torch.device) -> dict:
    """Host-device synchronisations of one decoder call of 10 steps, per sampler, with our
    scheduler and with diffusers' own (the prior is run before counting)."""
    if device.type != "cuda":
        return {}
    out: dict = {}
    prior = pipes.prior(prompt=[PROMPT], guidance_scale=1.0, num_inference_steps=cfg.prior_steps, output_type="pt")
    for name in SAMPLERS:
        for kind in ("ours", "stock"):
            scheduler = pipes._scheduler(name) if kind == "ours" else STOCK[name].from_config(pipes._decoder_config)
            pipes.decoder.scheduler = scheduler
            sites: collections.Counter = collections.Counter()
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    with torch.inference_mode():
                        pipes.decoder(
                            image_embeds=prior.image_embeds,
                            negative_image_embeds=prior.negative_image_embeds,
                            height=cfg.size,
                            width=cfg.size,
                            num_inference_steps=10,
                            guidance_scale=4.0,
                            generator=torch.Generator(device).manual_seed(3),
                            output_type="pt",
                        )
            finally:
                torch.cuda.set_sync_debug_mode(0)
            for w in caught:
                if "synchroniz" in str(w.message):
                    sites[f"{Path(w.filename).name}:{w.lineno}"] += 1
            out[f"{name} {kind}"] = {"total": sum(sites.values()), "by_site": dict(sites.most_common(8))}
            log(f"syncs, 10 decoder steps, {name} {kind}: {out[f'{name} {kind}']}")
    pipes.decoder.scheduler = pipes._scheduler("ddpm")
    return out


def environment(device: torch.device) -> dict:
    import diffusers
    import transformers

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=p.total_memory / 1024**3, cuda=torch.version.cuda)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--prior-steps", type=int, default=25)
    ap.add_argument("--single", type=int, default=4, help="requests of the 1-user case")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the 16-user case")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU, few steps (checks the script)")
    cfg = ap.parse_args()
    cfg.steps_override = None
    if cfg.tiny:
        cfg.size, cfg.prior_steps, cfg.single, cfg.rounds, cfg.steps_override = 64, 3, 2, 1, 4
    device = torch.device("cpu" if cfg.tiny or not torch.cuda.is_available() else "cuda:0")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_file = out_dir / f"samplers{'_tiny' if cfg.tiny else ''}.json"
    info: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "size": cfg.size,
            "prior_steps": cfg.prior_steps,
            "guidance_scale": 4.0,
            "prior_guidance_scale": 1.0,
            "compile": "off",
            "max_batch": 8,
            "dtype": str(dtype),
            "single_requests": cfg.single,
            "rounds_16_users": cfg.rounds,
        },
        "environment": environment(device),
    }
    results: list[dict] = []

    def save() -> None:
        out_file.write_text(json.dumps({"info": info, "results": results}, indent=1, default=str))

    t0 = time.perf_counter()
    try:
        prior, decoder = build_pipelines(device, dtype, tiny=cfg.tiny)
        pipes = TimedPipelines(prior, decoder, device, prior_steps=cfg.prior_steps, compile="off", max_batch=8)
        pipes.warm_up(cfg.size, cfg.size, batch_sizes=(1, 8))
        info["build_and_warm_up_s"] = time.perf_counter() - t0
        log(f"built and warmed up in {info['build_and_warm_up_s']:.1f} s")
        info["syncs_10_steps"] = sync_counts(cfg, pipes, device)
        save()
        asyncio.run(engine_cases(cfg, pipes, device, results, save))
        by = {(r["sampler"], r["users"]): r for r in results}
        info["speedup_images_per_s"] = {
            str(users): by[("dpmpp", users)]["images_per_s"] / by[("ddpm", users)]["images_per_s"]
            for users in (1, 16)
            if ("dpmpp", users) in by and ("ddpm", users) in by
        }
        log(f"dpmpp/ddpm images/s: {info['speedup_images_per_s']}")
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        info["trace"] = traceback.format_exc()
        traceback.print_exc()
    info["total_s"] = time.perf_counter() - t0
    save()


if __name__ == "__main__":
    main()
