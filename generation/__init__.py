"""Kandinsky 2.2 generation: model loading, batching queue and GPU workers.

Knows nothing of Telegram: the bot, an HTTP API or a CLI can drive it alike.
"""

from generation.engine import EngineStatus, GenerationEngine, Job, JobState
from generation.errors import (
    GenerationError,
    JobCancelled,
    ModelsUnavailable,
    OutOfMemory,
    QueueFull,
    UserQueueFull,
)
from generation.params import GenerationParams, GenerationResult

__all__ = [
    "EngineStatus",
    "GenerationEngine",
    "GenerationError",
    "GenerationParams",
    "GenerationResult",
    "Job",
    "JobCancelled",
    "JobState",
    "ModelsUnavailable",
    "OutOfMemory",
    "QueueFull",
    "UserQueueFull",
]
