"""What one picture request asks for, what it may ask for, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DrawLimits:
    """What a request gets when it names nothing, and the most it may ask for (from the
    settings, through generation.composition.request_limits)."""

    default_width: int
    default_height: int
    default_steps: int
    default_guidance: float
    default_prior_guidance: float
    max_side: int
    max_steps: int
    max_prompt_chars: int = 1000


@dataclass(frozen=True)
class GenerationParams:
    """Inputs of one picture, with the old service's meaning of each field."""

    prompt: str
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    prior_guidance_scale: float
    seed: int
    negative_prompt: str | None = None

    @property
    def batch_key(self) -> tuple[int, int, int, float, float]:
        """Requests with equal keys can run in one batch."""
        return (
            self.width,
            self.height,
            self.num_inference_steps,
            self.guidance_scale,
            self.prior_guidance_scale,
        )


@dataclass(frozen=True)
class GenerationResult:
    png: bytes
    width: int
    height: int
    seed: int
    seconds: float  # from the start of its batch to the finished PNG
    batch_size: int
    prompt_truncated: bool = False
