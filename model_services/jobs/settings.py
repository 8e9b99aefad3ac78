"""Settings of the job queue (the ``serve --jobs-*`` flags)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class JobSettings:
    # Finished (completed, failed, cancelled) records and their idempotency keys
    # live this long.
    result_ttl_s: float = 24 * 3600.0
    # A job not finished this long after it was (re)queued fails with `job_timeout`.
    timeout_s: float = 15 * 60.0
    # Unfinished jobs in one version's stream beyond which submissions get 429.
    max_depth: int = 10_000
    # Failed attempts (errors, or workers lost mid-job) before the dead-letter stream.
    max_attempts: int = 3
    # A job held this long by a worker that stopped heart-beating is reclaimed.
    visibility_timeout_s: float = 30.0
    # Jobs one replica has in flight at once; also the largest job-only batch,
    # which bounds how long a live request can wait behind jobs.
    concurrency: int = 4
    # While live traffic flows, jobs one replica starts per second at most: job
    # bookkeeping shares the event loop and cores with live requests, so this
    # caps the share it takes (see runner.LivePacer).
    live_jobs_per_s: float = 100.0
    # The dead-letter stream keeps at most this many entries, none older than
    # the max age: poison inputs must not grow Redis without bound.
    dead_letter_max_len: int = 10_000
    dead_letter_max_age_s: float = 7 * 24 * 3600.0
    # Standard Webhooks signing secret (``whsec_<base64>`` or raw text); None: unsigned.
    webhook_secret: str | None = None
    # Delivery attempts per webhook; the delay before a retry doubles from
    # webhook_backoff_s up to webhook_max_backoff_s.
    webhook_attempts: int = 5
    webhook_backoff_s: float = 0.5
    webhook_max_backoff_s: float = 300.0
    # A webhook not delivered this long after its event is dropped (`expired`):
    # a receiver should not get a job's news days late.
    webhook_max_age_s: float = 24 * 3600.0
    # Callback URLs may only reach public addresses (an SSRF guard, see
    # callbacks.py) unless their address is in one of these networks or their
    # host is one of these names.
    webhook_allow_cidrs: tuple[str, ...] = ()
    webhook_allow_hosts: tuple[str, ...] = ()
    key_prefix: str = "switchyard"

    def __post_init__(self) -> None:
        checks = {
            "jobs result_ttl_s > 0": self.result_ttl_s > 0,
            "jobs timeout_s > 0": self.timeout_s > 0,
            "jobs max_depth >= 1": self.max_depth >= 1,
            "jobs max_attempts >= 1": self.max_attempts >= 1,
            "jobs visibility_timeout_s > 0": self.visibility_timeout_s > 0,
            "jobs concurrency >= 1": self.concurrency >= 1,
            "jobs live_jobs_per_s > 0": self.live_jobs_per_s > 0,
            "jobs dead_letter_max_len >= 1": self.dead_letter_max_len >= 1,
            "jobs dead_letter_max_age_s > 0": self.dead_letter_max_age_s > 0,
            "jobs webhook_attempts >= 1": self.webhook_attempts >= 1,
            "jobs webhook_backoff_s >= 0": self.webhook_backoff_s >= 0,
            "jobs webhook_max_backoff_s >= webhook_backoff_s": self.webhook_max_backoff_s >= self.webhook_backoff_s,
            "jobs webhook_max_age_s > 0": self.webhook_max_age_s > 0,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        for cidr in self.webhook_allow_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                failed.append(f"jobs webhook allow CIDR {cidr!r} is not an IP network")
        if failed:
            raise ValueError("invalid settings: " + ", ".join(failed))
