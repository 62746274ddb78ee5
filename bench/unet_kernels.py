"""How fast can Inductor make one decoder UNet step? One preset per process (Inductor's
config is global), full-size random weights, CFG batch (2 samples per picture).

    python bench/unet_kernels.py --preset default --batches 1 8
    python bench/unet_kernels.py --preset recipe --batches 8

Presets: default (the project's COMPILE=true kernels); recipe (diffusers' SDXL speed-up
flags on top: 1x1 convs as matrix products, coordinate-descent tuning of Triton kernels,
no epilogue fusion); gemm-autotune (max-autotune for matrix products only, cuDNN convs).
Prints and writes one JSON line per batch: compile seconds, step ms, TFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import environment, gpu_time, unet_flops  # noqa: E402
from bench.models import build_pipelines  # noqa: E402


def apply_preset(name: str) -> str:
    """Set Inductor's config for ``name``; return the torch.compile mode."""
    cfg = torch._inductor.config
    if name == "default":
        return "default"
    if name == "recipe":
        cfg.conv_1x1_as_mm = True
        cfg.coordinate_descent_tuning = True
        cfg.coordinate_descent_check_all_directions = True
        cfg.epilogue_fusion = False
        return "default"
    if name == "gemm-autotune":
        cfg.max_autotune_conv_backends = "ATEN"
        cfg.conv_1x1_as_mm = True
        return "max-autotune-no-cudagraphs"
    raise SystemExit(f"unknown preset {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--batches", type=int, nargs="+", default=[8])
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--out", default="/tmp/k22bench")
    args = ap.parse_args()
    device, dtype = torch.device("cuda:0"), torch.float16
    mode = apply_preset(args.preset)
    _, decoder = build_pipelines(device, dtype)
    unet = decoder.unet
    compiled = torch.compile(unet, mode=mode, dynamic=False)
    lat = args.size // 8
    rows = []
    for b in args.batches:
        x = torch.randn(2 * b, 4, lat, lat, device=device, dtype=dtype)
        emb = torch.randn(2 * b, unet.config.encoder_hid_dim, device=device, dtype=dtype)
        t = torch.tensor(500, device=device)

        def step(x=x, emb=emb, t=t):
            with torch.inference_mode():
                return compiled(
                    sample=x, timestep=t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": emb}
                )

        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
        step_s = gpu_time(step, device, iters=20, warmup=3)

        flops = unet_flops(unet, b, args.size, device, dtype)
        row = {
            "preset": args.preset,
            "mode": mode,
            "batch": b,
            "compile_s": compile_s,
            "step_ms": step_s * 1000,
            "tflops": flops / step_s / 1e12,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results_unet_{args.preset}.json").write_text(
        json.dumps({"environment": environment(device), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
