"""diffusers' Kandinsky schedulers, handed their timesteps as Python ints.

The pipelines pass each timestep as a 0-d view of ``scheduler.timesteps`` on the GPU.
DDPMScheduler and UnCLIPScheduler then index CPU tables with it, test it in ``if``s and
search ``timesteps`` for it: every one of those waits for the GPU to finish all queued
work (349 waits in one 25 + 10 step draw, bench/results/h200-2026-11-26). The GPU then
sits idle between steps while Python catches up. These subclasses look the value up in a
host copy of the timesteps and call diffusers' own ``step()`` with it: the same formulas
on the same numbers, so the same pictures, without the waits.

Where each decoder sampler reads its timestep (diffusers 0.42):
- DDPM: ``previous_timestep`` searches ``timesteps``; ``step`` indexes ``alphas_cumprod``
  and tests ``t > 0`` and ``prev_t >= 0``.
- DDIM: ``step`` computes ``prev_timestep`` from it, indexes ``alphas_cumprod`` and tests
  ``prev_timestep >= 0`` (also in ``_get_variance``).
- DPM-Solver++ (multistep): only the first ``step`` of a draw reads it, in
  ``_init_step_index`` -> ``index_for_timestep`` (``(timesteps == t).nonzero()`` and
  ``.item()``); later steps count ``step_index`` and read ``sigmas``, kept on the CPU. Its
  ``add_noise`` (img2img only, once before the first step) still searches on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UnCLIPScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin


class _HostTimesteps:
    timesteps: torch.Tensor
    _host_timesteps: list[int] = []  # noqa: RUF012  (replaced, never changed in place)

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        super().set_timesteps(*args, **kwargs)  # type: ignore[misc]
        self._host_timesteps = self.timesteps.tolist()  # one wait per draw, not several per step

    def _host(self, timestep: Any) -> Any:
        """The Python value of ``timestep`` without asking the GPU when it is one of ours."""
        if not isinstance(timestep, torch.Tensor) or timestep.device.type == "cpu":
            return timestep
        own = self.timesteps
        if (
            timestep.dim() == 0
            and own.dim() == 1
            and own.stride(0) == 1
            and timestep.untyped_storage().data_ptr() == own.untyped_storage().data_ptr()
            and len(self._host_timesteps) == own.shape[0]
        ):
            return self._host_timesteps[timestep.storage_offset() - own.storage_offset()]
        return timestep.item()  # a value from elsewhere: correct, with one wait


class HostTimestepDDPMScheduler(_HostTimesteps, DDPMScheduler):
    """The Kandinsky 2.2 decoder's scheduler."""

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):  # type: ignore[override]
        return super().step(model_output, self._host(timestep), sample, generator=generator, return_dict=return_dict)

    def previous_timestep(self, timestep):  # type: ignore[override]
        # diffusers searches the device tensor for the timestep; the host copy has the same values.
        if isinstance(timestep, int) and (self.custom_timesteps or self.num_inference_steps):
            index = self._host_timesteps.index(timestep)
            return self._host_timesteps[index + 1] if index + 1 < len(self._host_timesteps) else -1
        return super().previous_timestep(timestep)


class HostTimestepDDIMScheduler(_HostTimesteps, DDIMScheduler):
    """DDIM (eta 0: no noise added after the start) on the decoder's schedule."""

    def step(self, model_output, timestep, *args, **kwargs):  # type: ignore[override]
        return super().step(model_output, self._host(timestep), *args, **kwargs)


class HostTimestepDPMSolverMultistepScheduler(_HostTimesteps, DPMSolverMultistepScheduler):
    """DPM-Solver++ 2M (diffusers' defaults: algorithm_type dpmsolver++, solver_order 2)."""

    def step(self, model_output, timestep, *args, **kwargs):  # type: ignore[override]
        return super().step(model_output, self._host(timestep), *args, **kwargs)

    def index_for_timestep(self, timestep, schedule_timesteps=None):  # type: ignore[override]
        # diffusers' search of the device tensor, on the host copy: no match -> the last
        # index; several -> the second (so img2img never skips a sigma); else the match.
        host = self._host_timesteps
        if schedule_timesteps is None and isinstance(timestep, int) and len(host) == len(self.timesteps):
            matches = [i for i, t in enumerate(host) if t == timestep]
            if not matches:
                return len(host) - 1
            return matches[1] if len(matches) > 1 else matches[0]
        return super().index_for_timestep(timestep, schedule_timesteps)


class HostTimestepUnCLIPScheduler(_HostTimesteps, UnCLIPScheduler):
    """The Kandinsky 2.2 prior's scheduler."""

    def step(  # type: ignore[override]
        self, model_output, timestep, sample, prev_timestep=None, generator=None, return_dict=True
    ):
        return super().step(
            model_output,
            self._host(timestep),
            sample,
            prev_timestep=self._host(prev_timestep),
            generator=generator,
            return_dict=return_dict,
        )


_HOST_VERSIONS: dict[type, type] = {
    DDPMScheduler: HostTimestepDDPMScheduler,
    DDIMScheduler: HostTimestepDDIMScheduler,
    DPMSolverMultistepScheduler: HostTimestepDPMSolverMultistepScheduler,
    UnCLIPScheduler: HostTimestepUnCLIPScheduler,
}


def with_host_timesteps(scheduler: SchedulerMixin) -> SchedulerMixin:
    """The same scheduler and config, as its host-timestep subclass; others are kept as they are."""
    host = _HOST_VERSIONS.get(type(scheduler))
    return host.from_config(scheduler.config) if host is not None else scheduler


# The decoder's samplers a request may name (generation.samplers.SAMPLER_NAMES says which
# and why no others), each built from the loaded decoder's own scheduler config
# (diffusers' ``from_config``), with these settings on top.
SAMPLERS: dict[str, type[SchedulerMixin]] = {
    "ddpm": HostTimestepDDPMScheduler,
    "ddim": HostTimestepDDIMScheduler,
    "dpmpp": HostTimestepDPMSolverMultistepScheduler,
}
_SAMPLER_SETTINGS: dict[str, dict[str, Any]] = {
    # Named although they are diffusers' defaults: a decoder config from a DPM-Solver
    # scheduler of other settings must still give 2M.
    "dpmpp": {"algorithm_type": "dpmsolver++", "solver_order": 2},
}


def decoder_scheduler(name: str, config: Any) -> SchedulerMixin:
    """The decoder's scheduler for sampler ``name`` (a key of SAMPLERS), from ``config``."""
    try:
        cls = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}") from None
    return cls.from_config(config, **_SAMPLER_SETTINGS.get(name, {}))
