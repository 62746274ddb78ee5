"""Kandinsky 2.2 generation: model loading, batching queue and GPU workers.

Knows nothing of Telegram: the bot, an HTTP API or a CLI can drive it alike.
"""

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
