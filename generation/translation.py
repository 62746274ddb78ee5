"""Russian prompts drawn as meant: Kandinsky 2.2's prior reads text through an English CLIP
tokenizer, so a prompt with Cyrillic letters is translated (MarianMT, CPU) before it is drawn.

The model runs on one thread of its own, never on the event loop nor on a GPU worker's
thread: a translation never delays /status or another user's message, and never waits
behind a batch of pictures. Texts that wait while a batch is translated go together in the
next one; a small in-memory cache answers repeated texts at once. When the model cannot
load, texts are returned as typed (logged once) and the state says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from generation.loading import LOADING
from generation.params import GenerationParams

log = logging.getLogger(__name__)

DEFAULT_TRANSLATION_MODEL = "Helsinki-NLP/opus-mt-ru-en"
CACHE_SIZE = 512  # texts; a few hundred KB at most
MAX_BATCH = 16  # texts translated in one generate() call
MAX_TOKENS = 512  # MarianMT's positions: longer input is cut, output stops there
_CYRILLIC = re.compile(r"[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]")


def has_cyrillic(text: str | None) -> bool:
    return bool(text) and _CYRILLIC.search(text) is not None


class TranslationState(enum.StrEnum):
    OFF = "off"  # TRANSLATE=off
    LOADING = "loading"  # not loaded yet (texts wait for it)
    ON = "on"
    FAILED = "failed"  # the model could not load: texts are drawn as typed


class Translator:
    """Translates texts with Cyrillic letters to English, off the event loop.

    ``enabled=False`` (TRANSLATE=off) translates nothing and never loads a model."""

    def __init__(
        self, model: str = DEFAULT_TRANSLATION_MODEL, *, enabled: bool = True, cache_size: int = CACHE_SIZE
    ) -> None:
        self.model_name = model
        self.enabled = enabled
        self.error: str | None = None  # why the model did not load
        self.batches = 0  # generate() calls made, and the texts they translated
        self.texts_translated = 0
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size
        self._pending: dict[str, asyncio.Future[str]] = {}  # waiting for the next batch
        self._in_flight: dict[str, asyncio.Future[str]] = {}
        self._drainer: asyncio.Task | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_tried = False
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------------------

    @property
    def state(self) -> TranslationState:
        if not self.enabled:
            return TranslationState.OFF
        if self._model is not None:
            return TranslationState.ON
        if self.error is not None:
            return TranslationState.FAILED
        return TranslationState.LOADING

    def start(self) -> None:
        """Load the model now, in the background (else the first text that needs it does)."""
        if self.enabled:
            self._run_on_thread(self._ensure_loaded)

    def close(self) -> None:
        """Let the thread end once its current work is done (it is a daemon: a load hung on
        the network never keeps the process alive)."""
        if self._thread is not None:
            self._work.put(None)
            self._thread = None

    # -- the caller's side (event loop) -----------------------------------------------

    async def translate_params(self, params: GenerationParams, *, translate: bool = True) -> GenerationParams:
        """``params`` with the prompt, the negative prompt and the mix's texts in English
        where they held Cyrillic; ``typed_prompt`` keeps the prompt as typed when it changed.
        ``translate=False`` (--raw, a user's setting, the API's "translate": false) and
        params translated before come back as they are."""
        texts = [params.prompt, params.negative_prompt or "", *(part.text or "" for part in params.mix)]
        if not translate or params.typed_prompt is not None or not any(map(has_cyrillic, texts)):
            return params
        if not self.enabled:
            return params
        prompt, negative, *mixed = await self.translate(texts)
        mix = tuple(
            part if part.text is None else replace(part, text=english)
            for part, english in zip(params.mix, mixed, strict=True)
        )
        return replace(
            params,
            prompt=prompt,
            negative_prompt=negative if params.negative_prompt is not None else None,
            mix=mix,
            typed_prompt=params.prompt if prompt != params.prompt else None,
        )

    async def translate(self, texts: Sequence[str]) -> list[str]:
        """Each text in English if it holds Cyrillic, else as it is (and as it is when the
        model failed to load)."""
        if not self.enabled:
            return list(texts)
        loop = asyncio.get_running_loop()
        waits: dict[str, asyncio.Future[str]] = {}
        done: dict[str, str] = {}
        for text in dict.fromkeys(texts):
            if not has_cyrillic(text):
                continue
            if text in self._cache:
                self._cache.move_to_end(text)
                done[text] = self._cache[text]
                continue
            future = self._pending.get(text) or self._in_flight.get(text)
            if future is None:
                future = self._pending[text] = loop.create_future()
            waits[text] = future
        if self._pending and (self._drainer is None or self._drainer.done()):
            self._drainer = asyncio.create_task(self._drain(), name="translation")
        for text, future in waits.items():
            done[text] = await asyncio.shield(future)  # a caller gone must not cancel the others' wait
        return [done.get(text, text) for text in texts]

    async def _drain(self) -> None:
        """Translate what waits, a batch at a time; what arrives meanwhile goes in the next."""
        while self._pending:
            batch = list(self._pending)[:MAX_BATCH]
            futures = [self._pending.pop(text) for text in batch]
            self._in_flight.update(zip(batch, futures, strict=True))
            try:
                translated, ok = await self._call_on_thread(self._translate_batch, batch)
            except Exception:  # one bad batch: its texts are drawn as typed
                log.exception("translating %d texts failed: drawing them as typed", len(batch))
                translated, ok = list(batch), False
            finally:
                for text in batch:
                    self._in_flight.pop(text, None)
            if ok:
                self.batches += 1
                self.texts_translated += len(batch)
            for text, result, future in zip(batch, translated, futures, strict=True):
                if ok:
                    self._remember(text, result)
                if not future.done():
                    future.set_result(result)

    def _remember(self, text: str, translated: str) -> None:
        self._cache[text] = translated
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- the translation thread -------------------------------------------------------

    def _run_on_thread(self, work: Callable[[], None]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, args=(self._work,), name="translation", daemon=True)
            self._thread.start()
        self._work.put(work)

    @staticmethod
    def _serve(work: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        _share_the_cpu()
        while (item := work.get()) is not None:
            item()

    def _call_on_thread(self, function: Callable[..., Any], *args: Any) -> asyncio.Future:
        """``function(*args)`` on the translation thread; its result on this loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def run() -> None:
            try:
                result, exc = function(*args), None
            except Exception as error:
                result, exc = None, error
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, result, exc)

        self._run_on_thread(run)
        return future

    def _ensure_loaded(self) -> bool:
        """Load the model once (on the translation thread); False if it cannot be."""
        if not self._load_tried:
            self._load_tried = True
            try:
                self._tokenizer, self._model = load_model(self.model_name)
            except Exception as exc:  # missing, offline, not a Marian model: drawn as typed
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("translation is off: %s could not be loaded (%s)", self.model_name, self.error)
            else:
                log.info("translation model %s loaded", self.model_name)
        return self._model is not None

    def _translate_batch(self, texts: list[str]) -> tuple[list[str], bool]:
        if not self._ensure_loaded():
            return list(texts), False
        import torch

        with torch.inference_mode():
            batch = self._tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=MAX_TOKENS)
            # A translation is rarely three times its source: a model that never stops ends there
            # (or at its own max_length, 512 for the opus-mt models).
            own = self._model.generation_config.max_length or MAX_TOKENS
            limit = min(MAX_TOKENS, own, 3 * int(batch["input_ids"].shape[1]) + 16)
            # max_length counts the decoder's start token; max_new_tokens would be warned about
            # beside the model's own max_length.
            output = self._model.generate(**batch, max_length=limit + 1)
        decoded = self._tokenizer.batch_decode(output, skip_special_tokens=True)
        return [english.strip() or text for english, text in zip(decoded, texts, strict=True)], True


def _share_the_cpu() -> None:
    """Translate with a few CPU threads, not all: a prompt is short, and the event loop
    (and on a CPU-only machine the drawing) needs the cores more. Under OpenMP, torch's
    thread count is the calling thread's own; under another backend it would be the whole
    process's, so it is left alone there."""
    import torch

    if "ATen parallel backend: OpenMP" in torch.__config__.parallel_info():
        torch.set_num_threads(min(4, max(1, (os.cpu_count() or 1) // 4)))


def load_model(model: str) -> tuple[Any, Any]:
    """Tokenizer and model from a hub id or a local directory (downloaded if not cached)."""
    import warnings

    from transformers import MarianMTModel, MarianTokenizer

    if Path(model).is_dir():
        source = model
    elif model.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"no such directory: {model}")
    else:  # fetched before taking the lock: a slow download never holds up the engine's models
        source = download_model(model)
    with LOADING, warnings.catch_warnings():  # never beside the engine's loading (generation/loading.py)
        # "Recommended: pip install sacremoses": only its target-side cleanup needs it.
        warnings.filterwarnings("ignore", message=".*sacremoses")
        tokenizer = MarianTokenizer.from_pretrained(source)
        return tokenizer, MarianMTModel.from_pretrained(source).eval()


def download_model(model: str) -> str:
    """Fetch the files the translation model loads from (``python main.py prefetch``);
    returns the cache directory."""
    from huggingface_hub import snapshot_download

    # The model's PyTorch weights, tokenizer and configs: not its TensorFlow, Flax or Rust copies.
    patterns = ["*.json", "*.spm", "*.txt", "*.model", "*.safetensors", "pytorch_model.bin"]
    return snapshot_download(model, allow_patterns=patterns)
