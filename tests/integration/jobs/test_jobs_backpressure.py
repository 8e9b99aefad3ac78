"""Backpressure (429 + Retry-After above the configured depth) and cancelling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs.helpers import RedisServer, Services, wait_job

pytestmark = pytest.mark.integration


def test_full_queue_answers_429_and_queued_jobs_can_be_cancelled(
    redis_server: RedisServer, services: Services, v3_dir: Path
) -> None:
    service = services.spawn(
        v3_dir, redis_server.url,
        "--fault-latency-ms", "5000", "--jobs-concurrency", "1", "--jobs-max-depth", "3",
    )  # fmt: skip
    client = service.client
    ids = [client.post("/v1/jobs", json={"text": f"job {i}"}).json()["job_id"] for i in range(3)]
    wait_job(client, ids[0], ("running",))

    full = client.post("/v1/jobs", json={"text": "one too many"})
    assert full.status_code == 429 and full.json()["code"] == "queue_full"
    assert 1 <= int(full.headers["retry-after"]) <= 60

    cancelled = client.delete(f"/v1/jobs/{ids[2]}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{ids[2]}").status_code == 409
    running = client.delete(f"/v1/jobs/{ids[0]}")
    assert running.status_code == 409 and running.json()["code"] == "job_not_queued"
    # Cancelling freed a slot.
    assert client.post("/v1/jobs", json={"text": "fits now"}).status_code == 202
    assert client.get(f"/v1/jobs/{ids[2]}").json()["status"] == "cancelled"


def test_without_redis_jobs_answer_503(services: Services, v3_dir: Path) -> None:
    service = services.spawn(v3_dir, None)
    response = service.client.post("/v1/jobs", json={"text": "hello"})
    assert response.status_code == 503 and response.json()["code"] == "jobs_disabled"
    assert "--redis-url" in response.json()["error"]
    assert service.client.post("/v1/predict", json={"text": "hello"}).status_code == 200
