"""torch.compile forms of one model: static shapes for the batch sizes that matter most,
a dynamic batch dimension for the rest.

A single request is the idle bot's case, and a full batch (MAX_BATCH) the busy bot's: each
gets a graph for static shapes. Other batch sizes share one graph whose batch dimension is
dynamic, so they run without compiling again. Static shapes are faster: on an H200 one
picture took 1.21 s on the dynamic graph and 1.02 s on a static one
(bench/results/2026-11-26-engine-v2), and a UNet step at batch 8 takes 79.5 ms dynamic
against 72.2 ms static (bench/results/2026-11-26-engine-v3). With one compiled module for
all sizes torch.compile makes the batch dimension dynamic as soon as it sees a second size.
The forms never share a graph: torch.compile keeps each call's compiled code apart.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch


def _tensors(values: Any) -> Iterator[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):  # the UNet takes its image embeddings in added_cond_kwargs
            yield from _tensors(value.values())


def _mark_batch_dynamic(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    """Mark the batch dimension of every input that has one as dynamic, so the first batch
    compiles a graph for all batch sizes instead of one per size."""
    batched = [t for t in _tensors([*args, *kwargs.values()]) if t.dim() > 0]
    if not batched:
        return
    rows = batched[0].shape[0]
    for tensor in batched:
        if tensor.shape[0] == rows:
            torch._dynamo.maybe_mark_dynamic(tensor, 0)


class CompiledByBatch:
    """The compiled forms of ``module`` and which one a call with ``count`` requests uses."""

    def __init__(self, module: torch.nn.Module, mode: str, static_sizes: tuple[int, ...] = (1,)) -> None:
        self.static = {size: compile_module(module, mode, dynamic=False) for size in static_sizes}
        self.batched = compile_module(module, mode)
        # Runs before the compiled code (hooks of the compiled wrapper are not traced).
        self.batched.register_forward_pre_hook(_mark_batch_dynamic, with_kwargs=True)

    def for_requests(self, count: int) -> torch.nn.Module:
        return self.static.get(count, self.batched)


# The torch.compile backend; only tests set it (to "eager": Dynamo without Inductor's
# minutes of C++ or Triton compiling), the bot always uses Inductor.
BACKEND_VARIABLE = "KANDINSKY_COMPILE_BACKEND"


def compile_module(module: Any, mode: str = "default", **options: Any) -> Any:
    """``torch.compile`` with Inductor in ``mode``, or the backend ``BACKEND_VARIABLE`` names."""
    backend = os.environ.get(BACKEND_VARIABLE, "inductor")
    if backend != "inductor":
        return torch.compile(module, backend=backend, **options)  # modes are Inductor's
    return torch.compile(module, mode=mode, **options)


def ready_thread_for_cuda_graphs() -> None:
    """Give the calling thread the state CUDA graph trees keep per thread.

    torch 2.11 sets that state up only in the thread that first imported
    ``torch._inductor.cudagraph_trees`` (and the threads autograd starts): the second
    GPU's worker thread failed an ``assert`` in ``get_obj`` there
    (bench/results/2026-11-26-engine-v3). torch 2.13 sets it up for any thread on first
    use; this does the same, so compiled serving works on every worker thread on both.
    Call it on the thread that records and replays the graphs.
    """
    from torch._inductor import cudagraph_trees as trees

    local = trees.local
    if hasattr(local, "tree_manager_containers") or torch._C._is_key_in_tls("tree_manager_containers"):
        return
    # What the module does for its importing thread (torch 2.11 to 2.13).
    local.tree_manager_containers = {}
    local.tree_manager_locks = defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls("tree_manager_containers", local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", local.tree_manager_locks)


# Where a compile step's seconds go, from torch.compile's own timers (torch._dynamo.utils.
# compilation_time_metrics: private, read defensively). The rest of a step is drawing:
# the warm-up picture, and recording CUDA graphs.
_PHASES = {
    "compiling": "_compile.compile_inner",  # all of torch.compile's work
    "tracing": "bytecode_tracing",  # Dynamo
    "backend": "OutputGraph.call_user_compiler",  # AOTAutograd and Inductor, caches included
    "guards": "build_guards",
}


def compile_seconds() -> dict[str, float]:
    """Seconds torch.compile has spent so far in this process, per phase."""
    try:
        from torch._dynamo.utils import compilation_time_metrics as metrics

        return {name: sum(metrics.get(key, ())) for name, key in _PHASES.items()}
    except Exception:  # another torch: no breakdown
        return {}


def seconds_since(before: dict[str, float]) -> str:
    """``compile_seconds`` since ``before``: "compiling 9.1 s: tracing 5.0 s, ..."."""
    now = compile_seconds()
    spent = {name: now[name] - before.get(name, 0.0) for name in now}
    if not spent:
        return "no breakdown"
    total, *parts = spent.items()
    return f"{total[0]} {total[1]:.1f} s: " + ", ".join(f"{name} {s:.1f} s" for name, s in parts)
