"""The command line draws pictures from pictures: draw --image, vary, mix; the engine's
own pixels, and a clear one-line error for bad input, before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, png_image
from PIL import Image

from config import settings_from_env
from generation import GenerationParams
from generation.params import MixPart
from generation.pipelines import KandinskyPipelines
from main import draw_job, parse_command_line


def picture(seed: int, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def save(image: Image.Image, path: Path) -> Path:
    image.save(path, "PNG")
    return path


WIDE = picture(1, (200, 100))  # 2:1 -> 192x64 at the 128x128 default's pixel count
SQUARE = picture(2, (90, 90))


def environment(**env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}  # drawing needs no token
    return {**base, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **env}


def run_many(calls: list[list[str]], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Several ``main.main`` calls in one process (torch is imported once); prints each
    exit code and, at the end, whether torch was imported."""
    code = (
        "import sys, main\n"
        f"for argv in {calls!r}:\n"
        "    print('exit', main.main(argv), flush=True)\n"
        "    print('=====', file=sys.stderr, flush=True)\n"
        "print('torch', 'torch' in sys.modules)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environment(**env), capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def ours(tiny_models: tuple[Path, Path]) -> KandinskyPipelines:
    prior, decoder = tiny_models
    return KandinskyPipelines.load(str(prior), str(decoder), torch.device("cpu"), torch.float32, prior_steps=2)


def test_draw_image_vary_and_mix_write_the_engines_pictures(
    tiny_models: tuple[Path, Path], tmp_path: Path, ours: KandinskyPipelines
) -> None:
    prior, decoder = tiny_models
    wide, square = save(WIDE, tmp_path / "wide.png"), save(SQUARE, tmp_path / "square.png")
    calls = [
        ["draw", "a watercolor", "--image", str(wide), "--strength", "0.5", "--seed", "3", "-o", "redraw.png"],
        ["vary", str(square), "in", "winter", "--seed", "4", "--size", "64x64", "-o", "vary.png"],
        ["mix", str(wide), str(square), "in winter", "--weights", "0.4,0.4,0.2", "--seed", "5", "-o", "mix.png"],
    ]
    env = dict(PRIOR_MODEL=str(prior), DECODER_MODEL=str(decoder), DEVICE="cpu", PRIOR_STEPS="2")
    result = run_many(calls, tmp_path, DEFAULT_WIDTH="128", DEFAULT_HEIGHT="128", DEFAULT_STEPS="4", **env)
    assert result.stdout.count("exit 0") == 3, result.stderr
    assert "2/2" in result.stderr  # the redraw's bar counts the steps it runs: 4 x 0.5
    expected = {
        "redraw.png": (
            GenerationParams("a watercolor", 192, 64, 4, 4.0, 1.0, seed=3, init_image=0, strength=0.5),
            [WIDE],
        ),
        "vary.png": (
            GenerationParams(
                "in winter", 64, 64, 4, 4.0, 1.0, seed=4, mix=(MixPart(0.7, image=0), MixPart(0.3, text="in winter"))
            ),
            [SQUARE],
        ),
        "mix.png": (
            GenerationParams(
                "in winter", 128, 128, 4, 4.0, 1.0, seed=5,
                mix=(MixPart(0.4, image=0), MixPart(0.4, image=1), MixPart(0.2, text="in winter")),
            ),
            [WIDE, SQUARE],
        ),
    }  # fmt: skip
    for name, (params, pictures) in expected.items():
        got = png_image((tmp_path / name).read_bytes())
        assert got.size == (params.width, params.height), name
        [drawn] = ours.draw([params], None, [pictures])
        assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(drawn.image)), name
    assert "seed 3" in result.stdout and "192x64" in result.stdout


def gif(path: Path) -> Path:
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:])
    return path


def test_bad_input_is_one_clear_line_before_torch_loads(tmp_path: Path) -> None:
    png = save(SQUARE, tmp_path / "in.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    anim = gif(tmp_path / "anim.gif")
    cases = [
        (["draw", "x", "--image", "missing.png"], "Cannot read the picture missing.png: No such file"),
        (["draw", "x", "--image", "notes.txt"], "isn't a picture"),
        (["draw", "x", "--image", str(anim)], "Animated pictures"),
        (["draw", "x", "--strength", "0.5"], "--strength needs --image"),
        (["draw", "x", "--image", str(png), "--strength", "2"], "--strength needs a number from 0.05 to 1.0"),
        (["draw", "x", "--image", str(png), "--strength", "0.1", "--steps", "5"], "--steps 10"),
        (["vary", "notes.txt"], "isn't a picture"),
        (["vary", str(png), "--weights", "0.5,0.5"], "2 weights for 1 input"),
        (["mix", str(png)], "A mix takes from 2 to 4 inputs"),
        (["mix", str(png), "a", "b", "c", "d"], "got 5"),
        (["mix", str(png), "snow", "--weights", "1,x"], "Can't read the weights"),
        (["mix", str(png), "snow", "--weights", "1,2,3"], "3 weights for 2 inputs"),
        (["mix", str(png), "snow", "--steps", "0"], "--steps needs a whole number"),
    ]
    result = run_many([argv for argv, _ in cases], tmp_path)
    assert result.stdout.split()[-2:] == ["torch", "False"], result.stderr
    assert result.stdout.count("exit 2") == len(cases), result.stdout
    outputs = result.stderr.split("=====\n")
    for (argv, message), said in zip(cases, outputs, strict=False):
        assert said.count("\n") == 1 and message in said, (argv, said)
    assert not (tmp_path / "picture.png").exists()


def test_mix_inputs_are_files_when_they_exist_else_texts(tmp_path: Path) -> None:
    png = save(SQUARE, tmp_path / "in.png")
    settings = settings_from_env({}, require_token=False)
    args = parse_command_line(["mix", "in winter", str(png), "--weights", "1,3", "--seed", "2", "--guidance", "5"])
    request, images = draw_job(settings, args)
    assert request.params.mix == (MixPart(0.25, text="in winter"), MixPart(0.75, image=0))
    assert images == [png.read_bytes()] and request.params.seed == 2 and request.params.guidance_scale == 5.0
    assert request.params.kind == "variation" and request.params.prompt == "in winter"
    redraw, [image] = draw_job(settings, parse_command_line(["draw", "ink", "--image", str(png), "--size", "512x256"]))
    assert (redraw.params.width, redraw.params.height, redraw.params.strength) == (512, 256, 0.5)
    assert image == png.read_bytes()  # the file's own bytes: decoded again by the worker
