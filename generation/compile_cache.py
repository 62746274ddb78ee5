"""torch.compile's portable cache file ("Mega-Cache", torch >= 2.7): every compiled artifact
of a process in one file, put back into torch's on-disk caches by the next process.

The on-disk caches themselves (TORCHINDUCTOR_CACHE_DIR, with Triton's kernels under it) live
in DATA_DIR already (main.use_compile_cache), so on one volume this file adds little; it is
the one file to copy when the cache directory is not kept (another host with the same GPU,
torch and Triton, an image built with it).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class CompileCacheFile:
    """Loads the file once before the first compile and saves it after a compile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded = False
        self._lock = threading.Lock()

    def load_once(self) -> bool:
        """Put the file's artifacts into torch's caches (once per process). False when there
        is no file, or this torch has no portable cache or cannot read it."""
        with self._lock:
            if self._loaded:
                return False
            self._loaded = True
            if not self.path.is_file():
                return False
            import torch

            load = getattr(torch.compiler, "load_cache_artifacts", None)
            if load is None:
                return False
            try:
                info = load(self.path.read_bytes())
            except Exception:  # another torch's file, a truncated file: compile as if none
                log.warning("could not load the compile cache %s; compiling without it", self.path, exc_info=True)
                return False
            log.info("compile cache loaded from %s: %s", self.path, _summary(info))
            return True

    def save(self) -> bool:
        """Write what this process compiled or found in the caches. Keeps the old file when
        this process recorded nothing (torch records an artifact as it is made or read)."""
        import torch

        save = getattr(torch.compiler, "save_cache_artifacts", None)
        if save is None:
            return False
        saved = save()
        if saved is None or not saved[0]:
            return False
        data, info = saved
        if not _summary(info) and self.path.is_file():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_bytes(data)
        os.replace(partial, self.path)  # a crash mid-write leaves the old file
        log.info("compile cache saved to %s (%.1f MB): %s", self.path, len(data) / 1e6, _summary(info))
        return True


def _summary(info) -> str:
    """``CacheInfo`` counts: "inductor 8, aot_autograd 8, ..." (artifacts by kind)."""
    artifacts = getattr(info, "artifacts", None) or {}
    return ", ".join(f"{kind} {len(keys)}" for kind, keys in artifacts.items() if keys)
