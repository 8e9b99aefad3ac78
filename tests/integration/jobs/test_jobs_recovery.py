"""At-least-once delivery with exactly-once results: a worker killed mid-job,
and a Redis restart, lose no accepted job and store no result twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.jobs.helpers import RedisServer, Services, poll, wait_job

pytestmark = pytest.mark.integration

STATS = "switchyard:jobstats:sentiment:sentiment-v3"
STREAM = "switchyard:jobs:sentiment:sentiment-v3"


def test_job_of_a_killed_worker_is_reclaimed_and_completed_once(
    redis_server: RedisServer, services: Services, v3_dir: Path
) -> None:
    slow = services.spawn(v3_dir, redis_server.url, "--fault-latency-ms", "30000", "--jobs-visibility-timeout-s", "1")
    job_id = slow.client.post("/v1/jobs", json={"text": "kill me maybe"}).json()["job_id"]
    running = wait_job(slow.client, job_id, ("running",))
    assert running["attempts"] == 1
    slow.proc.send_signal(signal.SIGKILL)
    slow.proc.wait(10)

    rescuer = services.spawn(v3_dir, redis_server.url, "--jobs-visibility-timeout-s", "1")
    job = wait_job(rescuer.client, job_id)
    assert job["status"] == "completed" and job["attempts"] == 2, job
    with redis_server.client() as r:
        stats = r.hgetall(STATS)
        assert stats["completed"] == "1" and stats["reclaimed"] == "1", stats
        assert r.xlen(STREAM) == 0
        assert r.xpending(STREAM, "workers")["pending"] == 0


def test_redis_restart_loses_no_accepted_job(redis_server: RedisServer, services: Services, v3_dir: Path) -> None:
    service = services.spawn(v3_dir, redis_server.url, "--fault-latency-ms", "300", "--jobs-concurrency", "2")
    ids = []
    for i in range(12):
        response = service.client.post("/v1/jobs", json={"text": f"review number {i} is great"})
        assert response.status_code == 202, response.text  # accepted = acknowledged by Redis
        ids.append(response.json()["job_id"])

    def some_completed() -> bool:
        with redis_server.client() as r:
            return int(r.hget(STATS, "completed") or 0) >= 1

    poll(some_completed, 30, "a first job to complete")
    redis_server.kill()  # no shutdown save: only the append-only file survives
    unavailable = service.client.get(f"/v1/jobs/{ids[0]}")
    assert unavailable.status_code == 503 and unavailable.json()["code"] == "jobs_unavailable"
    redis_server.start()

    for job_id in ids:
        assert wait_job(service.client, job_id, timeout=60)["status"] == "completed"
    with redis_server.client() as r:
        assert r.hget(STATS, "completed") == "12"  # each result stored exactly once
        assert r.xlen(STREAM) == 0
