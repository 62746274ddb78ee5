"""The settings mapped to the engine and to the request limits: one place, used alike by
the bot, the HTTP API and the CLI (``python main.py draw``).

Reads the settings object of config.py and nothing of Telegram, so the CLI reaches the
engine without importing aiogram.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from generation.params import DrawLimits

if TYPE_CHECKING:
    from config import Settings
    from generation.compile_cache import CompileJob
    from generation.engine import GenerationEngine
    from generation.translation import Translator


def create_engine(
    settings: Settings, *, warm_up_size: tuple[int, int] | None = None, compile_in_background: bool = True
) -> GenerationEngine:
    """The engine as the settings describe it; warmed up (on CUDA) for the default size
    unless another is named. ``compile_in_background``: serve uncompiled at once and switch
    to the compiled models when they are ready (the bot); else compile before serving."""
    from generation.factory import build_engine  # imports torch: request_limits alone must not

    return build_engine(
        prior_model=settings.prior_model,
        decoder_model=settings.decoder_model,
        device=settings.device,
        dtype=settings.dtype,
        cpu_offload=settings.cpu_offload,
        compile=settings.compile,
        prior_steps=settings.prior_steps,
        warm_up_size=warm_up_size or (settings.default_width, settings.default_height),
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        max_pending_per_user=settings.max_pending_per_user,
        compile_job=(lambda device: compile_job(settings, device)) if compile_in_background else None,
    )


def compile_cache_dir(settings: Settings) -> Path:
    """The compile cache's stamps and portable cache file (generation.compile_cache), beside
    torch's own cache (TORCHINDUCTOR_CACHE_DIR, main.use_compile_cache) in DATA_DIR."""
    return Path(settings.data_dir) / "compile-cache"


def compile_job(settings: Settings, device: str) -> CompileJob:
    """The compile the bot runs in the background on ``device`` (and ``python main.py
    prefetch --compile`` ahead of a start)."""
    from generation.compile_cache import CompileJob

    return CompileJob(
        prior_model=settings.prior_model,
        decoder_model=settings.decoder_model,
        device=device,
        dtype=settings.dtype,
        compile=settings.compile,
        cpu_offload=settings.cpu_offload,
        prior_steps=settings.prior_steps,
        max_batch=settings.max_batch,
        width=settings.default_width,
        height=settings.default_height,
        cache_dir=str(compile_cache_dir(settings)),
    )


def create_translator(settings: Settings) -> Translator:
    """The Russian-prompt translator (TRANSLATE, TRANSLATION_MODEL); it loads its model on
    its own thread when started or first needed."""
    from generation.translation import Translator  # torch-free until it loads its model

    return Translator(settings.translation_model, enabled=settings.translate == "auto")


def request_limits(settings: Settings) -> DrawLimits:
    """Defaults and maxima of one request, from /draw, POST /generate or the CLI alike."""
    return DrawLimits(
        default_width=settings.default_width,
        default_height=settings.default_height,
        default_steps=settings.default_steps,
        default_guidance=settings.default_guidance,
        default_prior_guidance=settings.default_prior_guidance,
        default_strength=settings.default_strength,
        default_sampler=settings.default_sampler,
        max_side=settings.max_side,
        max_steps=settings.max_steps,
        max_prompt_chars=settings.max_prompt_chars,
        styles=settings.styles.styles,
        max_upscale_side=settings.max_upscale_side,
        upscale_strength=settings.upscale_strength,
    )
