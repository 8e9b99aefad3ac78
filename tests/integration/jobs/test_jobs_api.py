"""Submit, poll, webhooks, idempotency, dead letters: one real service on a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.cli.main import main as switchyard
from model_services.jobs.webhooks import verify
from tests.integration.jobs.helpers import (
    ALLOW_LOOPBACK,
    WEBHOOK_SECRET,
    RedisServer,
    Service,
    Services,
    WebhookReceiver,
    poll,
    wait_job,
)
from tests.support.dockerfiles import run_in_control_plane_image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_store: Path) -> Iterator[tuple[RedisServer, Service]]:
    workdir = tmp_path_factory.mktemp("jobs-api")
    server = RedisServer(workdir / "redis")
    services = Services(workdir)
    try:
        service = services.spawn(
            model_store / "sentiment" / "sentiment-v3",
            server.url,
            "--fault-match", "POISON",
            "--jobs-max-attempts", "2",
            "--jobs-visibility-timeout-s", "2",
            *ALLOW_LOOPBACK,
        )  # fmt: skip
        yield server, service
    finally:
        services.close()
        server.stop()


def test_submit_then_poll_until_completed(stack: tuple[RedisServer, Service]) -> None:
    _, service = stack
    submitted = service.client.post("/v1/jobs", json={"text": "This product is terrible"})
    assert submitted.status_code == 202, submitted.text
    body = submitted.json()
    assert body["status"] in ("queued", "running", "completed") and len(body["job_id"]) == 32
    assert submitted.headers["location"] == f"/v1/jobs/{body['job_id']}"

    job = wait_job(service.client, body["job_id"])
    assert job["status"] == "completed", job
    predicted = service.client.post("/v1/predict", json={"text": "This product is terrible"}).json()
    result = job["result"]
    assert isinstance(result, dict)
    assert set(result) == set(predicted)  # the same shape as /v1/predict's answer
    assert result["label"] == predicted["label"]
    assert result["confidence"] == pytest.approx(predicted["confidence"], abs=1e-5)
    assert job["model_version"] == result["model_version"] == "sentiment-v3"
    assert job["attempts"] == 1 and job["error"] is None
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]  # type: ignore[operator]
    # JSON without a Content-Type (as tritonclient and plain scripts send it) is a job too.
    untyped = service.client.post("/v1/jobs", content=json.dumps({"text": "fine"}).encode())
    assert untyped.status_code == 202, untyped.text


def test_unknown_job_and_bad_requests(stack: tuple[RedisServer, Service]) -> None:
    _, service = stack
    missing = service.client.get("/v1/jobs/does-not-exist")
    assert missing.status_code == 404 and missing.json()["code"] == "job_not_found"
    assert service.client.post("/v1/jobs", json={"text": " "}).json()["code"] == "empty_text"
    wrong = service.client.post("/v1/jobs", json={"text": "x", "model_version": "sentiment-v9"})
    assert wrong.status_code == 404 and wrong.json()["code"] == "version_not_served"
    bad_hook = service.client.post("/v1/jobs", json={"text": "x", "callback_url": "ftp://x"})
    assert bad_hook.status_code == 422 and bad_hook.json()["code"] == "invalid_callback_url"


def test_webhook_is_delivered_signed_and_retried(stack: tuple[RedisServer, Service]) -> None:
    _, service = stack
    receiver = WebhookReceiver(fail_first=1)  # the first delivery gets a 500: retried
    try:
        job_id = service.client.post("/v1/jobs", json={"text": "I love it", "callback_url": receiver.url}).json()[
            "job_id"
        ]
        poll(lambda: receiver.received, 20, "the webhook")
        ((headers, body),) = receiver.received
        assert receiver.attempts == 2
        assert headers["webhook-id"] == job_id
        assert headers["webhook-signature"].startswith("v1,")
        assert verify(WEBHOOK_SECRET, headers, body)
        assert not verify("whsec_d3Jvbmc=", headers, body)
        event = json.loads(body)
        assert event["type"] == "job.completed"
        assert event["data"]["job_id"] == job_id and event["data"]["result"]["label"] == "positive"
    finally:
        receiver.close()


def test_idempotency_key_returns_the_same_job(stack: tuple[RedisServer, Service]) -> None:
    _, service = stack
    headers = {"Idempotency-Key": "order-42"}
    first = service.client.post("/v1/jobs", json={"text": "fine"}, headers=headers)
    second = service.client.post("/v1/jobs", json={"text": "fine"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"]
    assert second.headers["idempotent-replayed"] == "true"
    reused = service.client.post("/v1/jobs", json={"text": "something else"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    assert wait_job(service.client, first.json()["job_id"])["status"] == "completed"


def test_poison_job_is_dead_lettered_then_requeued(stack: tuple[RedisServer, Service]) -> None:
    server, service = stack
    job_id = service.client.post("/v1/jobs", json={"text": "POISON pill"}).json()["job_id"]
    failed = wait_job(service.client, job_id)
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert failed["error"] == {
        "code": "injected_fault",
        "error": "injected fault: input contains 'POISON' (see /admin/fault)",
    }

    dead = service.client.get("/admin/jobs/dead-letters").json()["dead_letters"]
    assert [d["job_id"] for d in dead] == [job_id]
    assert dead[0]["attempts"] == 2 and dead[0]["model_version"] == "sentiment-v3"

    # The operator fixes the cause, then re-queues.
    assert "match" not in service.client.post("/admin/fault", json={"error_rate": 0}).json()
    requeued = service.client.post(f"/admin/jobs/dead-letters/{job_id}/requeue")
    assert requeued.status_code == 202, requeued.text
    done = wait_job(service.client, job_id)
    assert done["status"] == "completed" and done["attempts"] == 1
    assert service.client.get("/admin/jobs/dead-letters").json()["dead_letters"] == []
    again = service.client.post(f"/admin/jobs/dead-letters/{job_id}/requeue")
    assert again.status_code == 404
    with server.client() as r:
        assert r.hget("switchyard:jobstats:sentiment:sentiment-v3", "dead_lettered") == "1"


def test_metrics_and_cli_show_the_queue(
    stack: tuple[RedisServer, Service], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server, service = stack
    text = httpx.get(service.url + "/metrics").text
    for name in (
        "model_jobs_queue_depth",
        "model_jobs_oldest_age_seconds",
        "model_jobs_dead_letters",
        "model_job_processing_seconds_count",
        'model_jobs_processed_total{model="sentiment",outcome="completed",version="sentiment-v3"}',
    ):
        assert name in text, name
    assert switchyard(["jobs", "--redis-url", server.url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    (row,) = [r for r in rows if r["version"] == "sentiment-v3"]
    assert row["model"] == "sentiment" and row["depth"] == 0 and row["completed"] >= 4
    assert row["dead_lettered"] == 1 and row["mean_processing_ms"] > 0
    # The same command from the control-plane image's files alone (no torch, no serving code).
    code = "import runpy; sys.argv[0] = 'switchyard'; runpy.run_module('control_plane', run_name='__main__')"
    result = run_in_control_plane_image(tmp_path, code, "jobs", "--redis-url", server.url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == rows
