"""The command line: draw one picture without Telegram, prefetch the models, --help."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, png_image

from config import settings_from_env
from main import use_compile_cache


def run_main(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}  # draw needs no token
    environment.update(env, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=environment, capture_output=True, text=True
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_main(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("run", "draw", "prefetch"):
        assert command in result.stdout


def test_draw_writes_a_png_with_progress(tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    prior, decoder = tiny_models
    result = run_main(
        [
            "draw",
            "a red fox",
            "--size",
            "128x64",
            "--steps",
            "5",
            "--seed",
            "3",
            "--neg",
            "blurry, text",
            "-o",
            "fox.png",
        ],
        tmp_path,
        PRIOR_MODEL=str(prior),
        DECODER_MODEL=str(decoder),
        DEVICE="cpu",
        PRIOR_STEPS="2",
    )
    assert result.returncode == 0, result.stderr
    assert png_image((tmp_path / "fox.png").read_bytes()).size == (128, 64)
    assert "seed 3" in result.stdout
    assert "5/5" in result.stderr  # the progress bar reached the end
    # One bar while the models load, one while drawing; no library bars or log lines between.
    assert "loading models" in result.stderr and "drawing" in result.stderr
    assert "Loading pipeline components" not in result.stderr and "Loading weights" not in result.stderr
    assert " INFO " not in result.stderr and "torchvision" not in result.stderr
    assert result.stderr.index("loading models") < result.stderr.index("drawing")


def test_draw_rejects_bad_options_clearly(tmp_path: Path) -> None:
    result = run_main(["draw", "a fox", "--steps", "500"], tmp_path)
    assert result.returncode == 2
    assert "--steps needs a whole number from 1 to 100; got 500." in result.stderr
    assert not (tmp_path / "picture.png").exists()


def run_main_calls(calls: list[tuple[list[str], dict[str, str]]], cwd: Path, **env: str) -> list[Result]:
    """Several ``main.main`` calls in one interpreter (torch and diffusers are imported
    once, not once a call), each with its own settings in the environment on top of
    ``env``: each one's exit code, standard output and standard error."""
    code = (
        "import os, sys, main\n"
        f"for argv, changes in {calls!r}:\n"
        "    before = dict(os.environ)\n"
        "    os.environ.update(changes)\n"
        "    code = main.main(argv)\n"
        "    os.environ.clear()\n"
        "    os.environ.update(before)\n"
        f"    print('\\n{SEPARATOR}', code, flush=True)\n"
        f"    print('\\n{SEPARATOR}', file=sys.stderr, flush=True)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    environment.update(env, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True)
    *outs, _ = re.split(rf"\n{SEPARATOR} (-?\d+)\n", result.stdout)  # output, code, output, code, ..., the rest
    errs = result.stderr.split(f"\n{SEPARATOR}\n")[: len(calls)]
    assert len(outs) == 2 * len(calls) and len(errs) == len(calls), result.stderr
    return [Result(int(code), out, err) for out, code, err in zip(outs[::2], outs[1::2], errs, strict=True)]


SEPARATOR = "===== main.main returned"


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def test_prefetch(tiny_models: tuple[Path, Path], tiny_marian: Path, tmp_path: Path) -> None:
    prior, decoder = tiny_models
    models = {"PRIOR_MODEL": str(prior), "DECODER_MODEL": str(decoder)}
    local, hub, off, offline = run_main_calls(
        [
            (["prefetch"], {**models, "TRANSLATION_MODEL": str(tiny_marian)}),
            # The translation model is fetched too (TRANSLATE=auto, the default): offline, it cannot be.
            (["prefetch"], models),
            # TRANSLATE=off: no translation model to fetch.
            (["prefetch"], {**models, "TRANSLATE": "off", "TRANSLATION_MODEL": "Helsinki-NLP/nothing"}),
            # Offline (as here), a hub id cannot be fetched: said plainly, exit 1.
            (["prefetch"], {}),
        ],
        tmp_path,
        HF_HOME=str(tmp_path / "hf"),  # an empty cache: nothing is there already
    )
    assert local.returncode == 0 and local.stdout.count("nothing to download") == 3  # the translation model too
    assert hub.returncode == 1
    assert hub.stderr.strip().startswith("Could not download Helsinki-NLP/opus-mt-ru-en: no network")
    assert off.returncode == 0 and "nothing" not in off.stderr
    assert offline.returncode == 1
    [line] = offline.stderr.strip().splitlines()
    assert line.startswith("Could not download kandinsky-community/kandinsky-2-2-prior: ")
    assert "no network to the Hugging Face hub" in line and "stacktrace" not in line


def test_prefetch_says_a_mistyped_directory_does_not_exist(tiny_models: tuple[Path, Path], tmp_path: Path) -> None:
    missing = str(tiny_models[0]) + "-typo"
    result = run_main(["prefetch"], tmp_path, PRIOR_MODEL=missing)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"PRIOR_MODEL={missing}: no such directory")
    assert "downloading" not in result.stdout


def test_draw_rejects_a_bad_option_before_importing_torch(tmp_path: Path) -> None:
    code = "import sys, main\ncode = main.main(['draw', 'fox', '--steps', '500'])\nprint(code, 'torch' in sys.modules)"
    environment = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**environment, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "--steps needs a whole number from 1 to 100; got 500." in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was set up for drawing


def test_draw_refuses_the_telegram_only_file_option(tmp_path: Path) -> None:
    result = run_main(["draw", "a fox", "--file"], tmp_path)
    assert result.returncode == 2
    assert "--file is for Telegram" in result.stderr and "-o FILE" in result.stderr


def test_draw_options_reach_the_parser_as_typed() -> None:
    from main import draw_request, parse_command_line

    settings = settings_from_env({}, require_token=False)
    args = parse_command_line(["draw", "a fox's den", "--neg", "don't", "--seed", "7", "--ar", "16:9"])
    request = draw_request(settings, args)
    assert request.params.prompt == "a fox's den"
    assert request.params.negative_prompt == "don't"
    assert request.params.seed == 7 and request.params.width > request.params.height
    quoted = draw_request(settings, parse_command_line(["draw", "sign", "--neg", '"quoted" text --steps 3']))
    assert quoted.params.negative_prompt == '"quoted" text --steps 3'  # a value is one value, as typed


async def test_health_command(telegram, make_settings, tiny_models, tmp_path: Path) -> None:
    import asyncio

    from conftest import running_bot
    from test_http_api import free_port, wait_healthy

    port = free_port()
    not_running = await asyncio.to_thread(run_main, ["health"], tmp_path, HTTP_PORT=str(port))
    assert not_running.returncode == 1 and "unhealthy" in not_running.stderr
    async with running_bot(make_settings(telegram.url, HTTP_PORT=str(port))):
        import aiohttp

        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, f"http://127.0.0.1:{port}")
        result = await asyncio.to_thread(run_main, ["health"], tmp_path, HTTP_PORT=str(port))
    assert result.returncode == 0, result.stderr
    assert '"status": "healthy"' in result.stdout
    assert run_main(["health"], tmp_path).returncode == 2  # no HTTP_PORT: nothing to ask


def test_compiled_graphs_are_cached_in_the_data_dir(tmp_path: Path) -> None:
    settings = settings_from_env({"DATA_DIR": str(tmp_path)}, require_token=False)
    environ: dict[str, str] = {}
    use_compile_cache(settings, environ)
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "torch-compile")
    environ = {"TORCHINDUCTOR_CACHE_DIR": "/elsewhere"}
    use_compile_cache(settings, environ)
    assert environ["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere"  # the user's choice wins
