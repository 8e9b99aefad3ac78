"""Job pieces without Redis: webhook signing, settings, the API without --redis-url,
and what a jobs loop that dies does to the replica."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest

from model_services.jobs.runner import LivePacer, spare_share
from model_services.jobs.settings import JobSettings
from model_services.jobs.system import JobSystem
from model_services.jobs.views import job_view
from model_services.jobs.webhooks import sign, verify


def test_signature_matches_the_standard_webhooks_recipe() -> None:
    secret = "whsec_" + base64.b64encode(b"key").decode()
    body = b'{"a":1}'
    expected = base64.b64encode(hmac.new(b"key", b"msg_1.1700000000." + body, hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", 1700000000, body) == "v1," + expected
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,bogus v1," + expected}
    assert verify(secret, headers, body)  # any of several space-separated signatures
    assert not verify(secret, headers, body + b" ")
    assert sign("raw-text", "m", 1, b"") == sign("whsec_" + base64.b64encode(b"raw-text").decode(), "m", 1, b"")


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="jobs max_depth >= 1, jobs concurrency >= 1"):
        JobSettings(max_depth=0, concurrency=0)


def test_job_view_of_a_completed_record() -> None:
    view = job_view(
        {
            "id": "abc",
            "status": "completed",
            "model": "sentiment",
            "version": "sentiment-v3",
            "attempts": "1",
            "created_at": "0",
            "started_at": "1.5",
            "finished_at": "2",
            "result": '{"label": "positive"}',
        }
    )
    assert view["created_at"] == "1970-01-01T00:00:00Z" and view["started_at"] == "1970-01-01T00:00:01.500000Z"
    assert view["result"] == {"label": "positive"} and view["error"] is None and view["attempts"] == 1


async def test_jobs_answer_503_without_redis(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        response = await h.client.post("/v1/jobs", json={"text": "good"})
        assert response.status_code == 503
        assert response.json()["code"] == "jobs_disabled"
        assert (await h.client.get("/v1/jobs/x")).json()["code"] == "jobs_disabled"
        assert (await h.client.get("/admin/jobs/dead-letters")).status_code == 503
        assert (await h.client.post("/v1/predict", json={"text": "good"})).status_code == 200


def test_live_pacer_waits_for_a_gap_between_live_requests() -> None:
    pacer = LivePacer(jobs_per_s=100.0, gap_s=0.002, poll_s=0.001)
    assert pacer.wait_s(quiet_s=0.0, now=10.0) == 0.002  # live work queued: a whole gap
    assert pacer.wait_s(quiet_s=0.0005, now=10.0) == pytest.approx(0.0015)  # the rest of the gap
    assert pacer.wait_s(quiet_s=0.003, now=10.0) == 0.0  # a gap, nothing started yet: go


def test_live_pacer_spaces_chunks_to_the_budget() -> None:
    pacer = LivePacer(jobs_per_s=100.0, gap_s=0.002)
    pacer.started(4, now=10.0)  # 4 jobs at 100/s: the next chunk 40 ms later
    assert pacer.wait_s(quiet_s=1.0, now=10.01) == pytest.approx(0.03)
    assert pacer.wait_s(quiet_s=1.0, now=10.04) == 0.0
    # The budget never overrides the gap rule.
    assert pacer.wait_s(quiet_s=0.0, now=10.05) > 0


def test_settings_reject_a_zero_live_budget() -> None:
    with pytest.raises(ValueError, match="live_jobs_per_s > 0"):
        JobSettings(live_jobs_per_s=0)


def test_live_budget_follows_the_measured_spare_cpu() -> None:
    assert spare_share(0.1, reserve=0.2) == 0.0  # busier than the reserve: nothing spare
    assert spare_share(0.6, reserve=0.2) == pytest.approx(0.5)
    assert spare_share(1.0, reserve=0.2) == 1.0
    pacer = LivePacer(jobs_per_s=100.0, min_jobs_per_s=5.0)
    pacer.measured(0.0)  # the cores are busy: only the floor, jobs still progress
    assert pacer.jobs_per_s == 5.0
    pacer.started(5, now=0.0)
    assert pacer.wait_s(quiet_s=1.0, now=0.5) == pytest.approx(0.5)  # 5 jobs at 5/s
    pacer.measured(1.0)  # an idle machine: the whole budget
    assert pacer.jobs_per_s == 100.0


# -- no background loop dies silently ---------------------------------------------------

DOWN_REDIS = "redis://127.0.0.1:1/0"  # nothing listens: every command fails to connect


async def _until(check: Callable[[], bool]) -> None:
    """Poll (bounded: 10 s) instead of sleeping a guessed time."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


@pytest.mark.parametrize(
    ("task", "patch"), [("jobs-runner", "store.ensure_group"), ("jobs-webhooks", "outbox.claim_due")]
)
async def test_a_dead_jobs_loop_is_logged_and_makes_the_replica_not_live(
    make_harness: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    task: str,
    patch: str,
) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    async with make_harness() as h:
        jobs = JobSystem(h.service, DOWN_REDIS, JobSettings())
        owner, method = patch.split(".")
        monkeypatch.setattr(getattr(jobs, owner), method, explode)
        assert (await h.client.get("/v2/health/live")).status_code == 200
        jobs.start()
        try:
            await _until(lambda: not h.service.live)
            live = await h.client.get("/v2/health/live")
            reason = f"background task {task} died: RuntimeError: boom"
            assert live.status_code == 503 and live.json() == {"live": False, "error": reason}
            ready = await h.client.get("/v2/health/ready")
            assert ready.status_code == 503 and ready.json()["error"] == reason
            assert f"background task {task} died" in caplog.text
            assert "Traceback (most recent call last)" in caplog.text and "RuntimeError: boom" in caplog.text
        finally:
            await jobs.stop()


async def test_stopping_the_jobs_loops_is_no_failure(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        jobs = JobSystem(h.service, DOWN_REDIS, JobSettings())  # Redis down: the loops retry, never die
        jobs.start()
        await asyncio.sleep(0.3)
        await jobs.stop()
        assert h.service.live and (await h.client.get("/v2/health/live")).json() == {"live": True}
