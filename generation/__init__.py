"""Kandinsky 2.2 generation: model loading, batching queue and GPU workers.

Knows nothing of Telegram: the bot, an HTTP API or a CLI can drive it alike.

Names are imported on first use (PEP 562): ``GenerationParams`` and the errors need no
torch, so checking a request (``python main.py draw --steps 500``) answers at once
instead of after the seconds torch takes to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generation.engine import EngineStatus, GenerationEngine, Job, JobState, ModelState
    from generation.errors import (
        GenerationError,
        JobCancelled,
        ModelsUnavailable,
        OutOfMemory,
        QueueFull,
        UserQueueFull,
    )
    from generation.params import DrawLimits, GenerationParams, GenerationResult

_MODULE_OF = {
    "EngineStatus": "generation.engine",
    "GenerationEngine": "generation.engine",
    "Job": "generation.engine",
    "JobState": "generation.engine",
    "ModelState": "generation.engine",
    "GenerationError": "generation.errors",
    "JobCancelled": "generation.errors",
    "ModelsUnavailable": "generation.errors",
    "OutOfMemory": "generation.errors",
    "QueueFull": "generation.errors",
    "UserQueueFull": "generation.errors",
    "DrawLimits": "generation.params",
    "GenerationParams": "generation.params",
    "GenerationResult": "generation.params",
}

__all__ = [
    "DrawLimits",
    "EngineStatus",
    "GenerationEngine",
    "GenerationError",
    "GenerationParams",
    "GenerationResult",
    "Job",
    "JobCancelled",
    "JobState",
    "ModelState",
    "ModelsUnavailable",
    "OutOfMemory",
    "QueueFull",
    "UserQueueFull",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'generation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value
