"""Kandinsky 2.2 Telegram bot.

python main.py                  run the bot (settings from .env and the environment)
python main.py draw "a red fox" -o fox.png [--size 512x512 --steps 30 ...]
python main.py prefetch         download both models into the Hugging Face cache
python main.py prefetch --compile   ... and compile them (COMPILE) into DATA_DIR's compile cache
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from bot.logging_setup import setup_logging
from config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from bot.draw_args import DrawRequest


def secrets_of(settings: Settings) -> list[str]:
    """What must never appear in a log line or a crash report."""
    return list(settings.secret_values)


def use_compile_cache(settings: Settings, environ: MutableMapping[str, str] = os.environ) -> None:
    """Keep torch.compile's cache (COMPILE) in DATA_DIR, beside the journal: on an H200 a
    restart then warms up in 48 s instead of 5 minutes. An explicit TORCHINDUCTOR_CACHE_DIR
    wins. Torch reads it when it first compiles, after this."""
    environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(settings.data_dir) / "torch-compile"))


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python main.py", description="Self-hosted Telegram bot drawing with Kandinsky 2.2."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (the default)")
    draw = commands.add_parser(
        "draw",
        help="draw one picture without Telegram, to check a GPU set-up",
        description="Draw one picture, with the options of /draw.",
        allow_abbrev=False,
    )
    draw.add_argument("prompt", nargs="+", help="what to draw, in quotes")
    draw.add_argument("-o", "--output", default="picture.png", help="PNG file to write (default: picture.png)")
    # The values stay text: the /draw parser checks them, with the messages users get in Telegram.
    draw.add_argument("--neg", "--no", "--negative", dest="neg", metavar="TEXT", help="what to avoid")
    draw.add_argument("--size", metavar="WxH", help="size, sides from 64 to MAX_SIDE (rounded to 64)")
    draw.add_argument("--ar", "--aspect", dest="ar", metavar="W:H", help="aspect ratio at about the default size")
    draw.add_argument("--steps", metavar="N", help="decoder steps, 1 to MAX_STEPS")
    draw.add_argument("--seed", metavar="N", help="repeat a picture exactly")
    draw.add_argument("--guidance", metavar="X", help="how closely to follow the text, 0 to 20")
    draw.add_argument("--prior-guidance", "--prior_guidance", dest="prior_guidance", metavar="X", help="0 to 20")
    draw.add_argument("--file", action="store_true", help=argparse.SUPPRESS)  # /draw's; refused below
    prefetch_parser = commands.add_parser("prefetch", help="download both models into the Hugging Face cache (HF_HOME)")
    prefetch_parser.add_argument(
        "--compile",
        action="store_true",
        help="then load them and compile them (COMPILE) on this host's GPUs, so the bot's next start is fast",
    )
    commands.add_parser("health", help="exit 0 if the running bot's /health says healthy (needs HTTP_PORT)")
    args = parser.parse_args(argv)
    if args.command == "draw" and args.file:
        draw.error("--file is for Telegram (send the PNG as a file); here the PNG is always written to -o FILE")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(sys.argv[1:] if argv is None else argv)
    command = args.command or "run"
    try:
        settings = load_settings(require_token=command == "run")
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    # The command line shows its own progress; its log shows only what went wrong.
    quiet = command in ("draw", "prefetch") and settings.log_level != "DEBUG"
    setup_logging("WARNING" if quiet else settings.log_level, secrets_of(settings))
    if command == "health":
        return health(settings)
    from bot.startup_checks import StartupError, check_data_dir, check_journal

    try:
        request = draw_request(settings, args) if command == "draw" else None
        check_data_dir(settings.data_dir)  # before torch is imported: it writes there
        if command == "run":
            check_journal(settings.data_dir)
    except (StartupError, _BadDrawOptions) as exc:
        print(exc, file=sys.stderr)
        return 2
    use_compile_cache(settings)
    if request is not None:
        return draw_once(settings, request, Path(args.output))
    if command == "prefetch":
        code = prefetch(settings)
        return prefetch_compile(settings) if code == 0 and args.compile else code
    from bot.app import run_bot  # after logging is set: importing torch takes seconds

    try:
        asyncio.run(run_bot(settings))
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C before the bot took over the signals
        return 130
    exit_without_waiting_for_workers(0)
    return 0


def exit_without_waiting_for_workers(code: int) -> None:
    """Exit now if a worker thread is still busy once the bot has stopped: loading or
    compiling the models (minutes, and a hung network file system forever) cannot be
    interrupted, and Python would wait for it at exit, past SHUTDOWN_GRACE_S and into
    Docker's SIGKILL. Everything worth keeping is in the journal by now."""
    deadline = time.monotonic() + 2.0  # idle workers end at once once told to
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    if not any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    logging.getLogger(__name__).warning("a model worker is still busy (loading or compiling): exiting without it")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _BadDrawOptions(Exception):
    """An option of ``draw`` the user must change (the /draw parser's message)."""


def draw_request(settings: Settings, args: argparse.Namespace) -> DrawRequest:
    """The CLI's arguments as a /draw request, checked without importing torch. The
    arguments arrive split by the shell and are passed on as they are, not re-quoted."""
    from bot.draw_args import DrawArgsError, request_from_options
    from bot.texts import plain, text
    from generation.composition import request_limits

    options = {
        "neg": args.neg,
        "size": args.size,
        "ar": args.ar,
        "steps": args.steps,
        "seed": args.seed,
        "guidance": args.guidance,
        "prior-guidance": args.prior_guidance,
    }
    values = {name: value for name, value in options.items() if value is not None}
    try:
        return request_from_options(" ".join(args.prompt), values, request_limits(settings))
    except DrawArgsError as exc:
        raise _BadDrawOptions(plain(text("en", exc.key, **exc.params))) from None


def quiet_libraries() -> None:
    """No loading bars or info lines from diffusers, transformers and the hub: the
    command line shows one bar for loading and one for drawing."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def draw_once(settings: Settings, request: DrawRequest, output: Path) -> int:
    """One picture through the same engine the bot uses: a bar while the models load,
    then one for the decoder's steps."""
    quiet_libraries()
    from tqdm import tqdm

    from generation import GenerationError
    from generation.composition import create_engine

    async def run() -> int:
        # Compiled before drawing, as before: a compile left running in the background would
        # hold the exit up (torch's compile workers) for a picture drawn eager anyway.
        size = (request.params.width, request.params.height)
        engine = create_engine(settings, warm_up_size=size, compile_in_background=False)
        await engine.start()
        try:
            job = await engine.submit(request.params, user_id=0)
            with tqdm(desc="loading models", bar_format="{desc}: {elapsed}") as loading:
                while not (job.started.is_set() or job.future.done()):
                    await asyncio.sleep(0.1)
                    loading.refresh()
            if not job.future.done():  # else loading failed: no bar for a drawing that never starts
                total = request.params.num_inference_steps
                with tqdm(total=total, desc="drawing", unit="step") as bar:
                    while not job.future.done():
                        await asyncio.wait({job.future}, timeout=0.2)
                        bar.update(job.step - bar.n)
                    if not job.future.cancelled() and job.future.exception() is None:
                        bar.update(total - bar.n)
            try:
                result = await job.result()
            except GenerationError as exc:
                print(f"Failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        finally:
            await engine.close()
        output.write_bytes(result.png)
        print(f"{output}: {result.width}x{result.height}, seed {result.seed}, {result.seconds:.1f} s")
        return 0

    return asyncio.run(run())


def prefetch(settings: Settings) -> int:
    """Download both pipelines into the Hugging Face cache (a local directory is left alone)."""
    models = {"PRIOR_MODEL": settings.prior_model, "DECODER_MODEL": settings.decoder_model}
    for name, model in models.items():  # a typo in a path is told before anything is fetched
        if not Path(model).is_dir() and not _is_hub_id(model):
            print(f"{name}={model}: no such directory (and not a Hugging Face id such as owner/name)", file=sys.stderr)
            return 1
    quiet_libraries()
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    for pipeline, model in zip((KandinskyV22PriorPipeline, KandinskyV22Pipeline), models.values(), strict=True):
        if Path(model).is_dir():
            print(f"{model}: a local directory, nothing to download")
            continue
        print(f"downloading {model} ...")
        try:
            path = pipeline.download(model)
        except Exception as exc:  # offline, a typo in the id, no space left
            print(f"Could not download {model}: {_download_failure(exc)}", file=sys.stderr)
            return 1
        print(f"{model}: cached in {path}")
    return 0


def prefetch_compile(settings: Settings) -> int:
    """Load the models and compile them as the bot would (every device, the default size),
    filling the compile cache in DATA_DIR (TORCHINDUCTOR_CACHE_DIR, and compile-cache.bin)."""
    from generation.composition import compile_cache_file, create_engine

    async def run() -> int:
        engine = create_engine(settings, compile_in_background=False)
        started = time.monotonic()
        print("loading and compiling the models (minutes with an empty compile cache) ...")
        try:
            await engine.reload()
        except Exception as exc:
            print(f"Could not load the models: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            await engine.close()
        if not engine.compiled_devices():
            print(f"COMPILE={settings.compile}: nothing compiled on {', '.join(engine.status().devices)}")
            return 0
        from generation.compile_cache import CompileCacheFile

        saved = await asyncio.to_thread(CompileCacheFile(compile_cache_file(settings)).save)
        print(
            f"compiled on {', '.join(engine.compiled_devices())} in {time.monotonic() - started:.0f} s;"
            f" cache in {os.environ.get('TORCHINDUCTOR_CACHE_DIR')}"
            + (f" and {compile_cache_file(settings)}" if saved else "")
        )
        return 0

    return asyncio.run(run())


def _is_hub_id(model: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if model.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _download_failure(exc: BaseException) -> str:
    """Why a download failed, in one plain line. diffusers wraps the hub's error in one
    that points to "the stacktrace above", which the command line doesn't print."""
    import socket

    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        if isinstance(error, GatedRepoError):
            return "the model is gated: accept its terms on huggingface.co and set HF_TOKEN"
        if isinstance(error, RepositoryNotFoundError):
            return "no such model on the Hugging Face hub (and no such local directory)"
    offline = any(
        isinstance(error, ConnectionError | socket.gaierror | TimeoutError)
        or type(error).__name__ in ("ConnectError", "ConnectTimeout", "OfflineModeIsEnabled")
        for error in chain
    )
    if offline:
        hub_off = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if hub_off else str(chain[-1])
        return f"no network to the Hugging Face hub ({why})"
    return f"{type(exc).__name__}: {exc}"


def health(settings: Settings) -> int:
    import json
    import urllib.request

    if settings.http_port is None:
        print("HTTP_PORT is not set: the bot serves /health only on its HTTP server", file=sys.stderr)
        return 2
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.http_port}/health", timeout=5) as response:
            status = json.load(response)
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status))
    # Reloading, or loading for the first time (a 10 GB download, then compiling): busy, not
    # broken, since the bot answers users and queues their requests. Failed models are broken.
    busy = status.get("status") in ("reloading", "compiling") or status.get("models") == "loading"
    return 0 if status.get("status") == "healthy" or busy else 1


if __name__ == "__main__":
    sys.exit(main())
