"""What one picture request asks for, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass


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
