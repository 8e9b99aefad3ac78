"""Job metrics, registered in the service's own registry (same model/version labels).

Depth, oldest age and dead letters are read from Redis at scrape time
(``refresh``): they describe the version's shared queue, so every replica
reports the same value and a dashboard takes ``max`` over replicas.
"""

from __future__ import annotations

from model_services.serving.metrics import VersionSeries

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class JobMetrics:
    def __init__(self, series: VersionSeries) -> None:
        self.depth = series.gauge("model_jobs_queue_depth", "Unfinished jobs (queued + running) of this version")
        self.oldest_age = series.gauge("model_jobs_oldest_age_seconds", "Age of the oldest unfinished job")
        self.dead_letters = series.gauge("model_jobs_dead_letters", "Jobs in this version's dead-letter stream")
        self.processing = series.histogram(
            "model_job_processing_seconds", "From a worker starting a job to its result being stored", _BUCKETS
        )
        self._submitted = series.counters_by(
            "model_jobs_submitted", "Submissions by outcome (accepted, duplicate, rejected)", "outcome"
        )
        self._processed = series.counters_by(
            "model_jobs_processed",
            "Job attempts finished by this replica, by outcome (completed, retry, dead_lettered, duplicate, skipped)",
            "outcome",
        )
        self._webhooks = series.counters_by(
            "model_job_webhooks",
            "Webhooks this replica finished with, by outcome (delivered, failed, expired, refused)",
            "outcome",
        )

    def submitted(self, outcome: str) -> None:
        self._submitted(outcome).inc()

    def processed(self, outcome: str) -> None:
        self._processed(outcome).inc()

    def webhook(self, outcome: str) -> None:
        self._webhooks(outcome).inc()
