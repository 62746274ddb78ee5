"""Turn the DEVICE and DTYPE settings into torch devices and dtypes."""

from __future__ import annotations

import torch

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_devices(spec: str) -> list[torch.device]:
    """``auto`` (CUDA if present), ``cpu``, ``cuda``, ``cuda:N``, ``cuda:0,cuda:1`` or ``all``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return [torch.device("cuda:0" if torch.cuda.is_available() else "cpu")]
    if spec == "cpu":
        return [torch.device("cpu")]
    if not torch.cuda.is_available():
        raise RuntimeError(f"DEVICE={spec} asks for CUDA, but no CUDA GPU is visible")
    count = torch.cuda.device_count()
    if spec == "all":
        return [torch.device(f"cuda:{i}") for i in range(count)]
    devices = []
    for part in spec.split(","):
        device = torch.device("cuda:0" if part == "cuda" else part)
        if device.index is not None and device.index >= count:
            raise RuntimeError(f"DEVICE names {device}, but only {count} CUDA GPU(s) are visible")
        devices.append(device)
    return devices


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on CUDA and float32 on the CPU (CPU half precision is slow)."""
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[spec]
