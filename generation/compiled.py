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

import contextlib
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
        self.static = {size: torch.compile(module, mode=mode, dynamic=False) for size in static_sizes}
        self.batched = torch.compile(module, mode=mode)
        # Runs before the compiled code (hooks of the compiled wrapper are not traced).
        self.batched.register_forward_pre_hook(_mark_batch_dynamic, with_kwargs=True)

    def for_requests(self, count: int) -> torch.nn.Module:
        return self.static.get(count, self.batched)


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


def cuda_graph_state() -> tuple[dict, dict]:
    """The calling thread's CUDA graph trees state (set up if missing), to hand to a
    helper thread with ``share_cuda_graph_state``."""
    from torch._inductor import cudagraph_trees as trees

    ready_thread_for_cuda_graphs()
    local = trees.local
    if hasattr(local, "tree_manager_containers"):
        return local.tree_manager_containers, local.tree_manager_locks
    return torch._C._get_obj_in_tls("tree_manager_containers"), torch._C._get_obj_in_tls("tree_manager_locks")


def share_cuda_graph_state(state: tuple[dict, dict]) -> None:
    """Make the calling thread use another thread's CUDA graph trees (one tree manager per
    device for both), as torch does for the threads autograd runs a backward pass on.

    The background compile (generation.pipelines) runs each compiled function once, which
    cudagraph trees does as a warm-up run that records nothing; the function then belongs to
    the worker thread's tree manager, so the worker records and replays its graphs itself.
    """
    from torch._inductor import cudagraph_trees as trees

    containers, locks = state
    trees.local.tree_manager_containers = containers
    trees.local.tree_manager_locks = locks
    torch._C._stash_obj_in_tls("tree_manager_containers", containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", locks)


# torch 2.13 serializes CUDA graph capture and warm-up runs across threads itself
# (``graph_capture_lock``: the caching allocator's pool switch is process-wide); torch 2.11
# does not, so there our own lock keeps one device's capture from another's warm-up.
_graph_work = threading.Lock()


def graph_work_lock() -> contextlib.AbstractContextManager:
    """Held around CUDA graph warm-up and capture where torch has no lock of its own."""
    from torch._inductor import cudagraph_trees as trees

    if hasattr(trees, "graph_capture_lock"):
        return contextlib.nullcontext()
    return _graph_work


def serializes_graph_capture() -> bool:
    """Whether this torch serializes CUDA graph capture across threads itself."""
    from torch._inductor import cudagraph_trees as trees

    return hasattr(trees, "graph_capture_lock")


_fx_patches_per_thread = False


def keep_fx_tracing_on_its_thread() -> bool:
    """Make torch.fx's tracer patch ``torch.nn.Module.__call__`` (and ``__getattr__``, and
    the functions it wraps) for the thread that traces only.

    While it traces (make_fx, inside every compile: AOTAutograd's joint graph, Inductor's
    pattern matcher) torch.fx replaces those class attributes for the whole process: another
    thread drawing at that moment had its modules called through the tracer ("NameError:
    module is not installed as a submodule", or worse, proxies for parameters). With this,
    each patched function calls the replacement on the tracing thread and the function it
    replaced on every other. False (nothing changed) if this torch's tracer is not the one
    this was written for (torch 2.11 to 2.13): then nothing may draw while compiling.
    """
    global _fx_patches_per_thread
    if _fx_patches_per_thread:
        return True
    try:
        from torch.fx._symbolic_trace import _Patcher
    except ImportError:
        return False
    patch, patch_method = getattr(_Patcher, "patch", None), getattr(_Patcher, "patch_method", None)
    if patch is None or patch_method is None:
        return False
    import builtins
    import functools

    def per_thread(new_fn, replaced):
        owner = threading.get_ident()

        @functools.wraps(new_fn)
        def dispatch(*args, **kwargs):
            if threading.get_ident() == owner:
                return new_fn(*args, **kwargs)
            return replaced(*args, **kwargs)

        return dispatch

    @functools.wraps(patch_method)
    def patch_method_per_thread(self, cls, name, new_fn, deduplicate=True):
        return patch_method(self, cls, name, per_thread(new_fn, getattr(cls, name)), deduplicate)

    @functools.wraps(patch)
    def patch_per_thread(self, frame_dict, name, new_fn, deduplicate=True):
        replaced = frame_dict[name] if name in frame_dict else getattr(builtins, name, None)
        if replaced is None:
            return patch(self, frame_dict, name, new_fn, deduplicate)
        return patch(self, frame_dict, name, per_thread(new_fn, replaced), deduplicate)

    _Patcher.patch_method = patch_method_per_thread
    _Patcher.patch = patch_per_thread
    _fx_patches_per_thread = True
    return True
