"""Webhooks are owed in Redis, not in a replica's memory; callback URLs may only
reach what the allow-list lets them; dead letters are kept within bounds."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

OUTBOX = "switchyard:webhooks:sentiment"
DEAD = "switchyard:jobs:sentiment:sentiment-v3:dead"
# Retries come quickly and keep coming, so a webhook is still owed whenever
# the test gets round to starting its receiver.
RETRY_FAST = (
    "--jobs-webhook-attempts", "1000", "--jobs-webhook-backoff-s", "0.1", "--jobs-webhook-max-backoff-s", "1",
)  # fmt: skip


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections until the block ends, and that
    no other process can take meanwhile (bound, never listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def metric(service: Service, name: str, outcome: str) -> float:
    for line in httpx.get(service.url + "/metrics").text.splitlines():
        if line.startswith(name + "{") and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def outbox_empty(redis_server: RedisServer) -> bool:
    with redis_server.client() as r:
        return r.zcard(OUTBOX) == 0 and not r.keys("switchyard:webhook:*")


def test_webhooks_of_a_killed_replica_are_delivered_once_by_another(
    redis_server: RedisServer, services: Services, v3_dir: Path
) -> None:
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}/hook"
        first = services.spawn(v3_dir, redis_server.url, *ALLOW_LOOPBACK, *RETRY_FAST)
        ids = []
        for i in range(8):
            response = first.client.post("/v1/jobs", json={"text": f"review {i} is great", "callback_url": url})
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
        for job_id in ids:
            assert wait_job(first.client, job_id)["status"] == "completed"

        def all_tried_and_failed() -> bool:
            with redis_server.client() as r:
                return all(int(r.hget(f"switchyard:webhook:{j}", "attempts") or 0) >= 1 for j in ids)

        # The replica that completed every job has tried every webhook: owed, not sent.
        poll(all_tried_and_failed, 30, "every webhook to have failed once")
        second = services.spawn(v3_dir, redis_server.url, *ALLOW_LOOPBACK, *RETRY_FAST)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    receiver = WebhookReceiver(port=port)
    try:
        poll(lambda: outbox_empty(redis_server), 120, "the outbox to drain")
        delivered = Counter(headers["webhook-id"] for headers, _ in receiver.received)
        assert delivered == dict.fromkeys(ids, 1)  # every job's webhook, once
        for headers, body in receiver.received:
            assert verify(WEBHOOK_SECRET, headers, body)
            event = json.loads(body)
            assert event["type"] == "job.completed"
            assert event["data"]["job_id"] == headers["webhook-id"] and event["data"]["status"] == "completed"
            assert event["data"]["result"]["model_version"] == "sentiment-v3"
        assert metric(second, "model_job_webhooks_total", "delivered") == len(ids)
    finally:
        receiver.close()


def test_callback_urls_are_checked_against_the_allow_list(
    redis_server: RedisServer, services: Services, v3_dir: Path
) -> None:
    receiver = WebhookReceiver()
    try:
        with refusing_port() as down:
            allowing = services.spawn(v3_dir, redis_server.url, *ALLOW_LOOPBACK, *RETRY_FAST)
            accepted = allowing.client.post("/v1/jobs", json={"text": "lovely", "callback_url": receiver.url})
            assert accepted.status_code == 202, accepted.text
            poll(lambda: receiver.received, 30, "the allowed webhook")
            assert receiver.received[0][0]["webhook-id"] == accepted.json()["job_id"]
            # A second webhook stays owed (its receiver is down) when this replica stops.
            owed = allowing.client.post(
                "/v1/jobs", json={"text": "lovely", "callback_url": f"http://127.0.0.1:{down}/hook"}
            ).json()["job_id"]
            assert wait_job(allowing.client, owed)["status"] == "completed"
            allowing.stop()

        strict = services.spawn(v3_dir, redis_server.url)  # no allow-list: public addresses only
        refused = {
            receiver.url: "127.0.0.1 is a loopback address",
            "http://localhost:8080/hook": "localhost resolves to",
            "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is a link-local address",
            "http://10.1.2.3/hook": "10.1.2.3 is a private address",
            "http://[::1]:8080/hook": "::1 is a loopback address",
            "http://[::ffff:127.0.0.1]/hook": "a loopback address (it reaches 127.0.0.1)",
            "http://0.0.0.0/hook": "unspecified",
            "ftp://example.com/hook": "must be an absolute http(s) URL",
        }
        for url, why in refused.items():
            response = strict.client.post("/v1/jobs", json={"text": "lovely", "callback_url": url})
            assert response.status_code == 422, (url, response.text)
            body = response.json()
            assert body["code"] == "invalid_callback_url" and "callback_url" in body["error"], body
            assert why in body["error"], body

        # The owed webhook reaches the strict replica, which checks again before
        # it connects: refused, dropped, counted, logged.
        poll(lambda: outbox_empty(redis_server), 60, "the owed webhook to be dropped")
        assert metric(strict, "model_job_webhooks_total", "refused") == 1
        assert f"webhook {owed} to http://127.0.0.1:{down}/hook dropped (refused)" in strict.output()
        assert len(receiver.received) == 1
    finally:
        receiver.close()


def test_dead_letter_stream_keeps_the_newest_within_its_bounds(
    redis_server: RedisServer, services: Services, v3_dir: Path
) -> None:
    max_age_s = 8
    service = services.spawn(
        v3_dir, redis_server.url,
        "--fault-match", "POISON", "--jobs-max-attempts", "1", "--jobs-concurrency", "1",
        "--jobs-dead-letter-max-len", "3", "--jobs-dead-letter-max-age-s", str(max_age_s),
    )  # fmt: skip
    ids = []
    for i in range(6):  # one at a time, so they fail in this order
        ids.append(service.client.post("/v1/jobs", json={"text": f"POISON {i}"}).json()["job_id"])
        assert wait_job(service.client, ids[-1])["status"] == "failed"
    with redis_server.client() as r:
        assert [fields["job"] for _, fields in r.xrange(DEAD)] == ids[-3:]
    listed = service.client.get("/admin/jobs/dead-letters").json()["dead_letters"]
    assert [d["job_id"] for d in listed] == ids[-3:]

    # Past the max age, the next dead letter pushes the old ones out.
    last_failed = time.time()
    poll(lambda: time.time() > last_failed + max_age_s, max_age_s + 5, "the dead letters to age")
    late = service.client.post("/v1/jobs", json={"text": "POISON late"}).json()["job_id"]
    assert wait_job(service.client, late)["status"] == "failed"
    with redis_server.client() as r:
        assert [fields["job"] for _, fields in r.xrange(DEAD)] == [late]
    # Trimmed, not lost: the record still answers its poll.
    assert service.client.get(f"/v1/jobs/{ids[0]}").json()["status"] == "failed"
