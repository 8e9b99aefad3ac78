"""Job metrics, registered in the service's own registry (same model/version labels).

Depth, oldest age and dead letters are read from Redis at scrape time
(``refresh``): they describe the version's shared queue, so every replica
reports the same value and a dashboard takes ``max`` over replicas.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class JobMetrics:
    def __init__(self, registry: CollectorRegistry, model: str, version: str) -> None:
        names = ["model", "version"]
        self._labels = (model, version)
        self.depth = Gauge(
            "model_jobs_queue_depth", "Unfinished jobs (queued + running) of this version", names, registry=registry
        ).labels(model, version)
        self.oldest_age = Gauge(
            "model_jobs_oldest_age_seconds", "Age of the oldest unfinished job", names, registry=registry
        ).labels(model, version)
        self.dead_letters = Gauge(
            "model_jobs_dead_letters", "Jobs in this version's dead-letter stream", names, registry=registry
        ).labels(model, version)
        self.processing = Histogram(
            "model_job_processing_seconds",
            "From a worker starting a job to its result being stored",
            names,
            buckets=_BUCKETS,
            registry=registry,
        ).labels(model, version)
        self._submitted = Counter(
            "model_jobs_submitted",
            "Submissions by outcome (accepted, duplicate, rejected)",
            [*names, "outcome"],
            registry=registry,
        )
        self._processed = Counter(
            "model_jobs_processed",
            "Job attempts finished by this replica, by outcome (completed, retry, dead_lettered, duplicate, skipped)",
            [*names, "outcome"],
            registry=registry,
        )
        self._webhooks = Counter(
            "model_job_webhooks",
            "Webhooks this replica finished with, by outcome (delivered, failed, expired, refused)",
            [*names, "outcome"],
            registry=registry,
        )

    def submitted(self, outcome: str) -> None:
        self._submitted.labels(*self._labels, outcome).inc()

    def processed(self, outcome: str) -> None:
        self._processed.labels(*self._labels, outcome).inc()

    def webhook(self, outcome: str) -> None:
        self._webhooks.labels(*self._labels, outcome).inc()
