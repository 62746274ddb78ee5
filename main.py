"""Kandinsky 2.2 Telegram bot.

python main.py                  run the bot (settings from .env and the environment)
python main.py draw "a red fox" -o fox.png [--size 512x512 --steps 30 ...]
python main.py prefetch         download both models into the Hugging Face cache
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
from collections.abc import MutableMapping
from pathlib import Path

from config import ConfigError, Settings, load_settings


class RedactSecrets(logging.Filter):
    """Replace the bot token wherever it would appear in a log line (e.g. a URL)."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, "<redacted>")
            record.msg, record.args = message, None
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(*settings.secret_values))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)


def use_compile_cache(settings: Settings, environ: MutableMapping[str, str] = os.environ) -> None:
    """Keep torch.compile's cache (COMPILE) in DATA_DIR, beside the journal: on an H200 a
    restart then warms up in 48 s instead of 5 minutes. An explicit TORCHINDUCTOR_CACHE_DIR
    wins. Torch reads it when it first compiles, after this."""
    environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(settings.data_dir) / "torch-compile"))


def parse_command_line(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python main.py", description="Self-hosted Telegram bot drawing with Kandinsky 2.2."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (the default)")
    draw = commands.add_parser(
        "draw",
        help="draw one picture without Telegram, to check a GPU set-up",
        description="Draw one picture. Options after the prompt are those of /draw: --neg TEXT, "
        "--size WxH, --ar W:H, --steps N, --seed N, --guidance X, --prior-guidance X.",
    )
    draw.add_argument("prompt", help="what to draw, in quotes")
    draw.add_argument("-o", "--output", default="picture.png", help="PNG file to write (default: picture.png)")
    commands.add_parser("prefetch", help="download both models into the Hugging Face cache (HF_HOME)")
    commands.add_parser("health", help="exit 0 if the running bot's /health says healthy (needs HTTP_PORT)")
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "draw":
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return args, rest


def main(argv: list[str] | None = None) -> int:
    args, draw_options = parse_command_line(sys.argv[1:] if argv is None else argv)
    command = args.command or "run"
    try:
        settings = load_settings(require_token=command == "run")
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    use_compile_cache(settings)
    if command == "draw":
        return draw_once(settings, args.prompt, draw_options, Path(args.output))
    if command == "prefetch":
        return prefetch(settings)
    if command == "health":
        return health(settings)
    from bot.app import run_bot  # after logging is set: importing torch takes seconds

    asyncio.run(run_bot(settings))
    return 0


def draw_once(settings: Settings, prompt: str, options: list[str], output: Path) -> int:
    """One picture through the same engine the bot uses, with a progress bar."""
    from tqdm import tqdm

    from bot.draw_args import DrawArgsError, parse_draw_args
    from bot.texts import plain, text
    from generation import GenerationError
    from generation.composition import create_engine, request_limits

    try:
        request = parse_draw_args(" ".join([prompt, *map(shlex.quote, options)]), request_limits(settings))
    except DrawArgsError as exc:
        print(plain(text("en", exc.key, **exc.params)), file=sys.stderr)
        return 2

    async def run() -> int:
        engine = create_engine(settings, warm_up_size=(request.params.width, request.params.height))
        await engine.start()
        try:
            job = await engine.submit(request.params, user_id=0)
            total = request.params.num_inference_steps
            with tqdm(total=total, desc="drawing", unit="step") as bar:
                while not job.future.done():
                    await asyncio.wait({job.future}, timeout=0.2)
                    bar.update(job.step - bar.n)
                try:
                    result = await job.result()
                except GenerationError as exc:
                    print(f"Failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    return 1
                bar.update(total - bar.n)
        finally:
            await engine.close()
        output.write_bytes(result.png)
        print(f"{output}: {result.width}x{result.height}, seed {result.seed}, {result.seconds:.1f} s")
        return 0

    return asyncio.run(run())


def prefetch(settings: Settings) -> int:
    """Download both pipelines into the Hugging Face cache (a local directory is left alone)."""
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline

    for pipeline, model in (
        (KandinskyV22PriorPipeline, settings.prior_model),
        (KandinskyV22Pipeline, settings.decoder_model),
    ):
        if Path(model).is_dir():
            print(f"{model}: a local directory, nothing to download")
            continue
        print(f"downloading {model} ...")
        try:
            path = pipeline.download(model)
        except Exception as exc:  # offline, a typo in the id, no space left
            print(f"Could not download {model}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"{model}: cached in {path}")
    return 0


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
    busy = status.get("status") == "reloading" or status.get("models") == "loading"
    return 0 if status.get("status") == "healthy" or busy else 1


if __name__ == "__main__":
    sys.exit(main())
