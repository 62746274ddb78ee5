"""What every benchmark mode shares: the bot's defaults, the run's setup and JSON, timing
with CUDA events, the engine's pipelines with phase marks, and the result table.

The modes (bench/eager.py, bench/multi.py, bench/pictures.py) are started through
bench/benchmark.py, which parses the common options and builds full-size random-weight
pipelines (bench/models.py) once per process.
"""

from __future__ import annotations

import collections
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from generation.params import GenerationParams  # noqa: E402
from generation.pipelines import KandinskyPipelines  # noqa: E402

PROMPT = "a cozy cabin in a snowy pine forest at dusk, warm light, detailed"
REF_SEED = 1234
GiB = 1024**3

# The bot's defaults (config.Settings; tests/test_bench_defaults.py keeps them equal). The
# GPU machine has no pydantic-settings, so they are repeated here rather than imported.
BOT_DEFAULTS = {
    "compile": "auto",
    "max_batch": 8,
    "default_width": 768,
    "default_height": 768,
    "default_steps": 50,
    "default_guidance": 4.0,
    "default_prior_guidance": 1.0,
    "prior_steps": 25,
    "default_strength": 0.5,
}


def compile_setting() -> str:
    """COMPILE from the environment, read as the bot reads it (config.Settings._compile)."""
    raw = os.environ.get("COMPILE", BOT_DEFAULTS["compile"]).lower()
    if raw in ("auto", "cudagraphs", "off", "default"):
        return raw
    if raw in ("1", "true", "yes", "on"):
        return "default"
    if raw in ("0", "false", "no"):
        return "off"
    raise SystemExit(f"COMPILE must be auto, false, true or cudagraphs, got {raw!r}")


def max_batch_setting() -> int:
    return int(os.environ.get("MAX_BATCH", BOT_DEFAULTS["max_batch"]))


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
        """Seconds of each phase: embeddings (prior and/or CLIP image encoder), the decoder
        steps (for img2img the first one includes encoding the starting picture), decode."""
        t = self.times()
        at = {n: t[i] for i, n in enumerate(self.names)}
        steps = [t[i] for i, n in enumerate(self.names) if n.startswith("step")]
        step_dt = np.diff(steps) if len(steps) > 1 else np.array([np.nan])
        step_s = float(np.median(step_dt))
        return {
            "prior_s": at["prior"] - at["start"],
            "denoise_s": (steps[-1] if steps else at["prior"]) - at["prior"],
            "step_s": step_s,
            "steps": len(steps),
            "unet_s": step_s * len(steps),  # the UNet's share: steps x median step
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

    def draw(self, batch, on_step=None, pictures=None):
        marks = Marks(self.device.type == "cuda")
        self._marks = marks
        marks.mark("start")
        out = super().draw(batch, on_step, pictures)
        marks.mark("end")
        self.records.append((len(batch), marks))
        return out

    def _step_queued(self, step: int) -> None:
        # When the step's work is queued: the CUDA event lands between this step and the next.
        self._marks.mark(f"step{step}")

    def _embeddings(self, batch, pictures, generators):
        out = super()._embeddings(batch, pictures, generators)
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


def allocated_gib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / GiB if device.type == "cuda" else None


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
            for k in ("prior_s", "denoise_s", "step_s", "steps", "unet_s", "decode_s", "gpu_total_s")
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


def image_diff(ref: Image.Image, img: Image.Image) -> dict:
    a = np.asarray(ref.convert("RGB"), dtype=np.int16)
    b = np.asarray(img.convert("RGB"), dtype=np.int16)
    d = np.abs(a - b)
    return {
        "max_abs": int(d.max()),
        "mean_abs": float(d.mean()),
        "share_pixels_diff_gt_2": float((d.max(-1) > 2).mean()),
    }


def png_image(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def unet_flops(unet, b: int, size: int, device, dtype) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    lat = size // 8
    x = torch.randn(2 * b, 4, lat, lat, device=device, dtype=dtype)
    emb = torch.randn(2 * b, unet.config.encoder_hid_dim, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(
            sample=x, timestep=t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": emb}, return_dict=False
        )
    return float(counter.get_total_flops())


def compile_counters() -> dict:
    """Dynamo/Inductor counters worth watching: graph breaks, recompiles, CUDA graph skips."""
    from torch._dynamo.utils import counters

    out = {k: dict(v) for k, v in counters.items() if k in ("stats", "graph_break", "inductor")}
    out["inductor"] = {
        k: v for k, v in out.get("inductor", {}).items() if "cudagraph" in k or k in ("fxgraph_cache_miss",)
    }
    return out


# --------------------------------------------------------------------------- one run


@dataclass
class Bench:
    """One benchmark process: its settings, the models, and the JSON it writes (rewritten
    after every case, so a run cut short keeps what it measured)."""

    cfg: object  # argparse.Namespace: size, steps, prior_steps, smoke, tiny, users, rounds
    device: torch.device
    dtype: torch.dtype
    prior: object
    decoder: object
    out_file: Path
    info: dict
    results: list[dict] = field(default_factory=list)
    flops: dict[int, float] = field(default_factory=dict)

    def save(self) -> None:
        self.out_file.write_text(json.dumps({"info": self.info, "results": self.results}, indent=1, default=str))

    def add(self, res: dict) -> None:
        self.results.append(res)
        log_row(res)
        self.save()

    def params(self, seed: int, prompt: str = PROMPT, steps: int | None = None, **kw) -> GenerationParams:
        c = self.cfg
        return GenerationParams(
            prompt,
            c.size,
            c.size,
            steps or c.steps,
            BOT_DEFAULTS["default_guidance"],
            BOT_DEFAULTS["default_prior_guidance"],
            seed=seed,
            **kw,
        )

    def count_flops(self, batches=(1, 4, 8, 16)) -> None:
        for b in batches:
            self.flops[b] = unet_flops(self.decoder.unet, b, self.cfg.size, self.device, self.dtype)
        self.info["unet_step_tflop"] = {str(b): f / 1e12 for b, f in self.flops.items()}
        log(f"UNet step TFLOP (CFG, 2 samples per image): {self.info['unet_step_tflop']}")
        self.save()


def start(cfg, mode: str) -> Bench:
    """Build the models and the run's JSON file for ``mode``."""
    from bench.models import build_pipelines, count_params

    device = torch.device("cpu" if cfg.tiny or not torch.cuda.is_available() else "cuda:0")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("BENCH_TAG") or mode  # run_gpu.sh names runs with settings after them
    out_file = out_dir / f"results_{name}{'_smoke' if cfg.smoke else ''}{'_tiny' if cfg.tiny else ''}.json"
    info: dict = {
        "mode": mode,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {
            "size": cfg.size,
            "decoder_steps": cfg.steps,
            "prior_steps": cfg.prior_steps,
            "guidance_scale": BOT_DEFAULTS["default_guidance"],
            "prior_guidance_scale": BOT_DEFAULTS["default_prior_guidance"],
            "negative_prompt": None,
            "dtype": str(dtype),
            "tiny": cfg.tiny,
            "smoke": cfg.smoke,
        },
        "environment": environment(device),
        "drift": {},
    }
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
    info["weights_gib"] = allocated_gib(device)
    log(f"built in {info['build_s']:.1f} s: {info['params']}, {info['weights_gib']} GiB")
    bench = Bench(cfg, device, dtype, prior, decoder, out_file, info)
    bench.save()
    return bench


def finish(bench: Bench, run: Callable[[Bench], None], started: float) -> bool:
    """Run a mode, keep any error in the JSON, print the table. True if it went through."""
    import traceback

    try:
        run(bench)
    except Exception as exc:
        bench.info["error"] = f"{type(exc).__name__}: {exc}"
        bench.info["trace"] = traceback.format_exc()
        traceback.print_exc()
    bench.info["total_s"] = time.perf_counter() - started
    bench.save()
    c = bench.cfg
    print()
    print(
        f"{bench.info['environment'].get('gpu', 'CPU')} | torch {torch.__version__} | {c.size}x{c.size}, "
        f"prior {c.prior_steps} steps, decoder {c.steps} steps | mode {bench.info['mode']}"
    )
    print(table(bench.results))
    if bench.info["drift"]:
        print("drift vs plain diffusers (same seed and prompt):", json.dumps(bench.info["drift"]))
    print(f"wrote {bench.out_file}")
    return "error" not in bench.info


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
