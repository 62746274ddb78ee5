"""What one picture request asks for, what it may ask for, and what comes back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
    default_strength: float = 0.5  # img2img: how much of the starting picture may change
    default_sampler: str = "ddpm"
    # The styles --style may name (generation.styles: the built-in ones and STYLES_FILE's).
    styles: Mapping[str, Style] = field(default_factory=dict)
    max_upscale_side: int = 2048  # an upscale's longest side (MAX_UPSCALE_SIDE)
    upscale_strength: float = 0.3  # how much an upscale's img2img may change (UPSCALE_STRENGTH)


# img2img strength bounds: below 0.05 nothing changes (no decoder step runs at 20 steps).
STRENGTH_MIN = 0.05
STRENGTH_MAX = 1.0
MIX_MAX_PARTS = 4  # inputs of one /mix (texts and pictures together)


@dataclass(frozen=True)
class Style:
    """A prompt template (generation/styles.toml, STYLES_FILE): the description goes where
    ``prompt`` says ``{prompt}``; ``negative`` is added to the request's negative prompt.
    A request carries its style whole, so a journal row draws the same after the style
    file changed."""

    name: str
    prompt: str
    negative: str = ""

    def wrap(self, description: str) -> str:
        return self.prompt.replace("{prompt}", description)


@dataclass(frozen=True)
class MixPart:
    """One ingredient of a picture's image embedding: a text (drawn into an embedding by
    the prior) or one of the request's pictures (read by the prior's CLIP image encoder),
    with its weight (diffusers' ``KandinskyV22PriorPipeline.interpolate``)."""

    weight: float
    text: str | None = None
    image: int | None = None  # index into the request's pictures (Job.images)


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
    # The decoder's sampler (generation.schedulers.SAMPLERS).
    sampler: str = "ddpm"
    # Where the image embedding comes from. Empty: from ``prompt`` (text to image). Else a
    # weighted mix of texts and pictures (a variation is a mix of one picture, perhaps
    # steered by a text); ``prompt`` then only names the request in captions.
    mix: tuple[MixPart, ...] = ()
    # Draw from this picture (img2img: an index into the request's pictures) instead of
    # from noise, changing it by ``strength`` (STRENGTH_MIN to STRENGTH_MAX).
    init_image: int | None = None
    strength: float = 0.5
    # The prompt as the user typed it, when ``prompt`` is its English translation
    # (generation.translation); None when drawn as typed.
    typed_prompt: str | None = None
    # A prompt template (--style); ``prompt`` stays the user's own description.
    style: Style | None = None

    @property
    def drawn_prompt(self) -> str:
        """The text the prior reads: the description in its style's template."""
        return self.style.wrap(self.prompt) if self.style else self.prompt

    @property
    def drawn_negative(self) -> str | None:
        """The negative prompt the prior reads: the request's and its style's."""
        parts = (self.negative_prompt, self.style.negative if self.style else None)
        return ", ".join(p for p in parts if p) or None

    @property
    def kind(self) -> str:
        """What the request is: text, img2img, variation (one picture, maybe steered by a text) or mix."""
        if self.init_image is not None:
            return "img2img"
        if not self.mix:
            return "text"
        pictures = [p for p in self.mix if p.image is not None]
        return "variation" if len(pictures) == 1 and len(self.mix) <= 2 else "mix"

    @property
    def image_count(self) -> int:
        """How many pictures the request needs (the highest index it names, plus one)."""
        indexes = [p.image for p in self.mix if p.image is not None]
        if self.init_image is not None:
            indexes.append(self.init_image)
        return max(indexes, default=-1) + 1

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys can run in one batch: the decoder call is shared by
        text, variation and mix requests alike; img2img only with img2img of the same
        strength."""
        return (
            self.width,
            self.height,
            self.num_inference_steps,
            self.guidance_scale,
            self.prior_guidance_scale,
            self.sampler,
            None if self.init_image is None else self.strength,
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
