"""One device's worker: its pipelines and the single thread that may touch them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image

from generation.compiled import compile_seconds, seconds_since
from generation.errors import ModelsUnavailable, OutOfMemory
from generation.images import BadImage, open_image
from generation.params import GenerationParams
from generation.pipelines import DrawnImage, KandinskyPipelines, Pictures, StepCallback

log = logging.getLogger(__name__)


class DeviceWorker:
    """Owns one device's pipelines. Every model call goes through ``_executor``, a pool
    of exactly one thread: diffusers pipelines and schedulers are not thread-safe."""

    def __init__(self, device: torch.device, index: int = 0) -> None:
        self.device = device
        self.busy = asyncio.Lock()  # held while a batch runs or the models (re)load
        self.ready = asyncio.Event()  # models loaded: it may take batches
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"worker{index}-{device}")
        self._pipes: KandinskyPipelines | None = None

    async def load(self, loader: Callable[[torch.device], KandinskyPipelines]) -> None:
        """Replace the pipelines, once the batch in hand (if any) has finished."""
        async with self.busy:
            self.ready.clear()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._load, loader)
            self.ready.set()

    def _load(self, loader: Callable[[torch.device], KandinskyPipelines]) -> None:
        self._release()  # a GPU rarely holds two copies
        self._pipes = loader(self.device)

    @property
    def compile_pending(self) -> bool:
        """Its pipelines draw eager until they are compiled (generation.engine does it)."""
        return self._pipes is not None and self._pipes.compile_pending

    @property
    def serving_compiled(self) -> bool:
        return self._pipes is not None and self._pipes.serving_compiled

    def forms_to_compile(self) -> tuple[int, ...]:
        """While compiling in steps: the batch sizes still to warm up (``compile_step``)."""
        return self._pipes.forms_to_compile() if self._pipes is not None else ()

    def compiled_for(self, count: int) -> bool:
        """A batch of ``count`` requests draws with compiled forms."""
        return self._pipes is not None and self._pipes.compiled_for(count)

    def form_to_compile(self, count: int) -> int | None:
        """While compiling in steps: the ``compile_step`` a batch of ``count`` needs to
        draw compiled, or None."""
        return self._pipes.form_to_compile(count) if self._pipes is not None else None

    async def compile_step(self, batch_size: int | None) -> tuple[int, ...] | None:
        """One step of compiling on the worker thread, between batches (the caller holds
        ``busy``): ``None`` makes the compiled forms and returns the batch sizes to warm up,
        one step each. None when compiling failed: logged, and the pipelines draw eager."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._compile_step, batch_size)

    def _compile_step(self, batch_size: int | None) -> tuple[int, ...] | None:
        pipes = self._pipes
        if pipes is None or (batch_size is None and not pipes.compile_pending):
            return None
        if batch_size is not None and pipes.compiled is False:
            return None  # dropped meanwhile
        try:
            if batch_size is None:
                return pipes.begin_compile()
            started, before = time.monotonic(), compile_seconds()
            if not pipes.warm_up_compiled(batch_size):
                return ()  # warm already (asked for by a batch and by an idle spell)
            took, spent = time.monotonic() - started, seconds_since(before)
            log.info("compiled batch size %d on %s in %.1f s (%s)", batch_size, self.device, took, spent)
            if pipes.serving_compiled:
                log.info("compiled drawing on %s", self.device)
            return ()
        except Exception:
            log.exception("torch.compile failed on %s; drawing without it (COMPILE=false skips trying)", self.device)
            pipes.drop_compiled()
            return None

    async def release(self) -> None:
        """Free the models (before loading new ones), once the batch in hand has finished."""
        async with self.busy:
            self.ready.clear()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._release)

    def _release(self) -> None:
        if self._pipes is not None:
            pipes, self._pipes = self._pipes, None
            pipes.release()

    async def draw(
        self, batch: Sequence[GenerationParams], on_step: StepCallback, pictures: Sequence[Pictures] | None = None
    ) -> list[DrawnImage | Exception]:
        """Draw a batch on the GPU; the caller holds ``busy``. Per request: the image, or
        the error that request alone met (out of memory even when drawn alone, or a
        picture that can't be read)."""
        loop = asyncio.get_running_loop()
        pictures = list(pictures) if pictures is not None else [() for _ in batch]
        return await loop.run_in_executor(self._executor, self._draw, list(batch), on_step, pictures)

    def _draw(
        self, batch: list[GenerationParams], on_step: StepCallback, pictures: list[Pictures]
    ) -> list[DrawnImage | Exception]:
        if self._pipes is None:
            raise ModelsUnavailable("models not loaded")
        # A picture that can't be read fails its own request, not the batch.
        decoded: list[list[Image.Image] | BadImage] = []
        for own in pictures:
            try:
                decoded.append([open_image(x) if isinstance(x, bytes | bytearray) else x for x in own])
            except BadImage as exc:
                decoded.append(exc)
        readable = [i for i, d in enumerate(decoded) if not isinstance(d, BadImage)]
        if len(readable) < len(batch):
            results: list[DrawnImage | Exception] = [d for d in decoded]  # type: ignore[misc]
            if readable:
                drawn = self._draw([batch[i] for i in readable], on_step, [decoded[i] for i in readable])
                for i, item in zip(readable, drawn, strict=True):
                    results[i] = item
            return results
        return self._draw_readable(batch, on_step, decoded)  # type: ignore[arg-type]

    def _draw_readable(
        self, batch: list[GenerationParams], on_step: StepCallback, pictures: list[Pictures]
    ) -> list[DrawnImage | Exception]:
        try:
            return list(self._pipes.draw(batch, on_step, pictures))
        except torch.OutOfMemoryError:
            log.warning("out of GPU memory on %s with a batch of %d", self.device, len(batch))
        # Outside the except block, so the traceback (and the tensors its frames hold)
        # is gone before we retry.
        self._empty_cache()
        if len(batch) == 1:
            return [OutOfMemory()]
        half = len(batch) // 2
        return self._draw(batch[:half], on_step, pictures[:half]) + self._draw(batch[half:], on_step, pictures[half:])

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_allocated(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.memory_allocated(self.device)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
