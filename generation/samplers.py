"""The decoder's samplers a request may name, and the steps each takes by default.

Torch-free, like generation.params: the bot, the HTTP API, the settings and the command
line check a sampler's name before torch loads. generation.schedulers holds the
schedulers themselves (one per name here; a test keeps the two lists equal).
"""

from __future__ import annotations

import math

# Only schedulers that work in diffusers' Kandinsky 2.2 pipelines: UniPC's step() takes no
# generator (the pipelines pass one), and the Euler schedulers need scale_model_input,
# which the pipelines never call.
SAMPLER_NAMES: tuple[str, ...] = ("ddpm", "ddim", "dpmpp")
DEFAULT_SAMPLER = "ddpm"  # the decoder's own scheduler, what the old service always used

# A sampler's default step count, as a share of DEFAULT_STEPS (50 unless set), when a
# request names none. DDPM is the reference (its own count). DDIM (eta 0, deterministic)
# takes as many: at 25 steps and below it loses detail that DDPM keeps at 50 (DDIM paper,
# table 1: FID still falls from 20 to 50 steps). DPM-Solver++ 2M is a second-order solver
# that converges in 15-25 steps (DPM-Solver++ paper, section 6): half the steps, about
# half the time for the same picture quality, the point of offering it.
_STEP_SHARE = {"ddpm": 1.0, "ddim": 1.0, "dpmpp": 0.5}


def sampler_steps(sampler: str, default_steps: int) -> int:
    """The decoder steps a request with ``sampler`` and no step count of its own takes,
    where ``default_steps`` is DEFAULT_STEPS (never more than it, never fewer than 1)."""
    return max(1, math.ceil(default_steps * _STEP_SHARE[sampler]))
