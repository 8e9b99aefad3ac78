"""Pairing production and shadow answers, the report, and the model service's reporter."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.shadow.collector import ShadowCollector
from control_plane.shadow.records import AnswerRecord
from model_services.api.shadow_report import ShadowReporter

POLICY = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  versions:
    v3: {endpoints: ["127.0.0.1:8101"]}
    v5: {endpoints: ["127.0.0.1:8301"]}
  traffic: {v3: 100}
  shadow: [{version: v5}]
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: other}
spec:
  hosts: [other]
  versions:
    o1: {endpoints: ["127.0.0.1:8401"]}
"""
INTENT = to_intent(load_texts({"p.yaml": POLICY}))


def rec(rid: str, version: str, label: str | None = "pos", conf: float | None = 0.9, **kw: Any) -> AnswerRecord:
    return AnswerRecord(
        request_id=rid, version=version, shadow=version == "v5", label=label, confidence=conf, latency_ms=1.0, **kw
    )


def collector(**kw: Any) -> ShadowCollector:
    return ShadowCollector(lambda: INTENT, **kw)


def test_pairs_in_either_order_and_reports_agreement() -> None:
    c = collector()
    c.ingest([rec("a", "v3"), rec("a", "v5", "neg", 0.6, input="bad")])
    c.ingest([rec("b", "v5"), rec("b", "v3", conf=0.8)])  # the shadow answered first
    (s,) = c.report("sentiment")["shadows"]
    assert (s["version"], s["requests_compared"], s["agreement_rate"]) == ("v5", 2, 0.5)
    assert s["confidence_diff"]["mean"] == pytest.approx(0.2)
    assert s["disagreements"] == [
        {
            "request_id": "a",
            "input": "bad",
            "production": {"version": "v3", "label": "pos", "confidence": 0.9},
            "shadow": {"version": "v5", "label": "neg", "confidence": 0.6},
        }
    ]


def test_errors_are_counted_not_compared() -> None:
    c = collector()
    c.ingest([rec("a", "v3"), rec("a", "v5", label=None, conf=None, error="injected_fault")])
    c.ingest([rec("b", "v3", error="queue_full"), rec("b", "v5")])
    (s,) = c.report("sentiment")["shadows"]
    assert (s["requests_compared"], s["shadow_errors"], s["production_errors"]) == (0, 1, 1)


def test_inputs_can_be_switched_off() -> None:
    c = collector(capture_inputs=False)
    c.ingest([rec("a", "v3"), rec("a", "v5", "neg", input="secret")])
    assert c.report("sentiment")["shadows"][0]["disagreements"][0]["input"] is None


def test_bounded_pending_and_unmirrored_models_are_ignored() -> None:
    c = collector(pending_limit=3)
    c.ingest([rec(f"s{i}", "v5") for i in range(5)])  # shadows whose production answer never comes
    report = c.report("sentiment")
    assert report["pending"] == 3
    assert report["shadows"][0]["unmatched_shadow_answers"] == 2
    assert c.ingest([rec("x", "o1")]) == 0  # 'other' mirrors nothing: its answers are not kept
    assert c.ignored == 1
    c.reset("sentiment")
    assert c.report("sentiment") == {
        "model": "sentiment",
        "capture_inputs": True,
        "pending": 0,
        "capture_dropped": {},
        "shadows": [],
    }


async def test_reporter_never_blocks_and_counts_drops() -> None:
    posted: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content))
        return httpx.Response(200, json={})

    reporter = ShadowReporter("http://cp/v1/shadow/reports", model="sentiment", version="v5", max_queue=3, flush_s=0.01)
    reporter._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    for i in range(5):  # the background task is not running: the queue fills, then drops
        reporter.record(f"r{i}", True, label="pos", confidence=0.5, latency_ms=1.0, text="t")
    assert reporter.dropped == 2
    reporter.start()
    for _ in range(200):
        if posted:
            break
        await asyncio.sleep(0.01)
    await reporter.stop()
    assert posted[0]["dropped"] == 2
    assert [r["request_id"] for r in posted[0]["records"]] == ["r0", "r1", "r2"]
    assert all(r["shadow"] and r["input"] == "t" for r in posted[0]["records"])


async def test_reporter_drops_what_it_cannot_post() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    reporter = ShadowReporter("http://cp/x", model="m", version="v3", flush_s=0.01)
    reporter._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    reporter.record("a", False, label="pos", confidence=0.5, latency_ms=1.0, text="t")
    assert reporter._queue[0]["input"] is None  # production answers never carry the input
    with pytest.raises(httpx.HTTPError):
        await reporter._flush()
    assert (reporter.dropped, len(reporter._queue)) == (1, 0)
    await reporter.stop()
