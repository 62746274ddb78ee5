"""Prometheus metrics (prometheus-client): outcomes, timings and batch sizes as they
happen, queue depth and GPU memory read from the engine at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from generation import GenerationEngine, Job

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class Metrics:
    def __init__(self, engine: GenerationEngine) -> None:
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
        engine.add_observer(self.observe)

    def observe(self, outcome: str, job: Job | None) -> None:
        self.requests.labels(outcome).inc()
        if job is None or job.started_at is None:
            return
        self.queue_seconds.observe(job.waited_s)
        self.batch_size.observe(job.batch_size)
        if outcome == "done" and job.future.done() and not job.future.exception():
            self.generation_seconds.observe(job.future.result().seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
