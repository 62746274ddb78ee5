"""Peak host memory while the full-size pipelines load onto a GPU.

docker-compose.yml gives the bot's container 8 GB of host memory, and Kandinsky 2.2 is
about 9.2 GiB in fp16. This saves full-size random-weight pipelines (bench/models.py) in
the hub layout with ``save_pretrained``, then loads them in a fresh process per way of
loading and reads that process's peak resident memory:

- ``host``: what ``KandinskyPipelines.load`` did before: ``from_pretrained`` into host
  memory, then ``.to(device)``;
- ``direct``: ``KandinskyPipelines.load`` as it is (``device_map``: each tensor goes from
  the file to the GPU).

Peak RSS is the kernel's VmHWM; a sampling thread (every 5 ms) splits it into anonymous
memory (what the container's limit cannot reclaim) and mapped file pages (the
safetensors files, read through mmap: page cache, which the kernel can drop).

    python bench/load_memory.py --dir /tmp/k22 --out results.json   # on a CUDA machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")
GIB = 2**30


def status() -> dict[str, int]:
    """This process's memory figures from /proc/self/status, in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            values[name] = int(rest.split()[0]) * 1024
    return values


class PeakSampler(threading.Thread):
    def __init__(self, interval_s: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.peak: dict[str, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for name, value in status().items():
                self.peak[name] = max(self.peak.get(name, 0), value)
            time.sleep(self.interval_s)

    def stop(self) -> dict[str, int]:
        self._done.set()
        self.join()
        return self.peak


def measure(way: str, prior_dir: str, decoder_dir: str, device_name: str) -> dict:
    """Load once in this process (a fresh one) and report its memory."""
    import torch

    device = torch.device(device_name)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    torch.zeros(1, device=device)  # the CUDA context is there before we start counting
    import diffusers
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    import generation.pipelines
    from generation.pipelines import KandinskyPipelines

    before = status()
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    if way == "host":
        prior = KandinskyV22PriorPipeline.from_pretrained(prior_dir, dtype=dtype)
        decoder = KandinskyV22Pipeline.from_pretrained(decoder_dir, dtype=dtype)
        for pipe in (prior, decoder):
            pipe.to(device)
        modules = [m for p in (prior, decoder) for m in p.components.values() if isinstance(m, torch.nn.Module)]
    else:
        pipes = KandinskyPipelines.load(prior_dir, decoder_dir, device, dtype)
        modules = [
            m for p in (pipes.prior, pipes.decoder) for m in p.components.values() if isinstance(m, torch.nn.Module)
        ]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    after = status()
    placed = {str(p.device) for m in modules for p in m.parameters()}
    dtypes = {str(p.dtype) for m in modules for p in m.parameters()}
    return {
        "way": way,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(after["VmHWM"] / GIB, 2),  # the kernel's high-water mark
        "sampled_peak_gib": {name: round(peak.get(name, 0) / GIB, 2) for name in FIELDS if name != "VmHWM"},
        "rss_before_gib": round(before["VmRSS"] / GIB, 2),
        "rss_after_gib": round(after["VmRSS"] / GIB, 2),
        "anon_after_gib": round(after["RssAnon"] / GIB, 2),
        "gpu_allocated_gib": round(torch.cuda.memory_allocated(device) / GIB, 2) if device.type == "cuda" else None,
        "parameters_on": sorted(placed),
        "parameter_dtypes": sorted(dtypes),
        "diffusers": diffusers.__version__,
        "code": str(Path(generation.pipelines.__file__).relative_to(ROOT)),
    }


def save_full_size(directory: Path, tiny: bool, dtype_name: str) -> dict:
    import torch
    from models import build_pipelines, count_params

    started = time.perf_counter()
    if tiny:
        prior, decoder = build_pipelines(torch.device("cpu"), torch.float32, tiny=True)
    else:
        prior, decoder = build_pipelines(torch.device("cuda"), getattr(torch, dtype_name))
    modules = [m for p in (prior, decoder) for m in p.components.values() if isinstance(m, torch.nn.Module)]
    params = count_params(*modules)
    prior.save_pretrained(directory / "prior")
    decoder.save_pretrained(directory / "decoder")
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    return {"parameters": params, "bytes_on_disk": size, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/k22-full"), help="where the saved pipelines go")
    parser.add_argument("--out", type=Path, help="JSON result file")
    parser.add_argument("--ways", nargs="+", default=["host", "direct"], choices=["host", "direct"])
    parser.add_argument(
        "--saved-dtype",
        choices=["float16", "float32"],
        default="float16",
        help="precision of the saved files; they load as float16 either way (float32 files are converted)",
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: checks this script")
    parser.add_argument("--measure", choices=["host", "direct"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    prior_dir, decoder_dir = str(args.dir / "prior"), str(args.dir / "decoder")
    if args.measure:
        print(json.dumps(measure(args.measure, prior_dir, decoder_dir, "cpu" if args.tiny else "cuda:0")), flush=True)
        return

    import torch

    result: dict = {
        "gpu": None if args.tiny else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "host_memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "compose_memory_limit": "8g",
        "saved_dtype": args.saved_dtype,
        "loaded_dtype": "float32" if args.tiny else "float16",
    }
    if not (args.dir / "decoder" / "model_index.json").exists():
        result["saved"] = save_full_size(args.dir, args.tiny, args.saved_dtype)
        print("saved", result["saved"], flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error"}
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    result["loads"] = []
    for way in args.ways:
        command = [sys.executable, __file__, "--dir", str(args.dir), "--measure", way]
        command += ["--tiny"] if args.tiny else []
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        load = json.loads(lines[-1]) if done.returncode == 0 and lines else {"way": way, "error": done.stderr[-3000:]}
        print(load, flush=True)
        result["loads"].append(load)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
