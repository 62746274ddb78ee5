"""Cold start: how soon a freshly started bot draws, and how soon at compiled speed.

Starts the engine as the bot does (generation.composition.create_engine from the settings:
COMPILE=auto, DEVICE=all by default) in a fresh process, twice: with an empty compile cache
(a new TORCHINDUCTOR_CACHE_DIR and DATA_DIR) and then with the cache the first start filled.
Each start is timed from the process start (before torch is imported) to

- the models loaded (every device),
- the first picture (a request submitted at once, drawn uncompiled while a child process
  compiles: generation.compile_cache),
- compiled speed reached: from then on every picture (as the user waits for it) took at
  most 10% more than the median once a device compiled batch size 1 (it serves one request
  at a time, the idle bot's case),
- every batch size compiled: the bot then idles, and compiles the other batch sizes
  (generation.engine.COMPILE_WHEN_IDLE_S),

and the warm start then serves N simulated users at once on all devices (images/s, p95).

    python3 bench/cold_start.py --out bench/results/DATE-cold-start/cold_start.json
    python3 bench/cold_start.py --tiny            # tiny models on the CPU: checks this script

The models are full-size random-weight pipelines (bench/models.py) saved once under --dir.
Each start has its own time limit (--cold-budget-s, --warm-budget-s): a start that does not
reach compiled speed in it says so. Writes JSON and prints a summary. The defaults fit in
9 minutes (cold 360 s, warm 90 s and the users). If the cold start needs longer, run the two
starts as two commands on one cache: ``--starts cold --work W --cold-budget-s 540``, then
``--starts warm --work W``.
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.monotonic()  # before the imports: torch's import is part of a start

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
COMPILED_TOLERANCE = 1.10  # "compiled speed": within 10% of the compiled median
PROBES_AFTER_COMPILED = 5  # single pictures drawn once every device compiled


# -- one start (a child process) ---------------------------------------------------


def since_start() -> float:
    return round(time.monotonic() - PROCESS_STARTED, 2)


class CompiledLog(logging.Handler):
    """What the background compile did, and when (generation.worker and compile_cache log it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("compil", "torch.compile failed on", "models ready")):
            self.events.append({"at_s": since_start(), "message": message})


async def one_start(budget_s: float, users: int, rounds: int, idle_s: float) -> dict:
    sys.path.insert(0, str(ROOT))
    from config import load_settings
    from generation import GenerationParams
    from generation.composition import create_engine, request_limits
    from generation.engine import ModelState

    # What the engine imports anyway (torch, diffusers, transformers): timed apart.
    __import__("generation.factory")
    imported_s = since_start()
    logging.basicConfig(level=logging.WARNING)
    compiled_log = CompiledLog()
    logging.getLogger("generation").addHandler(compiled_log)
    logging.getLogger("generation").setLevel(logging.INFO)
    settings = load_settings(None, require_token=False)
    limits = request_limits(settings)

    def request(seed: int) -> GenerationParams:
        return GenerationParams(
            "a red fox in a snowy forest, oil painting",
            limits.default_width,
            limits.default_height,
            limits.default_steps,
            limits.default_guidance,
            limits.default_prior_guidance,
            seed=seed,
        )

    result: dict = {"budget_s": budget_s, "imported_s": imported_s}
    engine = create_engine(settings)
    await engine.start()
    result["engine_created_s"] = since_start()

    async def watch_loaded() -> None:
        while engine.models_state is ModelState.LOADING:
            await asyncio.sleep(0.05)
        result["models_loaded_s"] = since_start()

    def single_compiled() -> bool:
        """Batch size 1 compiled on a device: it serves one user at a time (the other sizes,
        and the other devices, compile when the bot is idle or a queue needs them:
        generation.engine.COMPILE_WHEN_IDLE_S)."""
        done = [e["message"] for e in compiled_log.events if e["message"].startswith("compiled batch size 1 on")]
        return bool(done) or bool(engine.compiled_devices())

    watcher = asyncio.create_task(watch_loaded())
    probes: list[dict] = []
    after_compiled = 0
    seed = 0
    try:
        # One request at a time, the first submitted before the models are loaded.
        while True:
            single = single_compiled()
            submitted = time.monotonic()
            job = await engine.submit(request(seed), user_id=1)
            drawn = await job.result()
            seed += 1
            compiling = engine.status().compiling
            probes.append(
                {
                    "done_s": since_start(),
                    "picture_s": round(drawn.seconds, 3),
                    "latency_s": round(time.monotonic() - submitted, 3),
                    "compiling": compiling,
                }
            )
            probes[-1]["single_compiled"] = single
            if single:
                after_compiled += 1
            if after_compiled >= PROBES_AFTER_COMPILED or since_start() > budget_s:
                break
        await watcher
        result["first_picture_s"] = probes[0]["done_s"]
        result["compiled_devices"] = engine.compiled_devices()
        final = [p["latency_s"] for p in probes if p["single_compiled"]]
        if after_compiled >= PROBES_AFTER_COMPILED:
            compiled = statistics.median(final[-PROBES_AFTER_COMPILED:])
            result["compiled_picture_s"] = compiled
            # The first probe from which every picture was at compiled speed.
            reached = len(probes) - 1
            while reached > 0 and probes[reached - 1]["latency_s"] <= compiled * COMPILED_TOLERANCE:
                reached -= 1
            result["compiled_speed_s"] = probes[reached]["done_s"]
        else:
            result["compiled_speed_s"] = None
            result["note"] = f"compiled speed not reached in {budget_s:.0f} s"
        result["eager_picture_s"] = probes[0]["picture_s"] if probes[0]["compiling"] else None
        result["probes"] = probes
        # Then idle: the other batch sizes compile (each after COMPILE_WHEN_IDLE_S of quiet).
        deadline = time.monotonic() + idle_s
        while engine.status().compiling and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        result["all_sizes_compiled_s"] = None if engine.status().compiling else since_start()
        result["compile_events"] = compiled_log.events
        if users and result["compiled_speed_s"] is not None:
            result["users"] = await many_users(engine, request, users, rounds)
    finally:
        watcher.cancel()
        await engine.close()
    return result


async def many_users(engine, request, users: int, rounds: int) -> dict:
    """``users`` users at once, each asking again as soon as a picture arrives."""
    latencies: list[float] = []

    async def user(index: int) -> None:
        for r in range(rounds):
            submitted = time.monotonic()
            job = await engine.submit(request(10_000 + index * rounds + r), user_id=100 + index)
            await job.result()
            latencies.append(time.monotonic() - submitted)

    started = time.monotonic()
    await asyncio.gather(*(user(i) for i in range(users)))
    wall = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "users": users,
        "images": len(latencies),
        "wall_s": round(wall, 2),
        "images_per_s": round(len(latencies) / wall, 3),
        "p50_s": round(ordered[len(ordered) // 2], 2),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
    }


# -- the driver ------------------------------------------------------------------------


def ensure_models(directory: Path, tiny: bool) -> dict | None:
    """Full-size random-weight pipelines (or tiny ones) saved under ``directory``, once."""
    if (directory / "decoder" / "model_index.json").exists():
        return None
    sys.path.insert(0, str(ROOT / "bench"))
    from load_memory import save_full_size

    return save_full_size(directory, tiny, "float16")


def child_env(args: argparse.Namespace, cache: Path, data: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PRIOR_MODEL": str(args.dir / "prior"),
        "DECODER_MODEL": str(args.dir / "decoder"),
        "DEVICE": args.device,
        "COMPILE": args.compile,
        "DATA_DIR": str(data),
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "DIFFUSERS_VERBOSITY": "error",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
    }
    env.pop("TRITON_CACHE_DIR", None)  # Inductor keeps Triton's kernels in its own cache then
    if args.tiny:
        env.update(DEFAULT_WIDTH="64", DEFAULT_HEIGHT="64", DEFAULT_STEPS="2", PRIOR_STEPS="2", MAX_BATCH="1")
    return env


def run_start(args: argparse.Namespace, name: str, budget_s: float, users: int, cache: Path, data: Path) -> dict:
    command = [sys.executable, __file__, "--child", "--budget-s", str(budget_s), "--users", str(users)]
    command += ["--rounds", str(args.rounds), "--idle-s", str(args.idle_s)]
    print(f"{name} start (compile cache {cache}) ...", flush=True)
    log = data.parent / f"{name}.log"  # the start's log, with its compile child's
    try:
        with log.open("w") as errors:
            done = subprocess.run(
                command,
                env=child_env(args, cache, data),
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                timeout=budget_s + 240,
            )
    except subprocess.TimeoutExpired as exc:
        return {"start": name, "error": f"no answer in {exc.timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"start": name, "error": log.read_text()[-4000:]}
    stamps = [json.loads(p.read_text()) for p in sorted((data / "compile-cache").glob("*.json"))]
    return {"start": name, **json.loads(lines[-1]), "compile_cache_stamps": stamps}


def environment(args: argparse.Namespace) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not args.tiny
    return {
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "device": args.device,
        "compile": args.compile,
    }


def summary(result: dict) -> str:
    rows = ["start | models loaded | first picture | compiled speed | eager pic | compiled pic | users: img/s, p95"]
    for start in result["starts"]:
        if "error" in start:
            rows.append(f"{start['start']} | failed: {start['error'].strip().splitlines()[-1:]}")
            continue
        users = start.get("users")
        rows.append(
            " | ".join(
                [
                    start["start"],
                    f"{start.get('models_loaded_s', '?')} s",
                    f"{start.get('first_picture_s', '?')} s",
                    f"{start['compiled_speed_s']} s" if start.get("compiled_speed_s") else start.get("note", "-"),
                    f"{start['eager_picture_s']} s" if start.get("eager_picture_s") else "-",
                    f"{start['compiled_picture_s']} s" if start.get("compiled_picture_s") else "-",
                    f"{users['images_per_s']}, {users['p95_s']} s ({users['users']} users)" if users else "-",
                ]
            )
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/k22-full"), help="where the saved pipelines are")
    parser.add_argument("--work", type=Path, help="compile cache and DATA_DIR (default: a new temporary folder)")
    parser.add_argument("--out", type=Path, help="JSON result file")
    parser.add_argument("--device", default="all", help="DEVICE (default: all)")
    parser.add_argument("--compile", default="auto", help="COMPILE (default: auto, as the bot)")
    parser.add_argument("--users", type=int, default=0, help="simulated users after the warm start")
    parser.add_argument("--rounds", type=int, default=2, help="pictures each user asks for, one after another")
    parser.add_argument("--idle-s", type=float, default=180, help="how long to idle for every batch size to compile")
    parser.add_argument("--cold-budget-s", type=float, default=360, help="time limit of the empty-cache start")
    parser.add_argument("--warm-budget-s", type=float, default=90, help="time limit of the warm-cache start")
    parser.add_argument("--starts", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (COMPILE=default): checks this")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget-s", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(one_start(args.budget_s, args.users, args.rounds, args.idle_s))), flush=True)
        os._exit(0)  # a compile thread may still run: nothing of it is needed
    if args.tiny:
        args.device, args.compile = "cpu", "default"
        args.users, args.rounds = min(args.users, 4), 1
        if args.dir == parser.get_default("dir"):
            args.dir = Path(tempfile.gettempdir()) / "k22-tiny"
    started = time.monotonic()
    result: dict = {"environment": environment(args), "starts": []}
    saved = ensure_models(args.dir, args.tiny)
    if saved:
        result["models_saved"] = saved
        print("models saved:", saved, flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="cold-start-"))
    cache, data = work / "inductor-cache", work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in args.starts:
        if name == "warm" and result["starts"] and not list((data / "compile-cache").glob("*.json")):
            result["starts"].append({"start": name, "error": "skipped: the cold start left no compile cache"})
            continue
        budget = args.cold_budget_s if name == "cold" else args.warm_budget_s
        start = run_start(args, name, budget, args.users if name == "warm" else 0, cache, data)
        result["starts"].append(start)
        shown = {k: v for k, v in start.items() if k != "probes"}
        print(json.dumps(shown), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"in all {result['wall_s']} s")


if __name__ == "__main__":
    main()
