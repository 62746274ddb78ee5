"""A fast cold start (issue 13, section 2): the bot draws uncompiled as soon as the models
are loaded while a child process fills the compile cache; then each worker compiles on its
own thread, between batches, and draws compiled.

torch.compile runs here with Dynamo's "eager" backend (KANDINSKY_COMPILE_BACKEND): the same
tracing, compiled forms and switch as with Inductor, without Inductor's minutes of C++ on
this CPU. The bot always compiles with Inductor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tiny_kandinsky import build_compile_decoder

import main
from bot.handlers.status import status_text
from bot.web.api import add_api
from generation import GenerationEngine, GenerationParams
from generation.compiled import BACKEND_VARIABLE
from generation.composition import compile_cache_dir, create_engine, request_limits

# A child process imports torch and loads the tiny models: seconds, more on a busy CPU.
COMPILED_WITHIN_S = 120


@pytest.fixture
def port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def small_decoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallest decoder (tiny_kandinsky.build_compile_decoder): less to trace."""
    path = tmp_path_factory.mktemp("coldstart") / "decoder"
    build_compile_decoder().save_pretrained(path)
    return path


@pytest.fixture
def compiling(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, small_decoder: Path) -> dict[str, str]:
    """Settings that compile (COMPILE=true; COMPILE=auto compiles nothing on the CPU), with
    the eager backend and a fresh compile cache. One batch size (MAX_BATCH=1): each more
    is another trace, and a second picture size made the MoVQ decode trace again with
    symbolic shapes, for a minute on this CPU."""
    monkeypatch.setenv(BACKEND_VARIABLE, "eager")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    settings = {"COMPILE": "true", "MAX_BATCH": "1", "DECODER_MODEL": str(small_decoder)}
    return settings | {"DATA_DIR": str(tmp_path / "data")}


def fox(seed: int = 7) -> GenerationParams:
    return GenerationParams("a red fox", 64, 64, 4, 4.0, 1.0, seed=seed)


async def serving_api(engine: GenerationEngine, settings, port: int) -> web.AppRunner:
    app = web.Application()
    add_api(app, engine, request_limits(settings), ())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def health(port: int) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
        return await response.json()


async def draw_until(engine: GenerationEngine, done, timeout: float = COMPILED_WITHIN_S) -> list[bool]:
    """Draw one picture after another until ``done()``; per picture, whether the engine
    was still compiling when it arrived."""
    deadline = time.monotonic() + timeout
    compiling = []
    while not done():
        assert time.monotonic() < deadline, "timed out"
        await (await engine.submit(fox(len(compiling)), user_id=1)).result()
        compiling.append(engine.status().compiling)
    return compiling


def messages(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(start)]


async def test_serves_uncompiled_while_a_child_process_compiles_then_switches_on_the_worker_thread(
    compiling, make_settings, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(HTTP_PORT=str(port), **compiling)
    engine = create_engine(settings)
    runner = await serving_api(engine, settings, port)
    await engine.start()
    try:
        # Submitted before the models are loaded, drawn as soon as they are.
        await (await engine.submit(fox(), user_id=1)).result()
        status = engine.status()
        assert status.compiling and status.healthy and engine.compiled_devices() == []
        assert messages(caplog, "compiling on cpu in a child process")
        answer = await health(port)
        assert answer["status"] == "compiling" and answer["models_loaded"]
        assert await asyncio.to_thread(main.health, settings) == 0  # Docker's HEALTHCHECK: busy, not broken
        assert "Compiling the models" in status_text(engine, "en", details=False)
        assert "Модели компилируются" in status_text(engine, "ru", details=False)

        served = await draw_until(engine, lambda: engine.compiled_devices() == ["cpu"])
        assert not engine.status().compiling and (await health(port))["status"] == "healthy"
        assert "Compiling" not in status_text(engine, "en", details=False)
        # The compiled forms were made and warmed up on the worker thread (where CUDA graphs
        # are recorded and replayed), one batch size per step, between users' batches.
        steps = messages(caplog, "compiled batch size")
        assert [r.getMessage().split()[3] for r in steps] == ["1"]
        [switched] = messages(caplog, "compiled drawing on cpu")
        assert all(r.threadName.startswith("worker0") for r in [*steps, switched])
        # The child process left the stamp that lets the next start skip it.
        assert list(compile_cache_dir(settings).glob("*.json"))
        drawn = await (await engine.submit(fox(), user_id=2)).result()
        assert drawn.width == 64 and served is not None
    finally:
        await engine.close()
        await runner.cleanup()


async def test_a_failed_background_compile_keeps_drawing_uncompiled(
    compiling, make_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(BACKEND_VARIABLE, "no_such_backend")  # the child's torch.compile fails
    caplog.set_level(logging.INFO, logger="generation")
    engine = create_engine(make_settings(**compiling))
    await engine.start()
    try:
        served = await draw_until(engine, lambda: messages(caplog, "compiling in the background failed"))
        assert served[0]  # drawn while the child compiled
        await draw_until(engine, lambda: not engine.status().compiling, timeout=10)
        for seed in range(2):  # still drawing, uncompiled
            assert (await (await engine.submit(fox(seed), user_id=1)).result()).width == 64
        assert engine.compiled_devices() == [] and engine.status().healthy
        assert len(messages(caplog, "compiling in the background failed")) == 1
        assert not messages(caplog, "compiled batch size")
    finally:
        await engine.close()


async def test_prefetch_compile_makes_the_next_start_compile_without_a_child_process(
    compiling, make_settings, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(**compiling)
    # What `python main.py prefetch --compile` runs once the models are downloaded.
    assert await asyncio.to_thread(main.prefetch_compile, settings) == 0
    assert "compile cache in" in capsys.readouterr().out
    assert list(compile_cache_dir(settings).glob("*.json"))

    caplog.set_level(logging.INFO, logger="generation")
    engine = create_engine(settings)
    await engine.start()
    try:
        await draw_until(engine, lambda: engine.compiled_devices() == ["cpu"], timeout=60)
        assert not messages(caplog, "compiling on cpu in a child process")
        assert messages(caplog, "compiled drawing on cpu")
    finally:
        await engine.close()


def test_a_stamp_whose_compile_cache_is_gone_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trusting it, the worker thread would compile from scratch between two batches: minutes."""
    from generation import compile_cache

    monkeypatch.delenv(BACKEND_VARIABLE, raising=False)
    cache = tmp_path / "torch-compile"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    job = compile_cache.CompileJob("p", "d", "cpu", "auto", "true", False, 25, 8, 768, 768, str(tmp_path / "stamps"))
    key = compile_cache.cache_key(job)
    (tmp_path / "stamps").mkdir()
    stamp = {"backend": "inductor", "inductor_cache": str(cache), "artifacts": None}
    compile_cache._stamp(job, key).write_text(json.dumps(stamp))
    assert not compile_cache._warm(job, key)  # the cache directory was deleted
    cache.mkdir()
    assert compile_cache._warm(job, key)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert not compile_cache._warm(job, key)  # the bot compiles into another cache now


def leave_warm_stamp(settings) -> None:
    """What an earlier start's compile leaves (with the eager backend, nothing but the
    stamp): the next start compiles on its worker thread without a child process."""
    from generation import compile_cache
    from generation.composition import compile_job

    job = compile_job(settings, "cpu")
    stamp = compile_cache._stamp(job, compile_cache.cache_key(job))
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"backend": "eager", "artifacts": None}))


@contextlib.asynccontextmanager
async def compiling_in_steps(settings, idle_s: float) -> AsyncIterator[GenerationEngine]:
    """A started engine that finds its compile cache warm, and so compiles in steps on its
    worker thread; the other batch sizes compile after ``idle_s`` of idleness."""
    leave_warm_stamp(settings)
    engine = create_engine(settings)
    engine.COMPILE_WHEN_IDLE_S = idle_s
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def steps_so_far(caplog: pytest.LogCaptureFixture) -> list[str]:
    await asyncio.sleep(0)
    return [r.getMessage().split()[3] for r in messages(caplog, "compiled batch size")]


async def test_one_user_at_a_time_is_not_held_up_by_compiling_batch_sizes_only_a_queue_needs(
    compiling, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Each batch size's compile holds the GPU for 10 to 20 s: one user asking again and
    again would wait behind the steps for batch sizes they never use (bench/results/
    2026-11-30-cold-start). A batch size drawn uncompiled again and again compiles before
    its next batch (and so does one with a queue behind it: the reload test below)."""
    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(**(compiling | {"MAX_BATCH": "2"}))
    async with compiling_in_steps(settings, idle_s=600) as engine:
        await draw_until(engine, lambda: messages(caplog, "compiled batch size 1"))
        for seed in range(3):
            assert (await (await engine.submit(fox(seed), user_id=1)).result()).batch_size == 1
        assert await steps_so_far(caplog) == ["1"]
        assert engine.status().compiling and engine.compiled_devices() == []

        # Two users, each asking again as soon as their picture comes: batches of two with
        # nobody waiting behind them, drawn uncompiled a few times, then compiled.
        for round in range(engine.COMPILE_AFTER_UNCOMPILED_BATCHES + 1):
            if round == engine.COMPILE_AFTER_UNCOMPILED_BATCHES:
                assert await steps_so_far(caplog) == ["1"]
            jobs = [await engine.submit(fox(user), user_id=user) for user in (1, 2)]
            assert [(await job.result()).batch_size for job in jobs] == [2, 2]
        assert await steps_so_far(caplog) == ["1", "2"]  # before the last pair was drawn
        assert engine.compiled_devices() == ["cpu"] and not engine.status().compiling


async def test_batch_sizes_nobody_asked_for_yet_compile_once_the_bot_is_idle(
    compiling, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(**(compiling | {"MAX_BATCH": "2"}))
    async with compiling_in_steps(settings, idle_s=2.0) as engine:
        await draw_until(engine, lambda: messages(caplog, "compiled batch size 1"))
        for seed in range(3):  # asking again at once is not idle
            await (await engine.submit(fox(seed), user_id=1)).result()
        assert await steps_so_far(caplog) == ["1"]
        deadline = time.monotonic() + COMPILED_WITHIN_S
        while engine.status().compiling:
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.1)
        assert await steps_so_far(caplog) == ["1", "2"] and engine.compiled_devices() == ["cpu"]
        [step] = messages(caplog, "compiled batch size 2")
        assert step.threadName.startswith("worker0")  # on the thread that draws
        assert (await (await engine.submit(fox(), user_id=1)).result()).width == 64


async def test_a_compile_that_fails_on_the_worker_thread_leaves_nothing_pending(
    compiling, make_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """torch.compile refusing the backend before any form exists: the bot must not say
    "compiling" for ever, nor try again at every idle spell."""
    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(**(compiling | {"MAX_BATCH": "2"}))
    monkeypatch.setenv(BACKEND_VARIABLE, "no_such_backend")  # first: the warm stamp is this backend's
    async with compiling_in_steps(settings, idle_s=0.2) as engine:
        await draw_until(engine, lambda: not engine.status().compiling, timeout=60)
        await asyncio.sleep(1.0)  # idle spells: nothing is tried again
        assert len(messages(caplog, "torch.compile failed on cpu")) == 1
        assert not engine.status().compiling and engine.compiled_devices() == []
        assert engine._compile_task is None or engine._compile_task.done()
        assert (await (await engine.submit(fox(), user_id=1)).result()).width == 64


async def test_a_reload_asked_for_while_a_waiting_batch_compiles_fails_no_request(
    compiling, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The reload waits for the compile step, then for the batch it was taken for; the
    models are never released between the two (the batch would find none)."""
    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(**(compiling | {"MAX_BATCH": "2"}))
    async with compiling_in_steps(settings, idle_s=600) as engine:
        await draw_until(engine, lambda: messages(caplog, "compiled batch size 1"))
        jobs = [await engine.submit(fox(user), user_id=user) for user in (1, 2, 3)]
        await asyncio.wait_for(jobs[0].started.wait(), 30)  # its batch's form is compiling
        assert not messages(caplog, "compiled batch size 2")
        await engine.reload()
        drawn = [await job.result() for job in jobs]
        assert [d.width for d in drawn] == [64, 64, 64] and drawn[0].batch_size == 2
        assert messages(caplog, "compiled batch size 2")


async def test_on_two_devices_one_user_at_a_time_is_served_by_the_one_compiled_first(
    compiling, make_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Each compile step holds every GPU: a second GPU compiling its single-request form
    at once kept one user waiting 15 s more (bench/results/2026-11-30-cold-start-steps).
    Instead the first GPU compiled serves them, and the second one compiles when it is
    needed; meanwhile it still takes what the first one is too busy for."""
    import torch

    from generation.compile_cache import CacheFiller
    from generation.composition import compile_job
    from generation.factory import pipelines_loader

    caplog.set_level(logging.INFO, logger="generation")
    settings = make_settings(**(compiling | {"MAX_BATCH": "2"}))
    leave_warm_stamp(settings)
    load = pipelines_loader(
        prior_model=settings.prior_model,
        decoder_model=settings.decoder_model,
        dtype=settings.dtype,
        cpu_offload=False,
        compile=settings.compile,
        prior_steps=settings.prior_steps,
        warm_up_size=(64, 64),
        max_batch=2,
        compile_later=True,
    )
    cpu = torch.device("cpu")
    fillers = [CacheFiller(compile_job(settings, "cpu")) for _ in range(2)]
    engine = GenerationEngine([cpu, cpu], load, max_batch=2, cache_fillers=fillers)
    engine.COMPILE_WHEN_IDLE_S = 600
    await engine.start()
    try:
        await draw_until(engine, lambda: messages(caplog, "compiled batch size 1"))
        # Taking every other one, the second device would have compiled after three.
        for seed in range(2 * engine.COMPILE_AFTER_UNCOMPILED_BATCHES + 2):
            await (await engine.submit(fox(seed), user_id=1)).result()
        [step] = messages(caplog, "compiled batch size")
        assert step.threadName.startswith("worker0") and engine.status().compiling

        # Two users, the second asking while the first one's picture is drawn.
        first = await engine.submit(fox(1), user_id=1)
        await first.started.wait()
        second = await engine.submit(fox(2), user_id=2)
        assert (await asyncio.wait_for(second.result(), 60)).width == 64
        assert (await first.result()).width == 64
    finally:
        await engine.close()
