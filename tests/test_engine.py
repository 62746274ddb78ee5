"""The engine: batching, fairness, limits, cancel, reload, failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch

from generation import (
    GenerationEngine,
    GenerationParams,
    JobCancelled,
    JobState,
    ModelsUnavailable,
    OutOfMemory,
    QueueFull,
    UserQueueFull,
)
from generation.engine import ModelState
from generation.fair_queue import FairQueue
from generation.pipelines import KandinskyPipelines

CPU = torch.device("cpu")


def params(seed: int = 0, size: int = 64, steps: int = 2, prompt: str = "a fox") -> GenerationParams:
    return GenerationParams(prompt, size, size, steps, 4.0, 1.0, seed=seed)


@pytest.fixture
def loader(tiny_models: tuple[Path, Path]):
    prior, decoder = tiny_models

    def load(device: torch.device) -> KandinskyPipelines:
        return KandinskyPipelines.load(str(prior), str(decoder), device, torch.float32, prior_steps=2)

    return load


async def started(engine: GenerationEngine) -> GenerationEngine:
    await engine.start()
    return engine


async def test_simultaneous_requests_share_batches(loader) -> None:
    engine = await started(GenerationEngine([CPU], loader, max_batch=4, max_pending_per_user=5))
    try:
        jobs = [await engine.submit(params(seed=i), user_id=i) for i in range(8)]
        results = await asyncio.gather(*(job.result() for job in jobs))
        assert [r.seed for r in results] == list(range(8))
        assert max(r.batch_size for r in results) == 4
        assert engine.status().images_per_minute > 0
    finally:
        await engine.close()


async def test_only_matching_requests_share_a_batch(loader) -> None:
    engine = await started(GenerationEngine([CPU], loader, max_batch=8))
    try:
        small = [await engine.submit(params(seed=i, size=64), user_id=i) for i in range(3)]
        large = [await engine.submit(params(seed=i, size=128), user_id=10 + i) for i in range(2)]
        results = await asyncio.gather(*(job.result() for job in small + large))
        assert [r.width for r in results] == [64, 64, 64, 128, 128]
        assert [r.batch_size for r in results] == [3, 3, 3, 2, 2]
    finally:
        await engine.close()


async def test_round_robin_between_users() -> None:
    class Item:
        def __init__(self, user_id: int, name: str) -> None:
            self.user_id, self.name, self.batch_key = user_id, name, "same"

    queue: FairQueue[Item] = FairQueue()
    for i in range(4):
        await queue.put(Item(1, f"a{i}"))
    await queue.put(Item(2, "b0"))
    await queue.put(Item(3, "c0"))
    # The heavy user's later requests wait behind the others' first ones.
    assert [i.name for i in queue.order()] == ["a0", "b0", "c0", "a1", "a2", "a3"]
    assert [i.name for i in await queue.take_batch(2)] == ["a0", "b0"]
    # Users just served go to the back: c's turn comes before a's second.
    assert [i.name for i in await queue.take_batch(1)] == ["c0"]
    assert [i.name for i in await queue.take_batch(5)] == ["a1", "a2", "a3"]


async def test_limits_per_user_and_global(loader) -> None:
    engine = GenerationEngine([CPU], loader, max_queue=3, max_pending_per_user=2)
    await engine._queue.set_paused(True)  # nothing is served: the queue only fills
    await engine.submit(params(), user_id=1)
    await engine.submit(params(), user_id=1)
    with pytest.raises(UserQueueFull):
        await engine.submit(params(), user_id=1)
    await engine.submit(params(), user_id=2)
    with pytest.raises(QueueFull):
        await engine.submit(params(), user_id=3)
    await engine.close()


async def test_queue_position_and_cancel(loader) -> None:
    engine = GenerationEngine([CPU], loader)
    await engine.start()  # models load in the background: jobs wait meanwhile
    try:
        jobs = [await engine.submit(params(seed=i), user_id=i) for i in range(3)]
        assert [engine.position(j) for j in jobs] == [1, 2, 3]
        assert engine.find(jobs[1].id) is jobs[1]
        assert engine.cancel(jobs[1])
        assert jobs[1].state is JobState.CANCELLED
        with pytest.raises(JobCancelled):
            await jobs[1].result()
        assert engine.position(jobs[2]) == 2
        await jobs[2].result()
        assert not engine.cancel(jobs[2])  # finished: too late
        assert engine.find(jobs[2].id) is None
    finally:
        await engine.close()


async def test_reload_lets_the_running_batch_finish(loader) -> None:
    loads: list[float] = []
    decoded: list[float] = []

    def counting_loader(device: torch.device) -> KandinskyPipelines:
        loads.append(time.monotonic())  # when each load starts
        pipes = loader(device)
        # When each picture's decoding ends: the last model call of a batch.
        pipes.decoder.movq.decoder.register_forward_hook(lambda *_: decoded.append(time.monotonic()))
        return pipes

    engine = await started(GenerationEngine([CPU], counting_loader))
    try:
        while engine.models_state is not ModelState.READY:
            await asyncio.sleep(0.01)
        running = await engine.submit(params(size=256, steps=8), user_id=1)
        while running.state is not JobState.RUNNING:
            await asyncio.sleep(0.005)
        reload = asyncio.create_task(engine.reload())
        await asyncio.sleep(0.05)
        waiting = await engine.submit(params(seed=2), user_id=2)  # arrives during the reload
        first = await running.result()
        assert first.width == 256  # finished on the old models, not failed
        await reload
        await waiting.result()
        # The new models started loading only once the running batch was drawn (its PNG
        # is encoded meanwhile, off the worker).
        assert len(loads) == 2 and loads[1] >= decoded[0]
        assert engine.status().healthy
    finally:
        await engine.close()


async def test_failed_load_keeps_engine_up_until_a_reload_works(loader) -> None:
    broken = {"yes": True}

    def flaky_loader(device: torch.device) -> KandinskyPipelines:
        if broken["yes"]:
            raise OSError("no such model: kandinsky-community/typo")
        return loader(device)

    engine = GenerationEngine([CPU], flaky_loader)
    await engine.start()
    try:
        waiting = await engine.submit(params(), user_id=1)  # queued while loading
        with pytest.raises(ModelsUnavailable):
            await waiting.result()
        status = engine.status()
        assert status.models is ModelState.FAILED and not status.healthy
        assert "typo" in (status.error or "")
        with pytest.raises(ModelsUnavailable):
            await engine.submit(params(), user_id=1)
        broken["yes"] = False
        await engine.reload()
        assert engine.status().healthy
        job = await engine.submit(params(), user_id=1)
        assert (await job.result()).width == 64
    finally:
        await engine.close()


async def test_out_of_memory_splits_the_batch_and_keeps_serving(loader) -> None:
    def tight_memory_loader(device: torch.device) -> KandinskyPipelines:
        pipes = loader(device)

        def check(module, args, kwargs):
            sample = kwargs.get("sample", args[0] if args else None)
            # With guidance each request is two UNet rows: more than 2 requests, or a
            # 128-pixel picture, "does not fit".
            if sample.shape[0] > 4 or sample.shape[-1] * 8 >= 128:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

        pipes.decoder.unet.register_forward_pre_hook(check, with_kwargs=True)
        return pipes

    engine = GenerationEngine([CPU], tight_memory_loader, max_batch=8, max_pending_per_user=8)
    await engine.start()
    try:
        fits = [await engine.submit(params(seed=i), user_id=i) for i in range(5)]
        too_big = await engine.submit(params(size=128), user_id=9)
        results = await asyncio.gather(*(job.result() for job in fits))
        assert [r.seed for r in results] == list(range(5))
        with pytest.raises(OutOfMemory):
            await too_big.result()
        after = await engine.submit(params(seed=42), user_id=1)
        assert (await after.result()).seed == 42
    finally:
        await engine.close()


async def test_other_failures_fail_the_batch_not_the_worker(loader) -> None:
    def failing_loader(device: torch.device) -> KandinskyPipelines:
        pipes = loader(device)

        def explode(module, args, kwargs):
            if kwargs.get("sample", args[0] if args else None).shape[-1] == 16:
                raise RuntimeError("cuDNN error (simulated)")

        pipes.decoder.unet.register_forward_pre_hook(explode, with_kwargs=True)
        return pipes

    engine = GenerationEngine([CPU], failing_loader)
    await engine.start()
    try:
        bad = await engine.submit(params(size=128), user_id=1)
        with pytest.raises(Exception, match="cuDNN"):
            await bad.result()
        good = await engine.submit(params(size=64), user_id=1)
        assert (await good.result()).width == 64
    finally:
        await engine.close()


async def test_one_worker_per_device_share_one_queue(loader) -> None:
    import threading

    threads: set[str] = set()

    def recording_loader(device: torch.device) -> KandinskyPipelines:
        pipes = loader(device)
        pipes.decoder.unet.register_forward_pre_hook(lambda *_: threads.add(threading.current_thread().name))
        return pipes

    # Two "devices" (both the CPU here): two workers, two threads, one queue.
    engine = await started(GenerationEngine([CPU, CPU], recording_loader, max_batch=1))
    try:
        jobs = [await engine.submit(params(seed=i, steps=6), user_id=i) for i in range(4)]
        await asyncio.gather(*(job.result() for job in jobs))
        assert len(threads) == 2, threads
        assert engine.status().devices == ["cpu", "cpu"]
    finally:
        await engine.close()


async def test_reload_frees_every_devices_models_before_loading_any(loader) -> None:
    """Releasing compiled models resets Dynamo for the whole process: had one device
    loaded (and compiled) before another released, that reset would drop the new graphs.
    And no GPU should hold its old and new models at once."""
    import gc
    import weakref

    old: list[weakref.ref] = []
    alive_at_load: list[int] = []

    def tracking_loader(device: torch.device) -> KandinskyPipelines:
        gc.collect()
        alive_at_load.append(sum(ref() is not None for ref in old))
        pipes = loader(device)
        old.extend(weakref.ref(m) for m in (pipes.decoder.unet, pipes.decoder.movq, pipes.prior.prior))
        return pipes

    engine = await started(GenerationEngine([CPU, CPU], tracking_loader))
    try:
        while len(engine.status().ready_devices) < 2:
            await asyncio.sleep(0.01)
        assert alive_at_load == [0, 3]  # first start: the first device's models live on
        old_count = len(old)
        await engine.reload()
        assert alive_at_load[2:] == [0, 3]  # all six old models were gone before the first new load
        assert all(ref() is None for ref in old[:old_count])
    finally:
        await engine.close()


async def test_the_first_device_serves_while_the_next_one_still_loads(loader) -> None:
    """A host's GPUs load (and compile) one after another, minutes each: the first one
    serves as soon as it is ready, and a device still loading takes no batch."""
    import threading

    second_may_load = threading.Event()
    calls = 0

    def slow_second(device: torch.device) -> KandinskyPipelines:
        nonlocal calls
        calls += 1
        if calls == 2:
            assert second_may_load.wait(30)
        return loader(device)

    engine = await started(GenerationEngine([CPU, CPU], slow_second, max_batch=1))
    try:
        jobs = [await engine.submit(params(seed=i), user_id=i) for i in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*(job.result() for job in jobs)), 60)
        assert [r.seed for r in results] == [0, 1, 2]
        status = engine.status()
        assert status.models is ModelState.READY and status.ready_devices == ["cpu"]
        second_may_load.set()
        while len(engine.status().ready_devices) < 2:
            await asyncio.sleep(0.01)
        assert (await (await engine.submit(params(seed=9), user_id=9)).result()).seed == 9
    finally:
        second_may_load.set()
        await engine.close()


async def test_a_device_that_fails_to_load_leaves_the_others_serving(loader) -> None:
    calls = 0

    def second_fails(device: torch.device) -> KandinskyPipelines:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("CUDA error: uncorrectable ECC error encountered")
        return loader(device)

    engine = await started(GenerationEngine([CPU, CPU], second_fails))
    try:
        job = await engine.submit(params(seed=4), user_id=1)
        assert (await asyncio.wait_for(job.result(), 60)).seed == 4
        while calls < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert engine.status().models is ModelState.READY
        assert engine.status().ready_devices == ["cpu"]
        assert (await (await engine.submit(params(seed=5), user_id=1)).result()).seed == 5
    finally:
        await engine.close()
