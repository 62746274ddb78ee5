"""The schedulers' timesteps come from the host: same numbers, no reads from the device."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UnCLIPScheduler
from tiny_kandinsky import DDPM_CONFIG as DDPM
from tiny_kandinsky import UNCLIP_CONFIG as UNCLIP

from generation.samplers import SAMPLER_NAMES
from generation.schedulers import (
    SAMPLERS,
    HostTimestepDDIMScheduler,
    HostTimestepDDPMScheduler,
    HostTimestepDPMSolverMultistepScheduler,
    HostTimestepUnCLIPScheduler,
    decoder_scheduler,
    with_host_timesteps,
)


def stock_schedulers() -> list:
    """The prior's, the decoder's, and each other sampler from the decoder's config (as
    generation.pipelines builds them)."""
    decoder = DDPMScheduler(**DDPM)
    return [
        decoder,
        UnCLIPScheduler(**UNCLIP),
        DDIMScheduler.from_config(decoder.config),
        DPMSolverMultistepScheduler.from_config(decoder.config),
    ]


SCHEDULERS = [0, 1, 2, 3]


def run_loop(scheduler, sample: torch.Tensor, steps: int = 6, seed: int = 3) -> torch.Tensor:
    """What the Kandinsky pipelines do: iterate ``timesteps`` and step with each view of it."""
    model = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1) if sample.device.type != "meta" else None
    scheduler.set_timesteps(steps)
    if sample.device.type == "meta":  # as on a GPU: the timesteps live on the device
        scheduler.timesteps = scheduler.timesteps.to("meta")
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        output = (
            torch.randn(sample.shape, generator=model) if sample.device.type != "meta" else torch.empty_like(sample)
        )
        extra = {}
        if isinstance(scheduler, UnCLIPScheduler):
            extra["prev_timestep"] = timesteps[i + 1] if i + 1 < len(timesteps) else None
        sample = scheduler.step(output, t, sample, generator=noise, **extra).prev_sample
    return sample


def test_the_hub_schedulers_get_host_versions() -> None:
    ddpm, unclip = (with_host_timesteps(s) for s in stock_schedulers()[:2])
    assert type(ddpm) is HostTimestepDDPMScheduler and ddpm.config == DDPMScheduler(**DDPM).config
    assert type(unclip) is HostTimestepUnCLIPScheduler
    other = object.__new__(type("OtherScheduler", (), {}))
    assert with_host_timesteps(other) is other  # a scheduler we know nothing of is kept
    ddim, dpm = (with_host_timesteps(s) for s in stock_schedulers()[2:])
    assert type(ddim) is HostTimestepDDIMScheduler and type(dpm) is HostTimestepDPMSolverMultistepScheduler


def test_each_sampler_has_its_scheduler() -> None:
    assert tuple(SAMPLERS) == SAMPLER_NAMES
    config = DDPMScheduler(**DDPM).config
    assert type(decoder_scheduler("ddpm", config)) is HostTimestepDDPMScheduler
    assert type(decoder_scheduler("ddim", config)) is HostTimestepDDIMScheduler
    dpm = decoder_scheduler("dpmpp", config)
    assert type(dpm) is HostTimestepDPMSolverMultistepScheduler
    assert (dpm.config.algorithm_type, dpm.config.solver_order) == ("dpmsolver++", 2)  # 2M
    assert dpm.config.beta_end == DDPM["beta_end"]  # the decoder's own schedule
    # From a DPM-Solver config of other settings, still 2M.
    other = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3).config
    assert (
        decoder_scheduler("dpmpp", other).config.solver_order,
        decoder_scheduler("dpmpp", other).config.algorithm_type,
    ) == (2, "dpmsolver++")
    with pytest.raises(ValueError, match="ddpm, ddim, dpmpp"):
        decoder_scheduler("euler", config)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("start", [0, 3])  # a text draw, and img2img's slice of the timesteps
def test_host_reads_our_device_timesteps_from_the_host(name: str, start: int) -> None:
    """As on a GPU: the pipelines step with 0-d views of ``timesteps`` (img2img: of a slice
    of it); each resolves to its host value without reading the device."""
    scheduler = decoder_scheduler(name, DDPMScheduler(**DDPM).config)
    scheduler.set_timesteps(8)
    host = scheduler.timesteps.tolist()
    scheduler.timesteps = scheduler.timesteps.to("meta")
    views = scheduler.timesteps[start:]
    resolved = [scheduler._host(t) for t in views]
    assert resolved == host[start:] and all(type(t) is int for t in resolved)


@pytest.mark.parametrize("index", SCHEDULERS)
def test_same_samples_as_diffusers(index: int) -> None:
    stock = stock_schedulers()[index]
    host = with_host_timesteps(stock_schedulers()[index])
    start = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run_loop(host, start.clone()), run_loop(stock, start.clone()))


@pytest.mark.parametrize("index", SCHEDULERS)
def test_step_never_reads_the_device_timesteps(index: int) -> None:
    """On the "meta" device tensors have no data, so any read of a timestep's value fails,
    as diffusers' own schedulers do; on a GPU each such read waits for all queued work."""
    meta = torch.empty(2, 4, 8, 8, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        run_loop(stock_schedulers()[index], meta)
    assert run_loop(with_host_timesteps(stock_schedulers()[index]), meta).device.type == "meta"
