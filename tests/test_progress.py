"""What a waiting user reads in the status message."""

from __future__ import annotations

from pathlib import Path

import torch

from bot.progress import progress_text
from generation import GenerationEngine, GenerationParams, JobState
from generation.pipelines import KandinskyPipelines


def never_called(device: torch.device) -> KandinskyPipelines:
    raise AssertionError("the engine was not started")


async def test_queue_text_while_models_load(tiny_models: tuple[Path, Path]) -> None:
    engine = GenerationEngine([torch.device("cpu")], never_called)  # not started: still loading
    params = GenerationParams("fox", 64, 64, 10, 4.0, 1.0, seed=1)
    first = await engine.submit(params, user_id=1)
    second = await engine.submit(params, user_id=2)
    assert progress_text(second, engine, "en") == (
        "⏳ The models are still loading. Your request is in line and will be drawn as soon as they're ready.\n"
        "🕒 In line: 2 of 2."
    )
    assert progress_text(first, engine, "ru").endswith("В очереди: 1 из 2.")
    first.state = JobState.RUNNING
    assert progress_text(first, engine, "en") == "🎨 Starting…"
    first.step = 4
    assert progress_text(first, engine, "en") == "🎨 Drawing: step 4 of 10."
    await engine.close()
