"""Prometheus metrics (prometheus-client): outcomes, timings and batch sizes as they
happen, queue depth and GPU memory read from the engine at scrape time. Each replica
reports its own work; with several (DATABASE_URL) also the shared queue's depth, read
from the database at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from generation import GenerationEngine, Job

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger(__name__)


class EngineCollector(Collector):
    def __init__(self, engine: GenerationEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._engine.status()
        yield GaugeMetricFamily("kandinsky_queue_depth", "Requests waiting to be drawn", value=status.queued)
        yield GaugeMetricFamily("kandinsky_running", "Requests being drawn now", value=status.running)
        yield GaugeMetricFamily("kandinsky_models_loaded", "1 when the models are loaded", value=int(status.healthy))
        if status.gpu_memory_bytes is not None:
            yield GaugeMetricFamily(
                "kandinsky_gpu_memory_bytes", "GPU memory allocated by PyTorch", value=status.gpu_memory_bytes
            )


class SharedCollector(Collector):
    """The shared queue (all replicas) and whether this replica polls Telegram. The depth
    is read from the database by ``refresh`` (awaited before each scrape: collectors are
    synchronous); a scrape while the database does not answer leaves the depth out."""

    def __init__(self, depth: Callable[[], Awaitable[int]], poller: Callable[[], bool] | None = None) -> None:
        self._depth = depth
        self._poller = poller
        self._value: int | None = None

    async def refresh(self) -> None:
        try:
            self._value = await self._depth()
        except Exception as exc:
            log.warning("/metrics: the shared queue's depth not read: %s", exc)
            self._value = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._value is not None:
            yield GaugeMetricFamily(
                "kandinsky_shared_queue_depth", "Requests waiting in the shared queue (all replicas)", value=self._value
            )
        if self._poller is not None:
            yield GaugeMetricFamily(
                "kandinsky_poller", "1 while this replica is the one polling Telegram", value=int(self._poller())
            )


class Metrics:
    def __init__(self, engine: GenerationEngine, shared: SharedCollector | None = None) -> None:
        self.shared = shared
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kandinsky_requests", "Picture requests by how they ended", ["outcome"], registry=self.registry
        )
        self.queue_seconds = Histogram(
            "kandinsky_queue_seconds",
            "Seconds a request waited before its batch started",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.generation_seconds = Histogram(
            "kandinsky_generation_seconds",
            "Seconds from the start of a request's batch to its finished PNG",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "kandinsky_batch_size", "Requests in the batch each request ran in", buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(EngineCollector(engine))
        if shared is not None:
            self.registry.register(shared)
        engine.add_observer(self.observe)

    def observe(self, outcome: str, job: Job | None) -> None:
        self.requests.labels(outcome).inc()
        if job is None or job.started_at is None:
            return
        self.queue_seconds.observe(job.waited_s)
        self.batch_size.observe(job.batch_size)
        if outcome == "done" and job.future.done() and not job.future.exception():
            self.generation_seconds.observe(job.future.result().seconds)

    async def refresh(self) -> None:
        """Read what lives elsewhere (the shared queue) before a scrape."""
        if self.shared is not None:
            await self.shared.refresh()

    def render(self) -> bytes:
        return generate_latest(self.registry)
