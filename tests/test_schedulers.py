"""The schedulers' timesteps come from the host: same numbers, no reads from the device."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UnCLIPScheduler
from tiny_kandinsky import DDPM_CONFIG as DDPM
from tiny_kandinsky import UNCLIP_CONFIG as UNCLIP

from generation.schedulers import HostTimestepDDPMScheduler, HostTimestepUnCLIPScheduler, with_host_timesteps


def stock_schedulers() -> list:
    return [DDPMScheduler(**DDPM), UnCLIPScheduler(**UNCLIP)]


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
    ddpm, unclip = (with_host_timesteps(s) for s in stock_schedulers())
    assert type(ddpm) is HostTimestepDDPMScheduler and ddpm.config == DDPMScheduler(**DDPM).config
    assert type(unclip) is HostTimestepUnCLIPScheduler
    other = object.__new__(type("OtherScheduler", (), {}))
    assert with_host_timesteps(other) is other  # a scheduler we know nothing of is kept


@pytest.mark.parametrize("index", [0, 1])
def test_same_samples_as_diffusers(index: int) -> None:
    stock = stock_schedulers()[index]
    host = with_host_timesteps(stock_schedulers()[index])
    start = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run_loop(host, start.clone()), run_loop(stock, start.clone()))


@pytest.mark.parametrize("index", [0, 1])
def test_step_never_reads_the_device_timesteps(index: int) -> None:
    """On the "meta" device tensors have no data, so any read of a timestep's value fails,
    as diffusers' own schedulers do; on a GPU each such read waits for all queued work."""
    meta = torch.empty(2, 4, 8, 8, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):
        run_loop(stock_schedulers()[index], meta)
    assert run_loop(with_host_timesteps(stock_schedulers()[index]), meta).device.type == "meta"
