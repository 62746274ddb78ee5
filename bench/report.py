"""Render benchmark JSON files (bench/benchmark.py) as markdown tables.

python bench/report.py bench/results/<run>/results_eager.json bench/results/<run>/results_lite.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table


def main(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    env = runs[0]["info"]["environment"]
    s = runs[0]["info"]["settings"]
    print(
        f"GPU: {env.get('gpu')} ({env.get('nvidia_smi')}); python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['cuda']}, cuDNN {env['cudnn']}), diffusers {env['diffusers']}, transformers "
        f"{env['transformers']}, huggingface_hub {env.get('huggingface_hub')}\n"
    )
    print(
        f"Settings: {s['size']}x{s['size']}, prior {s['prior_steps']} steps (guidance {s['prior_guidance_scale']}), "
        f"decoder {s['decoder_steps']} steps (guidance {s['guidance_scale']}), no negative prompt, {s['dtype']}; "
        "full-size random weights.\n"
    )
    print("Commands: " + "; ".join(f"`{r['info']['command']}`" for r in runs) + "\n")
    results = [res for r in runs for res in r["results"]]
    print(table(results))
    print()
    drift = {k: v for r in runs for k, v in r["info"].get("drift", {}).items()}
    if drift:
        print("| drift vs plain diffusers, same seed and prompt | max abs (0-255) | mean abs | pixels off by > 2 |")
        print("|---|---|---|---|")
        for k, v in drift.items():
            print(f"| {k} | {v['max_abs']} | {v['mean_abs']:.3f} | {100 * v['share_pixels_diff_gt_2']:.1f}% |")
        print()
    for r in runs:
        info = r["info"]
        if "compile_warmup_s" in info:
            w = ", ".join(f"batch {b}: {t:.0f} s" for b, t in info["compile_warmup_s"].items())
            print(f"- compile warm-up ({info['mode']} mode): {w}")
        if "components" in info:
            c = info["components"]
            print(
                "- components ("
                + info["mode"]
                + "): "
                + ", ".join(f"{k} {v * 1e3:.1f} ms" if k.endswith("_s") else f"{k} {v}" for k, v in c.items())
            )
        if "sync_points" in info and "by_site" in info["sync_points"]:
            n = sum(info["sync_points"]["by_site"].values())
            print(
                f"- host-device syncs in one plain draw ({info['sync_points']['prior_steps']} prior + "
                f"{info['sync_points']['decoder_steps']} decoder steps): {n}, all but 2 in the schedulers' step()"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
