"""Kandinsky 2.2 Telegram bot.

python main.py                  run the bot (settings from .env and the environment)
python main.py draw "a red fox" -o fox.png [--size 512x512 --steps 30 ...]
python main.py draw "a watercolor" --image in.png --strength 0.6 -o out.png
python main.py vary in.png [text] -o out.png
python main.py mix a.png b.png "in winter" --weights 0.4,0.4,0.2 -o out.png
python main.py prefetch         download the models (and the translation model) into the Hugging Face cache
python main.py prefetch --compile  and compile them as the bot will: a fast next start (on the GPU host)
python main.py upscale in.png -o out.png [--seed N --steps N --strength X]
                                a picture at twice the size (Lanczos, then img2img)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import MutableMapping, Sequence
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
    draw.add_argument("--image", metavar="FILE", help="redraw this picture (img2img) as the text says")
    draw.add_argument("--strength", metavar="X", help="with --image: how much may change, 0.05 to 1 (DEFAULT_STRENGTH)")
    _drawing_options(draw)
    vary = commands.add_parser(
        "vary",
        help="draw a variation of a picture",
        description="Draw a new picture like IMAGE, optionally steered by a text.",
        allow_abbrev=False,
    )
    vary.add_argument("image", metavar="IMAGE", help="the picture to vary")
    vary.add_argument("prompt", nargs="*", help="a text that steers it (optional)")
    vary.add_argument("--weights", metavar="P,T", help="weights of the picture and the text (default 0.7,0.3)")
    _drawing_options(vary)
    mix = commands.add_parser(
        "mix",
        help="blend 2 to 4 pictures and texts",
        description="Blend 2 to 4 inputs: each an existing picture file, else a text.",
        allow_abbrev=False,
    )
    mix.add_argument("inputs", nargs="+", metavar="INPUT", help="a picture file or a text, 2 to 4 in all")
    mix.add_argument("--weights", metavar="W,W,...", help="one weight per input, in order (default: equal)")
    _drawing_options(mix)
    upscale = commands.add_parser(
        "upscale",
        help="a picture at twice the size, refined by Kandinsky (as the Upscale 2x button)",
        description="Enlarge a picture 2x (the longer side at most MAX_UPSCALE_SIDE) with Lanczos, "
        "then refine it by img2img at UPSCALE_STRENGTH.",
        allow_abbrev=False,
    )
    upscale.add_argument("input", type=Path, help="the picture to enlarge")
    upscale.add_argument("-o", "--output", default="upscaled.png", help="PNG file to write (default: upscaled.png)")
    upscale.add_argument("--seed", type=int, metavar="N", help="repeat an upscale exactly")
    upscale.add_argument("--steps", type=int, metavar="N", help="decoder steps before strength (default DEFAULT_STEPS)")
    upscale.add_argument("--strength", type=float, metavar="X", help="how much may change, 0.05 to 1.0")
    prefetch_command = commands.add_parser(
        "prefetch", help="download both models and the translation model into the Hugging Face cache (HF_HOME)"
    )
    prefetch_command.add_argument(
        "--compile",
        action="store_true",
        help="then compile the models as the bot does (COMPILE), filling the compile cache in DATA_DIR",
    )
    commands.add_parser("health", help="exit 0 if the running bot's /health says healthy (needs HTTP_PORT)")
    args = parser.parse_args(argv)
    if args.command in DRAWING_COMMANDS and args.file:
        draw.error("--file is for Telegram (send the PNG as a file); here the PNG is always written to -o FILE")
    return args


DRAWING_COMMANDS = ("draw", "vary", "mix")


def _drawing_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("-o", "--output", default="picture.png", help="PNG file to write (default: picture.png)")
    # The values stay text: the /draw parser checks them, with the messages users get in Telegram.
    command.add_argument("--neg", "--no", "--negative", dest="neg", metavar="TEXT", help="what to avoid")
    command.add_argument("--size", metavar="WxH", help="size, sides from 64 to MAX_SIDE (rounded to 64)")
    command.add_argument("--ar", "--aspect", dest="ar", metavar="W:H", help="aspect ratio at about the default size")
    command.add_argument("--steps", metavar="N", help="decoder steps, 1 to MAX_STEPS")
    command.add_argument("--seed", metavar="N", help="repeat a picture exactly")
    command.add_argument("--guidance", metavar="X", help="how closely to follow the text, 0 to 20")
    command.add_argument("--prior-guidance", "--prior_guidance", dest="prior_guidance", metavar="X", help="0 to 20")
    command.add_argument("--sampler", metavar="NAME", help="ddpm, ddim or dpmpp (default: DEFAULT_SAMPLER)")
    command.add_argument("--style", metavar="NAME", help="wrap the description in a style's words (see /styles)")
    command.add_argument(
        "--raw", action="store_true", help="draw the text as typed (no Russian-to-English translation)"
    )
    command.add_argument("--file", action="store_true", help=argparse.SUPPRESS)  # /draw's; refused below


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(sys.argv[1:] if argv is None else argv)
    command = args.command or "run"
    try:
        settings = load_settings(require_token=command == "run")
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    # The command line shows its own progress; its log shows only what went wrong.
    quiet = command in (*DRAWING_COMMANDS, "upscale", "prefetch") and settings.log_level != "DEBUG"
    setup_logging("WARNING" if quiet else settings.log_level, secrets_of(settings))
    if command == "health":
        return health(settings)
    from bot.startup_checks import StartupError, check_data_dir, check_journal

    try:
        request, images = draw_job(settings, args) if command in DRAWING_COMMANDS else (None, [])
        upscaling = upscale_request(settings, args) if command == "upscale" else None
        check_data_dir(settings.data_dir)  # before torch is imported: it writes there
        if command == "run" and settings.database_url is None:  # else the jobs are in PostgreSQL
            check_journal(settings.data_dir)
    except (StartupError, _BadDrawOptions) as exc:
        print(exc, file=sys.stderr)
        return 2
    use_compile_cache(settings)
    if request is not None:
        return draw_once(settings, request, Path(args.output), images)
    if upscaling is not None:
        return draw_once(settings, upscaling[0], Path(args.output), upscaling[1])
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
    """The request of :func:`draw_job`."""
    return draw_job(settings, args)[0]


def draw_job(settings: Settings, args: argparse.Namespace) -> tuple[DrawRequest, list[bytes]]:
    """The CLI's arguments as a request and the pictures it draws from, checked without
    importing torch. The arguments arrive split by the shell and are passed on as they
    are, not re-quoted."""
    from bot.draw_args import DrawArgsError
    from bot.texts import plain, text

    options = {
        "neg": args.neg,
        "size": args.size,
        "ar": args.ar,
        "steps": args.steps,
        "seed": args.seed,
        "guidance": args.guidance,
        "prior-guidance": args.prior_guidance,
        "sampler": args.sampler,
        "style": args.style,
    }
    values = {name: value for name, value in options.items() if value is not None}
    try:
        request, images = _request(settings, args, values)
        return dataclasses.replace(request, raw=args.raw), images
    except DrawArgsError as exc:
        raise _BadDrawOptions(plain(text("en", exc.key, **exc.params))) from None


def _request(settings: Settings, args: argparse.Namespace, values: dict[str, str]) -> tuple[DrawRequest, list[bytes]]:
    """draw (text, or img2img with --image), vary, mix. Raises DrawArgsError or _BadDrawOptions."""
    import dataclasses

    from bot.draw_args import request_from_options
    from bot.picture_args import (
        base_request,
        check_picture_sync,
        img2img_params,
        mix_params,
        mix_parts,
        parse_strength,
        variation_parts,
    )
    from generation.composition import request_limits

    limits = request_limits(settings)
    if args.command == "draw":
        request = request_from_options(" ".join(args.prompt), values, limits)
        if args.image is None:
            if args.strength is not None:
                raise _BadDrawOptions("--strength needs --image FILE: the picture to redraw")
            return request, []
        strength = parse_strength(args.strength, limits)
        image = _read_picture(args.image)
        size = check_picture_sync(image)
        keep_shape = "size" not in values and "ar" not in values
        params = img2img_params(request.params, strength, size if keep_shape else None, limits)
        return dataclasses.replace(request, params=params), [image]
    if args.command == "vary":
        text = " ".join(args.prompt)
        request = base_request(text, values, limits)
        parts = variation_parts(text, limits, args.weights)
        image = _read_picture(args.image)
        check_picture_sync(image)
        return dataclasses.replace(request, params=mix_params(request.params, parts)), [image]
    # mix: an existing file is a picture, anything else a text
    inputs: list[str | int] = []
    images: list[bytes] = []
    for item in args.inputs:
        if Path(item).is_file():
            inputs.append(len(images))
            images.append(_read_picture(item))
        else:
            inputs.append(item)
    parts = mix_parts(inputs, args.weights, limits)
    texts = [part.text for part in parts if part.text]
    request = base_request(None, values, limits)
    for image in images:
        check_picture_sync(image)
    params = dataclasses.replace(mix_params(request.params, parts), prompt=" · ".join(texts))
    return dataclasses.replace(request, params=params), images


def _read_picture(path: str) -> bytes:
    from generation.images import MAX_IMAGE_BYTES

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_IMAGE_BYTES + 1)  # more is refused: no need to read it all
    except OSError as exc:
        raise _BadDrawOptions(f"Cannot read the picture {path}: {exc.strerror or exc}") from None
    return data


def upscale_request(settings: Settings, args: argparse.Namespace) -> tuple[DrawRequest, tuple[bytes, ...]]:
    """``upscale``'s arguments as a request and its picture: the input checked and
    enlarged with Lanczos (the img2img starts from it), without importing torch."""
    import secrets

    from bot.draw_args import SEED_MAX, DrawRequest
    from generation.composition import request_limits
    from generation.images import BadImage, open_image
    from generation.params import STRENGTH_MAX, STRENGTH_MIN
    from generation.upscale import enlarge, upscale_params, upscale_size

    limits = request_limits(settings)
    steps = limits.default_steps if args.steps is None else args.steps
    strength = limits.upscale_strength if args.strength is None else args.strength
    if not 1 <= steps <= limits.max_steps:
        raise _BadDrawOptions(f"--steps must be a whole number from 1 to {limits.max_steps}")
    if not STRENGTH_MIN <= strength <= STRENGTH_MAX:
        raise _BadDrawOptions(f"--strength must be a number from {STRENGTH_MIN} to {STRENGTH_MAX}")
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise _BadDrawOptions(f"--seed must be a whole number from 0 to {SEED_MAX}")
    try:
        data = args.input.read_bytes()
        image = open_image(data)
    except OSError as exc:
        raise _BadDrawOptions(f"{args.input}: {exc.strerror or exc}") from None
    except BadImage as exc:
        raise _BadDrawOptions(f"{args.input}: not a picture that can be drawn from ({exc})") from None
    size = upscale_size(image.width, image.height, limits.max_upscale_side)
    if size is None:
        raise _BadDrawOptions(
            f"{args.input}: already {image.width}x{image.height}; MAX_UPSCALE_SIDE is {limits.max_upscale_side}"
        )
    params = upscale_params(
        size,
        prompt=args.input.name,
        steps=steps,
        guidance=limits.default_guidance,
        prior_guidance=limits.default_prior_guidance,
        strength=strength,
        seed=secrets.randbelow(SEED_MAX + 1) if args.seed is None else args.seed,
    )
    # raw: its "prompt" is the file name, never translated
    request = DrawRequest(params=params, as_document=True, seed_given=args.seed is not None, raw=True)
    return request, (enlarge(data, size),)


def quiet_libraries() -> None:
    """No loading bars or info lines from diffusers, transformers and the hub: the
    command line shows one bar for loading and one for drawing."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def draw_once(settings: Settings, request: DrawRequest, output: Path, images: Sequence[bytes] = ()) -> int:
    """One picture through the same engine the bot uses: a bar while the models load,
    then one for the decoder's steps. ``images``: the pictures the request draws from."""
    quiet_libraries()
    from tqdm import tqdm

    from generation import GenerationError
    from generation.composition import create_engine, create_translator
    from generation.pipelines import decoder_steps

    async def run() -> int:
        # Compiled before drawing: a compile left running in the background would hold the
        # exit up for a picture drawn uncompiled anyway.
        size = (request.params.width, request.params.height)
        engine = create_engine(settings, warm_up_size=size, compile_in_background=False)
        await engine.start()
        translator = create_translator(settings)  # loads its model only for a text with Cyrillic
        try:
            params = await translator.translate_params(request.params, translate=not request.raw)
            if params.typed_prompt is not None:
                print(f"drawing the translation: {params.prompt}")
            elif translator.error is not None:
                print(f"Not translated ({translator.error}): drawing the text as typed", file=sys.stderr)
            job = await engine.submit(params, user_id=0, images=images)
            with tqdm(desc="loading models", bar_format="{desc}: {elapsed}") as loading:
                while not (job.started.is_set() or job.future.done()):
                    await asyncio.sleep(0.1)
                    loading.refresh()
            if not job.future.done():  # else loading failed: no bar for a drawing that never starts
                total = decoder_steps(request.params)  # an img2img runs steps x strength
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
            translator.close()
            await engine.close()
        output.write_bytes(result.png)
        print(f"{output}: {result.width}x{result.height}, seed {result.seed}, {result.seconds:.1f} s")
        return 0

    return asyncio.run(run())


def prefetch(settings: Settings) -> int:
    """Download both pipelines, and the translation model unless TRANSLATE=off, into the
    Hugging Face cache (a local directory is left alone)."""
    models = {"PRIOR_MODEL": settings.prior_model, "DECODER_MODEL": settings.decoder_model}
    if settings.translate != "off":
        models["TRANSLATION_MODEL"] = settings.translation_model
    for name, model in models.items():  # a typo in a path is told before anything is fetched
        if not Path(model).is_dir() and not _is_hub_id(model):
            print(f"{name}={model}: no such directory (and not a Hugging Face id such as owner/name)", file=sys.stderr)
            return 1
    quiet_libraries()
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    from generation.translation import download_model

    downloads = (KandinskyV22PriorPipeline.download, KandinskyV22Pipeline.download, download_model)
    for download, model in zip(downloads, models.values(), strict=False):
        if Path(model).is_dir():
            print(f"{model}: a local directory, nothing to download")
            continue
        print(f"downloading {model} ...")
        try:
            path = download(model)
        except Exception as exc:  # offline, a typo in the id, no space left
            print(f"Could not download {model}: {_download_failure(exc)}", file=sys.stderr)
            return 1
        print(f"{model}: cached in {path}")
    return 0


def prefetch_compile(settings: Settings) -> int:
    """Compile the models as the bot will (each device, the default size), so that the
    bot starts with a warm compile cache in DATA_DIR (generation.compile_cache). The cache
    is per GPU: each of DEVICE's GPUs is compiled, one after another."""
    import time

    from generation.compile_cache import compile_now
    from generation.composition import compile_job
    from generation.devices import resolve_devices

    for device in resolve_devices(settings.device):
        job = compile_job(settings, str(device))
        print(f"compiling on {job.device} (minutes with an empty compile cache) ...")
        started = time.monotonic()
        try:
            compiled = compile_now(job)
        except Exception as exc:  # the models could not load
            print(f"Could not compile: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if not compiled:
            print(f"Nothing compiled (COMPILE={settings.compile} on {job.device}, or the log above says why)")
            return 1 if settings.compile in ("default", "cudagraphs") else 0
        print(f"compiled in {time.monotonic() - started:.0f} s; compile cache in {job.cache_dir}")
    return 0


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
