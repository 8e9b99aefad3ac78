"""Redis key names, in one place so the service, the CLI and tests agree.

Streams are per version (``<p>:jobs:<model>:<version>``) because the routing
policy assigns a version when a job is accepted and only that version's
replicas may serve it. Job records and idempotency keys are per model: a poll
or a retried submission may land on any version's replica. So is the webhook
outbox: any replica of the model may deliver, so a version that is scaled to
zero after a rollback still gets its webhooks out.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"


@dataclass(frozen=True)
class Keys:
    prefix: str
    model: str
    version: str

    @property
    def stream(self) -> str:
        return f"{self.prefix}:jobs:{self.model}:{self.version}"

    @property
    def dead(self) -> str:
        return f"{self.stream}:dead"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:jobstats:{self.model}:{self.version}"

    def job(self, job_id: str) -> str:
        return job_key(self.prefix, job_id)

    @property
    def outbox(self) -> str:
        """Sorted set: job ids with a webhook to deliver, scored by the next attempt's time."""
        return f"{self.prefix}:webhooks:{self.model}"

    def hook(self, job_id: str) -> str:
        """Hash: one pending webhook (URL, event, the job as it was, attempts, lease)."""
        return f"{self.prefix}:webhook:{job_id}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{self.model}:{key}"

    def other(self, version: str) -> Keys:
        return Keys(self.prefix, self.model, version)


def job_key(prefix: str, job_id: str) -> str:
    return f"{prefix}:job:{job_id}"


def index_key(prefix: str) -> str:
    """A set of ``model/version`` members that ever had a job: what the CLI lists."""
    return f"{prefix}:jobs:index"
