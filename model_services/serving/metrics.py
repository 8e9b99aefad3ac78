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


class ServiceMetrics:
    def __init__(self, model: str, version: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        names = ["model", "version"]
        self._labels = {"model": model, "version": version}
        self._requests = Counter(
            "model_requests",
            "Requests by endpoint and outcome (ok, invalid, too_large, not_found, "
            "deadline_exceeded, overloaded, not_ready, fault, error)",
            [*names, "endpoint", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "model_request_duration_seconds",
            "Server-side time of a prediction request",
            [*names, "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "model_queue_wait_seconds",
            "Time from queueing to the start of its batch",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.inference = Histogram(
            "model_inference_seconds",
            "Time of one batch on the model (tokenize + forward + softmax)",
            names,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.batch_size = Histogram(
            "model_batch_size",
            "Items per dispatched batch",
            names,
            buckets=_BATCH_BUCKETS,
            registry=r,
        ).labels(model, version)
        self.expired = Counter(
            "model_deadline_expired",
            "Queued requests dropped uncomputed because their deadline passed",
            names,
            registry=r,
        ).labels(model, version)
        self.pending = Gauge(
            "model_pending_requests", "Items queued or in the running batch", names, registry=r
        ).labels(model, version)
        self.in_progress = Gauge(
            "model_requests_in_progress",
            "Prediction requests received and not yet answered",
            names,
            registry=r,
        ).labels(model, version)
        self.load_seconds = Gauge(
            "model_load_seconds", "Time to verify and load the weights", names, registry=r
        ).labels(model, version)
        self.warmup_seconds = Gauge("model_warmup_seconds", "Time of the warm-up batches", names, registry=r).labels(
            model, version
        )
        self.ready = Gauge("model_ready", "1 when the service accepts predictions", names, registry=r).labels(
            model, version
        )
        ProcessCollector(registry=r)

    def watch_device(self, device: torch.device) -> None:
        if device.type == "cuda":
            self.registry.register(_GpuCollector(self._labels, device))

    def watch_pending(self, read: Callable[[], int]) -> None:
        self.pending.set_function(lambda: float(read()))

    def request(self, endpoint: str, outcome: str, seconds: float | None = None) -> None:
        model, version = self._labels["model"], self._labels["version"]
        self._requests.labels(model, version, endpoint, outcome).inc()
        if seconds is not None:
            self._latency.labels(model, version, endpoint).observe(seconds)

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
