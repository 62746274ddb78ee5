"""The generation engine: a fair queue feeding one worker per device.

Coroutines submit jobs and await them; each worker takes batches from the queue and runs
them on its own single-thread executor, so the event loop never blocks and one pipeline
is never called from two threads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import torch

from generation.compile_cache import CacheFiller
from generation.errors import (
    BatchAborted,
    GenerationError,
    JobCancelled,
    ModelsUnavailable,
    OutOfMemory,
    QueueFull,
    UserQueueFull,
)
from generation.fair_queue import FairQueue
from generation.params import GenerationParams, GenerationResult
from generation.pipelines import DrawnImage, KandinskyPipelines
from generation.png import PngEncoder
from generation.worker import DeviceWorker

log = logging.getLogger(__name__)

# Builds the pipelines of one device; runs on that device's worker thread.
PipelineLoader = Callable[[torch.device], KandinskyPipelines]
# Told how each request ended: "done", "failed", "out_of_memory", "cancelled",
# "models_unavailable" or "rejected" (queue full; no job then).
Observer = Callable[[str, "Job | None"], None]


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


_job_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    params: GenerationParams
    user_id: int
    # The pictures the request draws from (params.mix and params.init_image index them):
    # image file bytes, checked by the caller (generation.images.open_image).
    images: tuple[bytes, ...] = ()
    id: int = field(default_factory=lambda: next(_job_ids))
    state: JobState = JobState.QUEUED
    step: int = 0  # decoder steps done, updated from the worker thread
    batch_size: int = 0
    submitted_at: float = field(default_factory=time.monotonic)
    future: asyncio.Future[GenerationResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set when its batch starts
    started_at: float | None = None

    @property
    def waited_s(self) -> float:
        """Seconds spent in the queue before its batch started (so far, if still waiting)."""
        return (self.started_at or time.monotonic()) - self.submitted_at

    @property
    def batch_key(self) -> tuple:
        return self.params.batch_key

    async def result(self) -> GenerationResult:
        return await asyncio.shield(self.future)


@dataclass(frozen=True)
class EngineStatus:
    models: ModelState
    error: str | None
    devices: list[str]
    queued: int
    running: int
    images_per_minute: float
    gpu_memory_bytes: int | None
    # Loading again after the models were ready: the old ones finish the running batch and
    # requests wait for the new ones (busy, not broken; unlike the first load or a failure).
    reloading: bool = False
    # The devices whose models are loaded and serving; while a host's other GPUs still
    # load (each compiles for minutes), the first one serves already.
    ready_devices: list[str] = dataclasses.field(default_factory=list)
    # Drawing uncompiled while the compiled forms are made (a child process fills the
    # compile cache, then each worker compiles between batches): busy, not broken.
    compiling: bool = False

    @property
    def healthy(self) -> bool:
        return self.models is ModelState.READY


class GenerationEngine:
    """Queue, workers and model state. Create and use it on the event loop."""

    RATE_WINDOW_S = 600.0  # "images per minute lately" looks this far back
    # Compiling in steps (a warm compile cache, generation.compile_cache): batch size 1, one
    # user at a time and the idle bot's case, compiles at once. Each other batch size's
    # step holds every GPU for 10 to 20 s (bench/results/2026-11-30-cold-start), so it waits
    # until the bot has been idle this long, or until a batch that needs it is taken with
    # more requests waiting behind it: under load a compiled batch of 8 takes half the time
    # of an eager one, so the step pays for itself within a few batches.
    COMPILE_WHEN_IDLE_S = 5.0
    # ... or once a batch size has been drawn uncompiled this often on a device (two users
    # who each ask again as soon as their picture comes never leave a queue behind them).
    COMPILE_AFTER_UNCOMPILED_BATCHES = 3

    def __init__(
        self,
        devices: Sequence[torch.device],
        loader: PipelineLoader,
        *,
        max_batch: int = 8,
        max_queue: int = 100,
        max_pending_per_user: int = 3,
        cache_fillers: Sequence[CacheFiller] = (),
    ) -> None:
        """``cache_fillers``: for pipelines loaded to compile later (``compile_later``), one
        per device in ``devices``' order: each makes its device's compile cache warm, after
        which that device's worker compiles between batches."""
        self._workers = [DeviceWorker(device, i) for i, device in enumerate(devices)]
        self._loader = loader
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._max_pending = max_pending_per_user
        self._queue: FairQueue[Job] = FairQueue()
        self._state = ModelState.LOADING
        self._reloading = False  # see EngineStatus.reloading
        self._error: str | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._running: set[Job] = set()
        self._finished_at: deque[float] = deque(maxlen=10_000)
        self._accepting = True  # False once pause() was called: a reload must not resume
        self._observers: list[Observer] = []
        self._png = PngEncoder()
        self._finishing: set[asyncio.Task] = set()
        # Set by close(): a running batch stops at its next decoder step, so a stop keeps
        # SHUTDOWN_GRACE_S instead of waiting (the process can't exit before the worker
        # thread ends) for a result nobody will deliver.
        self._aborting = threading.Event()
        self._cache_fillers = list(cache_fillers)
        self._compile_task: asyncio.Task | None = None
        self._compiling = False
        self._busy_at = time.monotonic()  # when a request last waited or drew
        self._uncompiled: collections.Counter[tuple[DeviceWorker, int]] = collections.Counter()  # uncompiled batches
        self._waiting: set[DeviceWorker] = set()  # the workers waiting for a batch

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and load the models in the background: requests submitted
        meanwhile wait in the queue and are served once the models are ready."""
        await self._queue.set_paused(True)
        self._tasks = [asyncio.create_task(self._serve(w), name=f"worker {w.device}") for w in self._workers]
        self._tasks.append(asyncio.create_task(self._initial_load(), name="initial model load"))

    async def pause(self) -> None:
        """Take no new batches (for a graceful stop); running ones finish."""
        self._accepting = False
        await self._queue.set_paused(True)

    async def close(self) -> None:
        """Stop at once: a running batch is abandoned at its next decoder step, waiting
        requests fail (the caller keeps what it wants to serve again, e.g. in a journal)."""
        self._aborting.set()
        compiling = [self._compile_task] if self._compile_task is not None else []
        for task in [*self._tasks, *compiling]:
            task.cancel()
        await asyncio.gather(*self._tasks, *compiling, *self._finishing, return_exceptions=True)
        self._png.shutdown()
        for job in self._queue.drain():
            self._fail(job, GenerationError("the bot is shutting down"))
        for job in list(self._running):  # abandoned mid-batch
            self._fail(job, BatchAborted("the bot is shutting down"))
        for worker in self._workers:
            worker.shutdown()

    async def _initial_load(self) -> None:
        with contextlib.suppress(Exception):  # logged and kept for status() by reload
            await self.reload()

    async def reload(self) -> None:
        """Load the models again on every device.

        A running batch finishes on the old models; waiting requests run on the new ones.
        If loading fails, the error is raised and kept for ``status()``, and waiting
        requests are told the models are unavailable.
        """
        async with self._reload_lock:
            await self._stop_compiling()
            self._uncompiled.clear()
            await self._queue.set_paused(True)
            self._reloading = self._state is ModelState.READY
            self._state, self._error = ModelState.LOADING, None
            try:
                # Every device's old models go before any new ones load: releasing compiled
                # models resets Dynamo, which would drop the graphs just compiled for another
                # device.
                for worker in self._workers:
                    await worker.release()
                # One device at a time: from_pretrained builds models under a process-wide
                # "empty weights" patch (accelerate), so two threads loading at once break.
                # The first device serves as soon as it is ready: compiling takes minutes
                # per GPU (the compile cache is per device index), and users should not
                # wait for the last one.
                first, *others = self._workers
                await first.load(self._loader)
                await self._serving(first)
            except Exception as exc:
                log.exception("loading the models failed")
                self._state, self._error = ModelState.FAILED, f"{type(exc).__name__}: {exc}"
                self._reloading = False
                for job in self._queue.drain():
                    self._fail(job, ModelsUnavailable(self._error))
                raise
            for worker in others:
                try:
                    await worker.load(self._loader)
                except Exception:  # the devices loaded already go on serving
                    log.exception("loading the models on %s failed; serving on the others", worker.device)
                    continue
                await self._serving(worker)
            if any(w.compile_pending for w in self._workers):
                self._compiling = True
                self._compile_task = asyncio.create_task(self._compile_in_background(), name="background compile")

    async def _serving(self, worker: DeviceWorker) -> None:
        """A device's models are loaded: it takes batches (the first one opens the queue)."""
        log.info("models ready on %s", worker.device)
        if self._state is not ModelState.READY:
            self._state, self._reloading = ModelState.READY, False
            if self._accepting:
                await self._queue.set_paused(False)

    # -- compiling while serving ------------------------------------------------------

    async def _compile_in_background(self) -> None:
        """Serve uncompiled while the compile cache fills (a child process), then compile
        each worker's pipelines on its own thread, step by step between batches."""
        try:
            # One child process per GPU, all at once: the compile cache is per device
            # index (torch's FX graph cache key names it), so a cache filled on the first
            # GPU would leave the second one compiling from scratch, minutes on the worker
            # thread (bench/results/2026-11-30-two-gpus). Each child has its own GIL.
            filled = await asyncio.gather(*(filler.fill() for filler in self._cache_fillers))
            first = None
            for worker, warm in zip(self._workers, filled, strict=False):
                if warm and worker.compile_pending and await self._between_batches(worker, None):
                    first = first or worker  # None: failed (logged), that worker draws uncompiled
            if first is not None:
                # A single request on one GPU at once: each step holds every GPU, and one
                # user at a time is served by that GPU (_may_take) while the others wait.
                await self._between_batches(first, first.forms_to_compile()[0])
            # The rest when idle (or, in _serve, when a waiting batch needs one), the
            # smallest batch size first.
            while await self._until_idle():  # False: nothing left (a queue compiled the rest)
                size, i = min((forms[0], i) for i, w in enumerate(self._workers) if (forms := w.forms_to_compile()))
                await self._between_batches(self._workers[i], size)
        except Exception:  # never let it take serving down
            log.exception("compiling in the background failed")
        finally:
            self._compiling = False

    async def _between_batches(self, worker: DeviceWorker, batch_size: int | None) -> tuple[int, ...] | None:
        async with self._every_worker():
            return await worker.compile_step(batch_size)

    @contextlib.asynccontextmanager
    async def _every_worker(self) -> AsyncIterator[None]:
        """Hold every worker for a compile step: tracing patches torch.nn.Module for the
        whole process (torch.fx), which another worker thread drawing would hit."""
        async with contextlib.AsyncExitStack() as held:
            for each in self._workers:
                await held.enter_async_context(each.busy)
            try:
                yield
            finally:
                self._busy_at = time.monotonic()  # compiling is not idle time

    async def _until_idle(self) -> bool:
        """Wait until no request has waited or drawn for ``COMPILE_WHEN_IDLE_S`` (True), or
        no worker has batch sizes left to compile (False)."""
        while any(w.forms_to_compile() for w in self._workers):
            if len(self._queue) or self._running:
                self._busy_at = time.monotonic()
            idle_for = time.monotonic() - self._busy_at
            if idle_for >= self.COMPILE_WHEN_IDLE_S:
                return True
            await asyncio.sleep(min(0.5, self.COMPILE_WHEN_IDLE_S - idle_for))
        return False

    def _may_take(self, worker: DeviceWorker) -> bool:
        """While compiling in steps, a worker not compiled for a single request yet leaves
        the queue to an idle one that is: one user at a time gets compiled pictures from
        the first GPU compiled, not every other picture from an uncompiled one."""
        if not self._compiling or worker.compiled_for(1):
            return True
        return not any(other.compiled_for(1) for other in self._waiting if other is not worker)

    def _form_wanted(self, worker: DeviceWorker, batch: list[Job]) -> int | None:
        """The compile step to take before drawing ``batch`` uncompiled: its form, when more
        requests wait behind it, or when that form has been drawn uncompiled often enough
        (a load the compiled form serves faster; see COMPILE_WHEN_IDLE_S)."""
        form = worker.form_to_compile(len(batch)) if self._compiling else None
        if form is None:
            return None
        drawn = self._uncompiled[(worker, form)]
        if len(self._queue) or drawn >= self.COMPILE_AFTER_UNCOMPILED_BATCHES:
            return form
        self._uncompiled[(worker, form)] = drawn + 1
        return None

    async def _stop_compiling(self) -> None:
        task, self._compile_task = self._compile_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._compiling = False

    def compiled_devices(self) -> list[str]:
        """The devices drawing every batch size with compiled forms."""
        return [str(w.device) for w in self._workers if w.serving_compiled]

    # -- requests -------------------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        """Called on the event loop as each request ends (for metrics)."""
        self._observers.append(observer)

    def _notify(self, outcome: str, job: Job | None) -> None:
        for observer in self._observers:
            try:
                observer(outcome, job)
            except Exception:  # metrics must never break serving
                log.exception("observer failed")

    @property
    def models_state(self) -> ModelState:
        return self._state

    async def submit(
        self,
        params: GenerationParams,
        user_id: int,
        *,
        images: Sequence[bytes] = (),
        enforce_limits: bool = True,
    ) -> Job:
        """Queue a request. Raises QueueFull, UserQueueFull or ModelsUnavailable.

        ``images``: the pictures the request draws from, as image file bytes.
        ``enforce_limits=False`` is for requests accepted earlier (recovered after a restart)."""
        if params.image_count > len(images):
            raise ValueError(f"the request names {params.image_count} pictures, {len(images)} given")
        if self._state is ModelState.FAILED:
            self._notify("models_unavailable", None)
            raise ModelsUnavailable(self._error or "models not loaded")
        if enforce_limits and self._queue.pending_for(user_id) >= self._max_pending:
            self._notify("rejected", None)
            raise UserQueueFull()
        if enforce_limits and len(self._queue) >= self._max_queue:
            self._notify("rejected", None)
            raise QueueFull()
        job = Job(params=params, user_id=user_id, images=tuple(images))
        await self._queue.put(job)
        return job

    def position(self, job: Job) -> int | None:
        return self._queue.position(job)

    def find(self, job_id: int) -> Job | None:
        """A job that is still waiting or running."""
        for job in [*self._queue.order(), *self._running]:
            if job.id == job_id:
                return job
        return None

    def cancel(self, job: Job) -> bool:
        """Remove a waiting job. False if it already runs or has finished."""
        if not self._queue.remove(job):
            return False
        job.state = JobState.CANCELLED
        job.future.set_exception(JobCancelled())
        job.future.exception()  # retrieved: nobody need await a cancelled job
        self._notify("cancelled", job)
        return True

    def status(self) -> EngineStatus:
        now = time.monotonic()
        recent = sum(1 for t in self._finished_at if now - t <= self.RATE_WINDOW_S)
        memory = [w.memory_allocated() for w in self._workers]
        cuda_memory = [m for m in memory if m is not None]
        return EngineStatus(
            models=self._state,
            error=self._error,
            devices=[str(w.device) for w in self._workers],
            queued=len(self._queue),
            running=len(self._running),
            images_per_minute=recent / (self.RATE_WINDOW_S / 60),
            gpu_memory_bytes=sum(cuda_memory) if cuda_memory else None,
            reloading=self._reloading,
            ready_devices=[str(w.device) for w in self._workers if w.ready.is_set()],
            # Until every batch size is compiled (a queue may have compiled the last one).
            compiling=self._compiling and any(w.compile_pending or w.forms_to_compile() for w in self._workers),
        )

    # -- workers --------------------------------------------------------------------

    async def _serve(self, worker: DeviceWorker) -> None:
        while True:
            await worker.ready.wait()  # a device still loading takes no batch from the others
            self._waiting.add(worker)
            try:
                batch = await self._queue.take_batch(self._max_batch, lambda: self._may_take(worker))
            finally:
                self._waiting.discard(worker)
            started = self._busy_at = time.monotonic()
            form = self._form_wanted(worker, batch)
            if form is not None:
                # Compiled, then drawn, in one hold: a reload waiting meanwhile must not
                # release the models between the two.
                self._start(batch)  # theirs is being drawn: they wait for the compile, not in the queue
                async with self._every_worker():
                    await worker.compile_step(form)
                    drawn = await self._draw(worker, batch)
            else:
                async with worker.busy:
                    drawn = await self._draw(worker, batch)
            self._busy_at = time.monotonic()
            if drawn is not None:
                # The GPU takes the next batch while this one's PNGs are encoded.
                task = asyncio.create_task(self._finish(batch, drawn, started))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    async def _draw(self, worker: DeviceWorker, batch: list[Job]) -> list[DrawnImage | Exception] | None:
        """The GPU part of a batch; None when the whole batch failed (already reported)."""
        try:
            self._start(batch)
            return await worker.draw(
                [job.params for job in batch], _progress_setter(batch, self._aborting), [job.images for job in batch]
            )
        except Exception as exc:  # a failed batch must never stop the worker
            if not isinstance(exc, GenerationError):
                log.exception("batch of %d failed on %s", len(batch), worker.device)
                exc = GenerationError(f"{type(exc).__name__}: {exc}")
            for job in batch:
                self._fail(job, exc)
            self._running.difference_update(batch)
            return None

    def _start(self, batch: list[Job]) -> None:
        now = time.monotonic()
        for job in batch:
            if job.state is not JobState.RUNNING:
                job.state, job.batch_size, job.started_at = JobState.RUNNING, len(batch), now
                job.started.set()
                self._running.add(job)

    async def _finish(self, batch: list[Job], drawn: list[DrawnImage | Exception], started: float) -> None:
        try:
            images = [d.image for d in drawn if not isinstance(d, Exception)]
            pngs = iter(await self._png.encode(images))
            seconds = time.monotonic() - started
            for job, item in zip(batch, drawn, strict=True):
                if isinstance(item, Exception):
                    self._fail(job, item)
                    continue
                result = GenerationResult(
                    png=next(pngs),
                    width=item.image.width,
                    height=item.image.height,
                    seed=job.params.seed,
                    seconds=seconds,
                    batch_size=len(batch),
                    prompt_truncated=item.prompt_truncated,
                )
                job.state = JobState.DONE
                self._finished_at.append(time.monotonic())
                if not job.future.done():
                    job.future.set_result(result)
                self._notify("done", job)
        except Exception as exc:
            log.exception("finishing a batch of %d failed", len(batch))
            for job in batch:
                self._fail(job, GenerationError(f"{type(exc).__name__}: {exc}"))
        finally:
            self._running.difference_update(batch)

    def _fail(self, job: Job, error: Exception) -> None:
        if job.future.done():
            return  # already answered
        job.state = JobState.FAILED
        job.future.set_exception(error)
        job.future.exception()  # mark retrieved; the caller may be gone
        outcome = {OutOfMemory: "out_of_memory", ModelsUnavailable: "models_unavailable"}.get(type(error), "failed")
        self._notify(outcome, job)


def _progress_setter(batch: list[Job], aborting: threading.Event) -> Callable[[int, int], None]:
    def on_step(done: int, total: int) -> None:
        if aborting.is_set():
            raise BatchAborted(f"stopped after step {done} of {total}")
        # Plain attribute writes from the worker thread; readers only display them.
        for job in batch:
            job.step = done

    return on_step
