"""Filling torch.compile's caches outside the serving process.

A compile with an empty cache takes minutes (313 s on an H200, bench/results/
2026-11-26-engine-v3) and holds the GIL most of that time: run on a thread of the serving
process it starved the worker thread drawing users' pictures (bench/results/
2026-11-29-cold-start). So the bot serves eager at once and a child process
(``python -m generation.compile_cache JOB``) loads the same models on the same GPU, compiles
and warms them up as the bot would: that fills the on-disk caches (TORCHINDUCTOR_CACHE_DIR,
Triton's kernels inside it), after which the serving process compiles its own forms in
seconds (48 s with a warm cache against 313 s cold), between batches on its worker thread.
``python main.py prefetch --compile`` runs the same compile ahead of a start.

A finished compile leaves two files in ``CompileJob.cache_dir``, named by what the compiled
code depends on (``cache_key``): ``<key>.json``, which says the caches are warm (the bot then
needs no child process), and ``<key>.bin``, torch's portable cache ("Mega-Cache",
``torch.compiler.save_cache_artifacts``, torch >= 2.7): every compiled artifact in one
file, put back into the on-disk caches by ``load_cache_artifacts`` before the bot compiles,
so the file alone carries the cache to a host with the same GPU, torch and Triton.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent  # the project: the child process imports it


@dataclass(frozen=True)
class CompileJob:
    """What the bot compiles, as plain values (JSON on the child's command line)."""

    prior_model: str
    decoder_model: str
    device: str  # one GPU: torch's compile cache is per device index, so one job per GPU
    dtype: str
    compile: str
    cpu_offload: bool
    prior_steps: int
    max_batch: int
    width: int
    height: int
    cache_dir: str  # where the stamp and the portable cache file go

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompileJob:
        return cls(**json.loads(text))


def cache_key(job: CompileJob) -> str:
    """What the compiled code depends on: the models, shapes and modes, torch, the GPU."""
    import torch

    from generation.compiled import BACKEND_VARIABLE

    device = torch.device(job.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    parts = {
        **dataclasses.asdict(job),
        "cache_dir": None,
        "device": gpu,
        "index": device.index,  # the FX graph cache keys name the device index (cuda:0 is not cuda:1)
        "torch": torch.__version__,
        "backend": os.environ.get(BACKEND_VARIABLE, "inductor"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _stamp(job: CompileJob, key: str) -> Path:
    return Path(job.cache_dir) / f"{key}.json"


def _artifacts(job: CompileJob, key: str) -> Path:
    return Path(job.cache_dir) / f"{key}.bin"


def compile_now(job: CompileJob) -> bool:
    """Load, compile and warm up as the bot does (on this thread), then record that the
    caches are warm. False when compiling failed or COMPILE leaves nothing to compile."""
    import torch

    from generation.compiled import BACKEND_VARIABLE
    from generation.devices import resolve_dtype
    from generation.pipelines import KandinskyPipelines

    started = time.monotonic()
    device = torch.device(job.device)
    pipes = KandinskyPipelines.load(
        job.prior_model,
        job.decoder_model,
        device,
        resolve_dtype(job.dtype, device),
        compile=job.compile,
        cpu_offload=job.cpu_offload,
        prior_steps=job.prior_steps,
        max_batch=job.max_batch,
    )
    if not pipes.compiled:
        log.info("COMPILE=%s: nothing to compile on %s", job.compile, device)
        return False
    loaded = time.monotonic()
    try:
        pipes.warm_up(job.width, job.height, batch_sizes=pipes.serving_batch_sizes())
    except Exception:
        log.exception("torch.compile failed on %s", device)
        return False
    key = cache_key(job)
    Path(job.cache_dir).mkdir(parents=True, exist_ok=True)
    saved = save_artifacts(_artifacts(job, key))
    stamp = {
        "job": dataclasses.asdict(job),
        "torch": torch.__version__,
        "compiled_s": round(time.monotonic() - loaded, 1),
        "loaded_s": round(loaded - started, 1),
        "artifacts": saved,
        "inductor_cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        "backend": os.environ.get(BACKEND_VARIABLE, "inductor"),
    }
    _write(_stamp(job, key), json.dumps(stamp, indent=1).encode())
    log.info("compiled on %s in %.0f s; compile cache ready (%s)", device, stamp["compiled_s"], job.cache_dir)
    return True


def save_artifacts(path: Path) -> str | None:
    """torch's portable cache of what this process compiled, written to ``path``; what it
    holds ("inductor 8, aot_autograd 8, ..."), or None when torch has none to give."""
    import torch

    save = getattr(torch.compiler, "save_cache_artifacts", None)
    if save is None:
        return None
    try:
        saved = save()
    except Exception:  # a torch that cannot: the on-disk caches are filled anyway
        log.warning("torch.compiler.save_cache_artifacts failed", exc_info=True)
        return None
    if not saved or not saved[0]:
        return None
    data, info = saved
    _write(path, data)
    return _summary(info) or "?"


_loaded_artifacts: dict[Path, bool] = {}  # tried once per process: did it load?
_loading = threading.Lock()


def load_artifacts(path: Path) -> bool:
    """Put a portable cache file into torch's on-disk caches (tried once per file and
    process). False when there is none, or this torch has no portable cache or cannot read it."""
    with _loading:
        if path not in _loaded_artifacts:
            _loaded_artifacts[path] = _load_artifacts(path)
        return _loaded_artifacts[path]


def _load_artifacts(path: Path) -> bool:
    import torch

    load = getattr(torch.compiler, "load_cache_artifacts", None)
    if load is None or not path.is_file():
        return False
    try:
        info = load(path.read_bytes())
    except Exception:  # another torch's file, a truncated one: compile as if none
        log.warning("could not load the compile cache %s; compiling without it", path, exc_info=True)
        return False
    log.info("compile cache loaded from %s: %s", path, _summary(info) or "nothing new")
    return True


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    os.replace(partial, path)  # a crash mid-write leaves no half file


def _summary(info: object) -> str:
    """``CacheInfo`` counts: "inductor 8, aot_autograd 8, ..." (artifacts by kind)."""
    artifacts = getattr(info, "artifacts", None) or {}
    return ", ".join(f"{kind} {len(keys)}" for kind, keys in artifacts.items() if keys)


class CacheFiller:
    """Makes the compile cache warm for ``job`` (one GPU) once per host: at once when a compile
    (this one's child, an earlier start's or ``prefetch --compile``) has left its stamp,
    else by running the compile in a child process."""

    def __init__(self, job: CompileJob) -> None:
        self.job = job
        self._process: asyncio.subprocess.Process | None = None

    async def fill(self) -> bool:
        """True once the cache is warm; False (logged once) when the compile failed."""
        key = await asyncio.to_thread(cache_key, self.job)
        if not await asyncio.to_thread(_warm, self.job, key):
            log.info("compiling on %s in a child process; drawing uncompiled meanwhile", self.job.device)
            started = time.monotonic()
            code = await self._run_child()
            if code != 0 or not _stamp(self.job, key).is_file():
                log.error(
                    "compiling in the background failed (exit code %s, its log is above): drawing uncompiled;"
                    " COMPILE=false skips trying",
                    code,
                )
                return False
            log.info("compile cache filled in %.0f s", time.monotonic() - started)
        await asyncio.to_thread(load_artifacts, _artifacts(self.job, key))  # once: done if _warm did
        return True

    async def _run_child(self) -> int:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "generation.compile_cache", self.job.to_json()]
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self._process = process
        try:
            return await process.wait()
        finally:
            self._process = None
            if process.returncode is None:  # cancelled: a reload or a stop
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(Exception):
                    await asyncio.shield(process.wait())


def _die_with_parent() -> None:
    """In the child, before it runs: on Linux, the kernel kills it when the bot dies (a
    SIGKILL gives the bot no chance to), so no orphan keeps a GPU busy compiling."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _warm(job: CompileJob, key: str) -> bool:
    """Whether a compile left its caches for ``key``: its stamp, and its portable cache
    file or the on-disk cache it filled (a stamp without them would make the bot compile
    from scratch on its worker thread, stalling users for minutes)."""
    try:
        stamp = json.loads(_stamp(job, key).read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("artifacts") and _artifacts(job, key).is_file():
        return load_artifacts(_artifacts(job, key))
    if stamp.get("backend") != "inductor":  # a test's backend: nothing on disk to check
        return True
    filled = stamp.get("inductor_cache")
    return filled == os.environ.get("TORCHINDUCTOR_CACHE_DIR") and (filled is None or Path(filled).is_dir())


def main(argv: list[str]) -> int:
    """The child process: ``python -m generation.compile_cache '<CompileJob JSON>'``."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s compile-cache %(name)s: %(message)s",
    )
    return 0 if compile_now(CompileJob.from_json(argv[0])) else 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # without waiting for torch's compile worker processes to wind down
