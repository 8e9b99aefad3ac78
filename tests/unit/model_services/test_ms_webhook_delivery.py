"""The webhook delivery loop against an in-memory outbox and a real loopback
receiver: retries with backoff, giving up, expiry, refusal at delivery, a
Redis outage, and what every attempt sends."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from model_services.jobs.callbacks import CallbackPolicy
from model_services.jobs.delivery import WebhookDelivery, retry_delay
from model_services.jobs.outbox import Delivery
from model_services.jobs.settings import JobSettings
from model_services.jobs.webhooks import verify

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cw=="
RECORD = {"id": "job-1", "status": "completed", "model": "fake", "version": "fake-v1", "attempts": "1",
          "created_at": "100", "finished_at": "101", "result": '{"label": "positive"}'}  # fmt: skip


@dataclass
class FakeOutbox:
    """The Redis outbox's contract in memory: due entries are leased to the
    claimer (score moved to the lease's end), finish() removes or reschedules."""

    entries: dict[str, tuple[float, Delivery]] = field(default_factory=dict)
    reports: list[tuple[str, int, float, float | None]] = field(default_factory=list)  # id, attempt, at, next_at
    outages: int = 0  # claim_due fails this many times first (Redis away)

    def add(self, url: str, *, job_id: str = "job-1", expires_in: float = 3600.0) -> None:
        now = time.time()
        delivery = Delivery(job_id, url, "job.completed", json.dumps(RECORD), now, now + expires_in, 0, "")
        self.entries[job_id] = (now, delivery)

    async def claim_due(self, now: float, lease_until: float, count: int) -> list[Delivery]:
        if self.outages > 0:
            self.outages -= 1
            raise RedisConnectionError("Connection refused")
        claimed = []
        for job_id, (score, d) in list(self.entries.items())[:count]:
            if score <= now:
                d = replace(d, attempt=d.attempt + 1, token=uuid.uuid4().hex)
                self.entries[job_id] = (lease_until, d)
                claimed.append(d)
        return claimed

    async def finish(self, d: Delivery, next_at: float | None) -> bool:
        self.reports.append((d.job_id, d.attempt, time.time(), next_at))
        if next_at is None:
            del self.entries[d.job_id]
        else:
            self.entries[d.job_id] = (next_at, d)
        return True


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answered in turn; the last one from then on
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[list[int]], Receiver]]:
    servers: list[asyncio.Server] = []

    async def make(statuses: list[int]) -> Receiver:
        made = Receiver("", statuses)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            made.requests.append((headers, body))
            status = made.statuses[min(len(made.requests), len(made.statuses)) - 1]
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        made.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
        return made

    yield make  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def run_delivery() -> AsyncIterator[Callable[..., WebhookDelivery]]:
    running: list[WebhookDelivery] = []

    def start(outbox: FakeOutbox, outcomes: list[str], *, allow: bool = True, **settings: object) -> WebhookDelivery:
        policy = CallbackPolicy.of(["127.0.0.0/8"] if allow else [])
        config = JobSettings(webhook_secret=SECRET, webhook_backoff_s=0.01, webhook_max_backoff_s=0.05, **settings)  # type: ignore[arg-type]
        delivery = WebhookDelivery(outbox, policy, config, outcomes.append)  # type: ignore[arg-type]
        delivery.start()
        running.append(delivery)
        return delivery

    yield start
    for delivery in running:
        await delivery.stop()


async def until(check: Callable[[], bool]) -> None:
    """Poll (bounded: 10 s) instead of sleeping a guessed time."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


async def test_failed_attempts_are_retried_later_until_delivered(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery]
) -> None:
    hook: Receiver = await receiver([500, 503, 204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url)
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["delivered"])
    assert [(attempt, next_at is None) for _, attempt, _, next_at in outbox.reports] == [
        (1, False), (2, False), (3, True),
    ]  # fmt: skip
    assert all(next_at > at for _, _, at, next_at in outbox.reports if next_at is not None)  # later, not now
    assert not outbox.entries and len(hook.requests) == 3
    # Every attempt: the same id and body, a fresh timestamp, a valid signature.
    assert {h["webhook-id"] for h, _ in hook.requests} == {"job-1"}
    assert len({body for _, body in hook.requests}) == 1
    assert all(verify(SECRET, h, body) for h, body in hook.requests)
    event = json.loads(hook.requests[0][1])
    assert event == {
        "type": "job.completed",
        "timestamp": event["timestamp"],
        "data": {
            "job_id": "job-1", "status": "completed", "model": "fake", "model_version": "fake-v1", "attempts": 1,
            "created_at": "1970-01-01T00:01:40Z", "started_at": None, "finished_at": "1970-01-01T00:01:41Z",
            "result": {"label": "positive"}, "error": None,
        },
    }  # fmt: skip


def test_retry_delay_doubles_up_to_its_cap() -> None:
    settings = JobSettings(webhook_backoff_s=0.5, webhook_max_backoff_s=3.0)
    assert [retry_delay(settings, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry_delay(settings, 10_000) == 3.0


async def test_gives_up_after_the_configured_attempts(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery], caplog: pytest.LogCaptureFixture
) -> None:
    hook: Receiver = await receiver([500])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url)
    run_delivery(outbox, outcomes, webhook_attempts=3)
    await until(lambda: outcomes == ["failed"])
    assert len(hook.requests) == 3 and not outbox.entries
    assert "dropped (failed): attempt 3 of 3 failed (HTTP 500)" in caplog.text


async def test_a_refused_connection_is_a_failed_attempt(run_delivery: Callable[..., WebhookDelivery]) -> None:
    outbox, outcomes = FakeOutbox(), []
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        outbox.add(f"http://127.0.0.1:{bound.getsockname()[1]}/hook")
        run_delivery(outbox, outcomes, webhook_attempts=2)
        await until(lambda: outcomes == ["failed"])
    assert [attempt for _, attempt, _, _ in outbox.reports] == [1, 2]


async def test_an_expired_webhook_is_dropped_unsent(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery]
) -> None:
    hook: Receiver = await receiver([204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url, expires_in=-1.0)
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["expired"])
    assert hook.requests == [] and not outbox.entries


async def test_a_retry_past_the_max_age_expires_instead(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery]
) -> None:
    hook: Receiver = await receiver([500])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url, expires_in=0.005)  # shorter than the first retry delay (10 ms)
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["expired"])
    assert len(hook.requests) <= 1


async def test_delivery_refuses_what_the_policy_refuses(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery], caplog: pytest.LogCaptureFixture
) -> None:
    hook: Receiver = await receiver([204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url)
    with caplog.at_level(logging.WARNING, "model_services.jobs"):
        run_delivery(outbox, outcomes, allow=False)
        await until(lambda: outcomes == ["refused"])
    assert hook.requests == [] and not outbox.entries
    assert "dropped (refused): callback_url is refused: 127.0.0.1 is a loopback address" in caplog.text


async def test_the_loop_rides_out_a_redis_outage(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery], caplog: pytest.LogCaptureFixture
) -> None:
    hook: Receiver = await receiver([204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(outages=3), []
    outbox.add(hook.url)
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["delivered"])
    assert caplog.text.count("webhook outbox unavailable") == 3


async def test_an_unreadable_entry_is_dropped(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery]
) -> None:
    hook: Receiver = await receiver([204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url)
    score, d = outbox.entries["job-1"]
    outbox.entries["job-1"] = (score, replace(d, record_json="{not json"))
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["failed"])
    assert hook.requests == []


async def test_a_receiver_that_never_answers_costs_one_bounded_attempt(
    run_delivery: Callable[..., WebhookDelivery], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # never answers

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    monkeypatch.setattr("model_services.jobs.delivery._POST_TIMEOUT_S", 0.05)
    try:
        outbox, outcomes = FakeOutbox(), []
        outbox.add(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook")
        run_delivery(outbox, outcomes, webhook_attempts=2)
        await until(lambda: outcomes == ["failed"])
        assert "failed (attempt 1 of 2): TimeoutError" in caplog.text
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_credentials_in_the_url_are_sent_as_basic_auth(
    receiver: Callable[..., object], run_delivery: Callable[..., WebhookDelivery]
) -> None:
    hook: Receiver = await receiver([204])  # type: ignore[misc]
    outbox, outcomes = FakeOutbox(), []
    outbox.add(hook.url.replace("http://", "http://hooks:s%40cret@"))
    run_delivery(outbox, outcomes)
    await until(lambda: outcomes == ["delivered"])
    ((headers, _),) = hook.requests
    assert headers["authorization"] == "Basic aG9va3M6c0BjcmV0"  # hooks:s@cret
    assert headers["host"] == hook.url.split("/")[2]
