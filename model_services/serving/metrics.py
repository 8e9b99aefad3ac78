"""Prometheus metrics of one model service.

Each service owns its registry (not the process-global one) so several
services, or several tests, can live in one process without clashing names.
Every series carries ``model`` and ``version`` labels: Prometheus scrapes many
replicas and versions and a canary analysis compares them by these labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds; spans a sub-millisecond EmbeddingBag call to a slow CPU MiniLM batch.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# The *_created series double the exposition for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]


class _GpuCollector(Collector):
    """Read on scrape, so an idle service costs nothing between scrapes."""

    def __init__(self, labels: dict[str, str], device: torch.device) -> None:
        self._labels = labels
        self._device = device

    def collect(self) -> Iterator[Metric]:
        names, values = list(self._labels), list(self._labels.values())
        used = GaugeMetricFamily("model_gpu_memory_used_bytes", "GPU memory allocated by tensors", labels=names)
        used.add_metric(values, float(torch.cuda.memory_allocated(self._device)))
        yield used
        reserved = GaugeMetricFamily(
            "model_gpu_memory_reserved_bytes", "GPU memory held by the allocator", labels=names
        )
        reserved.add_metric(values, float(torch.cuda.memory_reserved(self._device)))
        yield reserved
        try:
            # Needs NVML (pynvml); absent it, skip the series rather than lie.
            utilization = float(torch.cuda.utilization(self._device)) / 100.0
        except Exception:
            return
        util = GaugeMetricFamily("model_gpu_utilization_ratio", "GPU busy ratio over the last sample", labels=names)
        util.add_metric(values, utilization)
        yield util


class VersionSeries:
    """Metrics of one model version in one registry: every series gets its model and version labels."""

    LABELS = ("model", "version")

    def __init__(self, registry: CollectorRegistry, model: str, version: str) -> None:
        self.registry = registry
        self.values = (model, version)

    def gauge(self, name: str, documentation: str) -> Gauge:
        return Gauge(name, documentation, self.LABELS, registry=self.registry).labels(*self.values)

    def counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, self.LABELS, registry=self.registry).labels(*self.values)

    def histogram(self, name: str, documentation: str, buckets: Sequence[float]) -> Histogram:
        family = Histogram(name, documentation, self.LABELS, buckets=buckets, registry=self.registry)
        return family.labels(*self.values)

    def counters_by(self, name: str, documentation: str, *labels: str) -> Callable[..., Counter]:
        """A counter per value of ``labels`` (an outcome, an endpoint): call it with those values."""
        family = Counter(name, documentation, [*self.LABELS, *labels], registry=self.registry)
        return lambda *values: family.labels(*self.values, *values)

    def histograms_by(
        self, name: str, documentation: str, buckets: Sequence[float], *labels: str
    ) -> Callable[..., Histogram]:
        family = Histogram(name, documentation, [*self.LABELS, *labels], buckets=buckets, registry=self.registry)
        return lambda *values: family.labels(*self.values, *values)


class ServiceMetrics:
    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        self.series = series = VersionSeries(self.registry, model, version)
        self._labels = {"model": model, "version": version}
        self._requests = series.counters_by(
            "model_requests",
            "Requests by endpoint and outcome (ok, invalid, too_large, not_found, "
            "deadline_exceeded, overloaded, not_ready, fault, error)",
            "endpoint",
            "outcome",
        )
        self._latency = series.histograms_by(
            "model_request_duration_seconds", "Server-side time of a prediction request", _LATENCY_BUCKETS, "endpoint"
        )
        self.queue_wait = series.histogram(
            "model_queue_wait_seconds", "Time from queueing to the start of its batch", _LATENCY_BUCKETS
        )
        self.inference = series.histogram(
            "model_inference_seconds", "Time of one batch on the model (tokenize + forward + softmax)", _LATENCY_BUCKETS
        )
        self.batch_size = series.histogram("model_batch_size", "Items per dispatched batch", _BATCH_BUCKETS)
        self.expired = series.counter(
            "model_deadline_expired", "Queued requests dropped uncomputed because their deadline passed"
        )
        self.pending = series.gauge("model_pending_requests", "Items queued or in the running batch")
        self.in_progress = series.gauge(
            "model_requests_in_progress", "Prediction requests received and not yet answered"
        )
        self.load_seconds = series.gauge("model_load_seconds", "Time to verify and load the weights")
        self.warmup_seconds = series.gauge("model_warmup_seconds", "Time of the warm-up batches")
        self.ready = series.gauge("model_ready", "1 when the service accepts predictions")
        ProcessCollector(registry=self.registry)

    def watch_device(self, device: torch.device) -> None:
        if device.type == "cuda":
            self.registry.register(_GpuCollector(self._labels, device))

    def watch_pending(self, read: Callable[[], int]) -> None:
        self.pending.set_function(lambda: float(read()))

    def request(self, endpoint: str, outcome: str, seconds: float | None = None) -> None:
        self._requests(endpoint, outcome).inc()
        if seconds is not None:
            self._latency(endpoint).observe(seconds)

    # BatchObserver
    def on_batch(self, size: int, queue_waits: Sequence[float], seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)
        for wait in queue_waits:
            self.queue_wait.observe(wait)

    def on_expired(self, count: int) -> None:
        self.expired.inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
