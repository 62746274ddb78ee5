"""CUDA graph trees keep state per thread: every GPU's worker thread gets its own, on each
torch version pyproject.toml admits (torch 2.11 set it up only in the importing thread)."""

from __future__ import annotations

import threading

from torch._inductor import cudagraph_trees as trees

from generation.compiled import ready_thread_for_cuda_graphs


def state_on_a_new_thread(prepare: bool) -> dict:
    seen: dict = {}

    def work() -> None:
        try:
            if prepare:
                ready_thread_for_cuda_graphs()
                ready_thread_for_cuda_graphs()  # twice: the state made first is kept
            seen["containers"] = trees.get_obj(trees.local, "tree_manager_containers")
            seen["locks"] = trees.get_obj(trees.local, "tree_manager_locks")
            seen["again"] = trees.get_obj(trees.local, "tree_manager_containers")
        except BaseException as exc:  # torch 2.11 without the preparation: AssertionError
            seen["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return seen


def test_a_worker_thread_gets_its_own_cuda_graph_tree_state() -> None:
    seen = state_on_a_new_thread(prepare=True)
    assert "error" not in seen, seen.get("error")
    assert seen["containers"] == {} and seen["again"] is seen["containers"]
    # Not the importing thread's: the graphs a thread records are its own.
    assert seen["containers"] is not trees.get_obj(trees.local, "tree_manager_containers")
    lock = seen["locks"][1]
    assert lock.acquire(blocking=False)
    lock.release()


def test_each_worker_thread_gets_separate_state() -> None:
    a, b = state_on_a_new_thread(prepare=True), state_on_a_new_thread(prepare=True)
    assert a["containers"] is not b["containers"]
