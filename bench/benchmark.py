"""GPU benchmark of Kandinsky 2.2 serving: full-size pipelines with random weights, built
directly on the GPU (bench/models.py); timings are real, pictures are noise.

One mode per process (bench/run_gpu.sh runs several back to back):

  multi     the production path with the bot's defaults (COMPILE=auto, MAX_BATCH 8):
            1 and 16 users through the engine, warm-up per batch size (bench/multi.py)
  pictures  pictures from pictures and the upscale: text, img2img, variation and mix
            alone; 16 users sending a mix of kinds; a 2x upscale (bench/pictures.py)
  eager     without torch.compile: component timings, plain diffusers, the engine at
            1, 4, 16 users, the old CPU-offload service (bench/eager.py)

The modes "compile", "lite" and "ideas" of earlier runs are gone: "lite" and "ideas" are
now the bot's COMPILE=true and COMPILE=cudagraphs (run them with --mode multi and COMPILE
set), and "compile" (max-autotune) never finished warming up within a lease. Their
results stay in bench/results/.

    python bench/benchmark.py --mode multi --out /tmp/bench           # on a CUDA machine
    python bench/benchmark.py --mode pictures --tiny --smoke          # CPU check of the script

Each mode writes ``results_<mode>.json`` under --out (rewritten after every case) and
prints a table; bench/report.py renders the JSON files as markdown.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BOT_DEFAULTS, finish, start  # noqa: E402

MODES = {"multi": "bench.multi", "pictures": "bench.pictures", "eager": "bench.eager"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=tuple(MODES), default="multi")
    ap.add_argument("--out", default=os.environ.get("OUT", str(ROOT / "bench" / "results" / "raw")))
    ap.add_argument("--size", type=int, default=BOT_DEFAULTS["default_width"])
    ap.add_argument("--steps", type=int, default=BOT_DEFAULTS["default_steps"])
    ap.add_argument("--prior-steps", type=int, default=BOT_DEFAULTS["prior_steps"])
    ap.add_argument("--smoke", action="store_true", help="small size and few steps/rounds: checks the code paths")
    ap.add_argument("--tiny", action="store_true", help="tiny models on the CPU (no GPU needed)")
    cfg = ap.parse_args(argv)
    if cfg.smoke:
        cfg.size, cfg.steps, cfg.prior_steps = 256, 4, 3
    cfg.users = [1, 4, 16]
    cfg.rounds = {1: 2, 4: 1, 16: 1} if cfg.smoke else {1: 8, 4: 3, 16: 2}
    cfg.plain_runs = 2 if cfg.smoke else 5
    cfg.offload_runs = 1 if cfg.smoke else 3
    return cfg


def main() -> None:
    cfg = parse()
    started = time.perf_counter()
    bench = start(cfg, cfg.mode)
    if not finish(bench, importlib.import_module(MODES[cfg.mode]).run, started):
        sys.exit(1)


if __name__ == "__main__":
    main()
