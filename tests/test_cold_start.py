"""A fast cold start: the engine serves eager as soon as the models are loaded and compiles
in the background, then switches to the compiled forms (issue 13, section 2)."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch
from aiohttp import web
from PIL import Image
from tiny_kandinsky import build_compile_decoder
from torch._inductor import cudagraph_trees as trees

import main
from bot.handlers.status import status_text
from bot.web.api import add_api
from generation import GenerationEngine, GenerationParams
from generation.compiled import cuda_graph_state, keep_fx_tracing_on_its_thread, share_cuda_graph_state
from generation.composition import request_limits
from generation.pipelines import CompileAbandoned, KandinskyPipelines

CPU = torch.device("cpu")
# Compiling the smallest decoder on a busy 2-core CPU: well under this.
COMPILE_TIMEOUT_S = 280


@pytest.fixture
def port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fox(seed: int = 7) -> GenerationParams:
    return GenerationParams("a red fox", 64, 64, 2, 4.0, 1.0, seed=seed)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


@pytest.fixture(scope="module")
def compile_models(tiny_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The tiny prior and the smallest decoder (tiny_kandinsky.build_compile_decoder)."""
    path = tmp_path_factory.mktemp("coldstart") / "decoder"
    build_compile_decoder().save_pretrained(path)
    return str(tiny_models[0]), str(path)


class Loader:
    """Loads compiled (COMPILE=true, no CUDA graphs on the CPU) pipelines warmed up eager, as
    generation.factory does; each background compile waits for ``gate`` before it starts."""

    def __init__(self, models: tuple[str, str]) -> None:
        self.models = models
        self.gate = threading.Event()
        self.loaded: list[KandinskyPipelines] = []
        self.fail = False

    def __call__(self, device: torch.device) -> KandinskyPipelines:
        pipes = KandinskyPipelines.load(
            *self.models, device, torch.float32, prior_steps=2, compile="default", max_batch=1
        )
        pipes.before_background_compile = self.hold
        pipes.prepare(64, 64, background=True)
        self.loaded.append(pipes)
        return pipes

    def hold(self) -> None:
        self.gate.wait(COMPILE_TIMEOUT_S)
        if self.fail:
            raise RuntimeError("no C compiler")  # what Inductor raises without one, say


async def serving_api(engine: GenerationEngine, make_settings, port: int) -> web.AppRunner:
    app = web.Application()
    add_api(app, engine, request_limits(make_settings(HTTP_PORT=str(port))), ())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def health(port: int) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as response:
        return await response.json()


async def until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(COMPILE_TIMEOUT_S + 60)
async def test_serves_eager_while_compiling_then_compiled(
    compile_models, make_settings, port: int, monkeypatch
) -> None:
    # Compile from scratch (cached graphs skip the tracing this test draws beside).
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._functorch.config, "enable_autograd_cache", False)
    loader = Loader(compile_models)
    engine = GenerationEngine([CPU], loader, max_batch=1)
    runner = await serving_api(engine, make_settings, port)
    await engine.start()
    try:
        # Submitted before the models are loaded, answered while the compile has not begun.
        eager = await (await engine.submit(fox(), user_id=1)).result()
        [pipes] = loader.loaded
        assert not pipes.serving_compiled and not pipes.background_compile_done.done()
        assert engine.status().compiling and engine.status().healthy
        answer = await health(port)
        assert answer["status"] == "compiling" and answer["models_loaded"]
        assert await asyncio.to_thread(main.health, make_settings(HTTP_PORT=str(port))) == 0  # Docker's check
        assert "Compiling" in status_text(engine, "en", details=False)

        loader.gate.set()
        # Users keep getting pictures while the compile thread traces and compiles (torch.fx
        # patches torch.nn.Module process-wide meanwhile: generation.compiled says why that
        # is safe here).
        during = 0
        while not pipes.background_compile_done.done():
            again = await (await engine.submit(fox(), user_id=2)).result()
            assert np.array_equal(pixels(again.png), pixels(eager.png))
            during += not pipes.background_compile_done.done()
        assert during >= 1
        await asyncio.wrap_future(pipes.background_compile_done)  # every compiled form ran once
        compiled_then = dict(torch._dynamo.utils.counters["frames"])
        assert compiled_then.get("ok", 0) >= 2  # the UNet and the MoVQ decode, on the compile thread
        await until(lambda: not engine.status().compiling, COMPILE_TIMEOUT_S)
        assert engine.compiled_devices() == ["cpu"] and (await health(port))["status"] == "healthy"

        compiled = await (await engine.submit(fox(), user_id=1)).result()
        # The worker drew with the compiled forms, and compiled nothing itself.
        assert hasattr(pipes.decoder.unet, "_orig_mod") and "decode" in vars(pipes.decoder.movq)
        assert dict(torch._dynamo.utils.counters["frames"]) == compiled_then
        assert np.abs(pixels(compiled.png) - pixels(eager.png)).max() <= 1
        assert "Compiling" not in status_text(engine, "en", details=False)
    finally:
        loader.gate.set()
        await engine.close()
        await runner.cleanup()


async def test_a_failing_background_compile_keeps_eager_serving(compile_models) -> None:
    loader = Loader(compile_models)
    loader.fail = True
    engine = GenerationEngine([CPU], loader, max_batch=1)
    await engine.start()
    try:
        await (await engine.submit(fox(), user_id=1)).result()
        assert engine.status().compiling
        loader.gate.set()
        await until(lambda: not engine.status().compiling, 60)
        [pipes] = loader.loaded
        assert not pipes.compiled and engine.compiled_devices() == [] and engine.status().healthy
        result = await (await engine.submit(fox(8), user_id=1)).result()
        assert result.seed == 8
        assert not hasattr(pipes.decoder.unet, "_orig_mod")
    finally:
        await engine.close()


async def test_a_reload_during_the_compile_stops_it(compile_models) -> None:
    loader = Loader(compile_models)
    engine = GenerationEngine([CPU], loader, max_batch=1)
    await engine.start()
    try:
        await (await engine.submit(fox(), user_id=1)).result()
        [old] = loader.loaded
        reload = asyncio.create_task(engine.reload())
        # Releasing the old models: told the compile thread to stop, waits for it.
        await until(lambda: old._stop_compile.is_set(), 30)
        assert not reload.done() and not engine.status().healthy
        loader.gate.set()  # the compile thread goes on, sees the release and stops
        loader.gate = threading.Event()  # the new models' compile waits again
        await asyncio.wait_for(reload, 60)
        with pytest.raises(CompileAbandoned):
            old.background_compile_done.result(0)
        assert len(loader.loaded) == 2 and engine.status().compiling
        result = await (await engine.submit(fox(9), user_id=1)).result()
        assert result.seed == 9
    finally:
        await engine.close()
        loader.gate.set()  # after close: the compile thread stops without compiling


def test_the_compile_thread_shares_the_worker_threads_cuda_graph_trees() -> None:
    """cudagraph trees keep one tree manager per thread: the compile thread uses the
    worker's, so the functions it warms up are recorded and replayed by the worker."""
    seen: dict = {}

    def worker() -> None:
        seen["state"] = cuda_graph_state()

    def compile_thread() -> None:
        share_cuda_graph_state(seen["state"])
        seen["containers"] = trees.get_obj(trees.local, "tree_manager_containers")

    for target in (worker, compile_thread):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    assert seen["containers"] is seen["state"][0]
    assert seen["containers"] is not trees.get_obj(trees.local, "tree_manager_containers")


def test_fx_tracing_on_one_thread_leaves_other_threads_modules_alone() -> None:
    """torch.fx patches torch.nn.Module.__call__ for the whole process while it traces (make_fx
    in every compile): a worker drawing meanwhile had its modules called through the tracer.
    The background compile traces while the worker draws; each thread must see its own."""
    assert keep_fx_tracing_on_its_thread()
    tracing, drawn = threading.Event(), threading.Event()

    class Slow(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(2, 2)

        def forward(self, x):
            tracing.set()
            assert drawn.wait(30)  # the other thread draws while this one traces
            return self.inner(x)

    traced: dict = {}
    thread = threading.Thread(target=lambda: traced.setdefault("graph", torch.fx.symbolic_trace(Slow())))
    thread.start()
    assert tracing.wait(30)
    try:
        worker_model = torch.nn.Linear(2, 3)
        out = worker_model(torch.ones(1, 2))  # without the fix: NameError from the tracer
        assert isinstance(out, torch.Tensor) and out.shape == (1, 3)
        assert worker_model.weight.shape == (3, 2)  # __getattr__ too: a tensor, not a proxy
    finally:
        drawn.set()
        thread.join()
    assert "call_module" in str(traced["graph"].graph)  # the tracing thread still traced
