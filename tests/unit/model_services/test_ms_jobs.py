"""Job pieces without Redis: webhook signing, settings, and the API without --redis-url."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import pytest

from model_services.jobs.settings import JobSettings
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
