"""HTTP behaviour of one service, in process: shapes, headers, errors, gating."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(60)

Make = Callable[..., Any]


async def test_predict_shape_and_headers(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.post(
            "/v1/predict",
            json={"text": "This product is good", "model_version": "fake-v1"},
            headers={"x-request-id": "req-42"},
        )
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"label", "confidence", "model_version", "latency_ms"}
        assert body["label"] == "positive"
        assert body["confidence"] == pytest.approx(0.9)
        assert body["model_version"] == "fake-v1"
        assert isinstance(body["latency_ms"], float)
        assert body["latency_ms"] >= 0
        assert r.headers["x-model-version"] == "fake-v1"
        assert r.headers["x-request-id"] == "req-42"


async def test_request_id_generated_when_absent_and_on_errors(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.post("/v1/predict", json={"text": ""})
        assert r.status_code == 422
        assert len(r.headers["x-request-id"]) >= 16
        assert r.headers["x-model-version"] == "fake-v1"


async def test_batch_form(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.post("/v1/predict/batch", json={"texts": ["good", "bad", "good"]})
        assert r.status_code == 200
        body = r.json()
        assert [p["label"] for p in body["predictions"]] == ["positive", "negative", "positive"]
        assert body["model_version"] == "fake-v1"


@pytest.mark.parametrize(
    ("payload", "status", "code", "message"),
    [
        ({"text": ""}, 422, "empty_text", "text is empty"),
        ({"text": "   \n"}, 422, "empty_text", "text is empty"),
        ({"text": "x" * 101}, 413, "text_too_long", "101 characters; the limit is 100"),
        ({"text": 5}, 422, "invalid_request", "text: Input should be a valid string"),
        ({"text": ["a"]}, 422, "invalid_request", "text: Input should be a valid string"),
        ({}, 422, "invalid_request", "text: Field required"),
        ([1, 2], 422, "invalid_request", "request body must be a JSON object"),
        ({"text": "a", "model_version": 3}, 422, "invalid_request", "model_version"),
        ({"text": "a", "model_version": "other"}, 404, "version_not_served", "not 'other'"),
    ],
)
async def test_bad_inputs(make_harness: Make, payload: object, status: int, code: str, message: str) -> None:
    async with make_harness(max_text_chars=100) as h:
        r = await h.client.post("/v1/predict", json=payload)
        assert r.status_code == status, r.text
        assert r.json()["code"] == code
        assert message in r.json()["error"]
        # ...and the service keeps serving everyone else.
        ok = await h.client.post("/v1/predict", json={"text": "good"})
        assert ok.status_code == 200


async def test_non_json_bodies(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert "not valid JSON" in r.json()["error"]
        r = await h.client.post("/v1/predict", content=b"text=hello")
        assert r.status_code == 422
        assert r.json()["code"] == "invalid_request" and "not valid JSON" in r.json()["error"]
        r = await h.client.post("/v1/predict")
        assert r.status_code == 422
        assert "missing" in r.json()["error"]


# What clients put in Content-Type: nothing (tritonclient), curl -d's form type, text,
# JSON with parameters, and anything else a client might say.
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/octet-stream",
            "application/vnd.api+json",
        ]
    ),
    st.from_regex(r"[a-z]{1,10}/[a-z0-9.+-]{1,15}", fullmatch=True),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content_type=CONTENT_TYPES)
async def test_json_body_is_json_whatever_its_content_type(make_harness: Make, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    v2 = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "bad"]}]}
    async with make_harness() as h:
        # httpx adds no Content-Type to raw content: the request is exactly what tritonclient sends.
        r = await h.client.post("/v1/predict", content=json.dumps({"text": "good"}).encode(), headers=headers)
        assert r.status_code == 200, r.text
        r = await h.client.post("/v2/models/fake/infer", content=json.dumps(v2).encode(), headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == ["positive", "negative"]
        r = await h.client.post("/v1/predict", content=b"\x00not json", headers=headers)
        assert r.status_code == 422 and r.json()["code"] == "invalid_request"
        assert "not valid JSON" in r.json()["error"]


async def test_batch_limits(make_harness: Make) -> None:
    async with make_harness(max_batch_texts=3, max_text_chars=10) as h:
        r = await h.client.post("/v1/predict/batch", json={"texts": ["a"] * 4})
        assert (r.status_code, r.json()["code"]) == (413, "too_many_texts")
        r = await h.client.post("/v1/predict/batch", json={"texts": []})
        assert (r.status_code, r.json()["code"]) == (422, "empty_input")
        r = await h.client.post("/v1/predict/batch", json={"texts": ["ok", ""]})
        assert (r.status_code, r.json()["code"]) == (422, "empty_text")
        assert "texts[1]" in r.json()["error"]


async def test_oversized_body_refused_before_parsing(make_harness: Make) -> None:
    async with make_harness(max_text_chars=10, max_batch_texts=1) as h:
        limit = h.service.config.max_body_bytes
        r = await h.client.post(
            "/v1/predict",
            content=b"x" * (limit + 1),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        assert r.json()["code"] == "body_too_large"


async def test_unknown_route_and_method_are_json(make_harness: Make) -> None:
    async with make_harness() as h:
        r = await h.client.get("/nowhere")
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
        r = await h.client.get("/v1/predict")
        assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


async def test_v2_protocol_shapes(make_harness: Make) -> None:
    async with make_harness() as h:
        assert (await h.client.get("/v2/health/live")).json() == {"live": True}
        ready = await h.client.get("/v2/health/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert (await h.client.get("/v2")).json()["name"] == "switchyard-model-service"

        for path in ("/v2/models/fake", "/v2/models/fake/versions/fake-v1"):
            meta = (await h.client.get(path)).json()
            assert meta["name"] == "fake"
            assert meta["versions"] == ["fake-v1"]
            assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
            assert {o["name"] for o in meta["outputs"]} == {"label", "confidence", "probabilities"}
            r = await h.client.get(path + "/ready")
            assert r.status_code == 200
            assert r.json()["ready"] is True

        assert (await h.client.get("/v2/models/other")).status_code == 404
        assert (await h.client.get("/v2/models/fake/versions/v9")).status_code == 404

        request = {
            "id": "abc",
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["good", "x"]}],
        }
        for path in ("/v2/models/fake/infer", "/v2/models/fake/versions/fake-v1/infer"):
            r = await h.client.post(path, json=request)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model_name"] == "fake"
            assert body["model_version"] == "fake-v1"
            assert body["id"] == "abc"
            out = {o["name"]: o for o in body["outputs"]}
            assert out["label"] == {
                "name": "label",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["positive", "negative"],
            }
            assert out["confidence"]["shape"] == [2]
            assert out["confidence"]["datatype"] == "FP32"
            assert out["probabilities"]["shape"] == [2, 2]
            assert out["probabilities"]["data"] == pytest.approx([0.1, 0.9, 0.8, 0.2])

        only = {**request, "outputs": [{"name": "label"}]}
        body = (await h.client.post("/v2/models/fake/infer", json=only)).json()
        assert [o["name"] for o in body["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}], "must be BYTES"),
        ([{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}], "shape [2]"),
        ([{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}], "must be strings"),
        ([], "inputs"),
    ],
)
async def test_v2_bad_infer_requests(make_harness: Make, inputs: object, message: str) -> None:
    async with make_harness() as h:
        r = await h.client.post("/v2/models/fake/infer", json={"inputs": inputs})
        assert r.status_code == 422
        assert message in r.json()["error"]


async def test_metrics_exposed(make_harness: Make) -> None:
    async with make_harness() as h:
        await h.client.post("/v1/predict", json={"text": "good"})
        await h.client.post("/v1/predict", json={"text": ""})
        text = (await h.client.get("/metrics")).text
        for line in (
            'model_requests_total{endpoint="predict",model="fake",outcome="ok",version="fake-v1"} 1.0',
            'outcome="empty_text"',
            "model_queue_wait_seconds_bucket",
            "model_inference_seconds_bucket",
            'model_batch_size_bucket{le="1.0",model="fake",version="fake-v1"} 1.0',
            'model_pending_requests{model="fake",version="fake-v1"} 0.0',
            'model_load_seconds{model="fake",version="fake-v1"} 0.01',
            'model_ready{model="fake",version="fake-v1"} 1.0',
            "model_request_duration_seconds_bucket",
            "process_resident_memory_bytes",
        ):
            assert line in text, line


async def test_not_ready_during_load_then_during_warmup(make_harness: Make) -> None:
    async with make_harness(wait_ready=False, hold_load=True, max_batch_size=4) as h:
        h.handler.gate.clear()  # will hold the first warm-up batch
        assert (await h.client.get("/v2/health/live")).status_code == 200
        r = await h.client.get("/v2/health/ready")
        assert r.status_code == 503
        assert r.json()["state"] == "loading"
        assert (await h.client.get("/v2/models/fake/ready")).status_code == 503
        r = await h.client.post("/v1/predict", json={"text": "good"})
        assert r.status_code == 503
        assert r.json()["code"] == "not_ready"
        assert r.headers["retry-after"] == "1"

        h.load_gate.set()
        for _ in range(2000):
            if h.handler.entered.is_set():
                break
            await asyncio.sleep(0.005)
        r = await h.client.get("/v2/health/ready")
        assert r.status_code == 503
        assert r.json()["state"] == "warming_up"

        h.handler.gate.set()
        await h.service.wait_started()
        assert (await h.client.get("/v2/health/ready")).status_code == 200
        # Warm-up ran batch 1 and the max batch size before ready.
        assert [len(c) for c in h.handler.calls] == [1, 4]


async def test_failed_load_reports_why(make_harness: Make) -> None:
    async with make_harness(wait_ready=False, hold_load=True) as h:
        h.service._loader = _explode
        h.load_gate.set()
        await h.service.wait_started()
        r = await h.client.get("/v2/health/ready")
        assert r.status_code == 503
        assert r.json()["state"] == "failed"


def _explode(*_: object) -> object:
    raise RuntimeError("weights are corrupt")


async def test_deadline_over_http_is_504(make_harness: Make) -> None:
    async with make_harness() as h:
        h.handler.gate.clear()
        h.handler.entered.clear()
        blocker = asyncio.ensure_future(h.client.post("/v1/predict", json={"text": "first"}))
        for _ in range(2000):
            if h.handler.entered.is_set():
                break
            await asyncio.sleep(0.005)
        r = await h.client.post("/v1/predict", json={"text": "late"}, headers={"x-request-timeout-ms": "30"})
        assert r.status_code == 504
        assert r.json()["code"] == "deadline_exceeded"
        h.handler.gate.set()
        assert (await blocker).status_code == 200
        assert all("late" not in call for call in h.handler.calls)
        bad = await h.client.post("/v1/predict", json={"text": "x"}, headers={"x-request-timeout-ms": "soon"})
        assert bad.status_code == 422


async def test_overflow_over_http_is_503_with_retry_after(make_harness: Make) -> None:
    async with make_harness(max_batch_size=1, max_queue_size=2) as h:
        h.handler.gate.clear()
        h.handler.entered.clear()
        running = asyncio.ensure_future(h.client.post("/v1/predict", json={"text": "a"}))
        for _ in range(2000):
            if h.handler.entered.is_set():
                break
            await asyncio.sleep(0.005)
        queued = [asyncio.ensure_future(h.client.post("/v1/predict", json={"text": t})) for t in ("b", "c")]
        for _ in range(2000):
            if h.service.batcher.queued == 2:
                break
            await asyncio.sleep(0.005)
        r = await h.client.post("/v1/predict", json={"text": "d"})
        assert r.status_code == 503
        assert r.json()["code"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 1
        h.handler.gate.set()
        assert all(x.status_code == 200 for x in await asyncio.gather(running, *queued))


async def test_fault_injection(make_harness: Make) -> None:
    async with make_harness(fault_rate=1.0) as h:
        r = await h.client.post("/v1/predict", json={"text": "good"})
        assert r.status_code == 500
        assert r.json()["code"] == "injected_fault"
        r = await h.client.post("/admin/fault", json={"error_rate": 0.0})
        assert r.json() == {"error_rate": 0.0, "latency_ms": 0.0}
        assert (await h.client.post("/v1/predict", json={"text": "good"})).status_code == 200
        r = await h.client.post("/admin/fault", json={"error_rate": 2})
        assert r.status_code == 422
        assert (await h.client.get("/admin/fault")).json()["error_rate"] == 0.0


async def test_served_version_override(make_harness: Make) -> None:
    async with make_harness(served_version="fake-v9") as h:
        r = await h.client.post("/v1/predict", json={"text": "good", "model_version": "fake-v9"})
        assert r.status_code == 200
        assert r.json()["model_version"] == "fake-v9"
        assert r.headers["x-model-version"] == "fake-v9"


async def test_draining_reports_unready_but_still_serves(make_harness: Make) -> None:
    async with make_harness() as h:
        h.service.begin_drain()
        assert (await h.client.get("/v2/health/ready")).status_code == 503
        assert (await h.client.post("/v1/predict", json={"text": "good"})).status_code == 200


async def test_concurrent_requests_are_batched(make_harness: Make) -> None:
    async with make_harness(max_batch_size=8) as h:
        h.handler.gate.clear()
        h.handler.entered.clear()
        first = asyncio.ensure_future(h.client.post("/v1/predict", json={"text": "good 0"}))
        for _ in range(2000):
            if h.handler.entered.is_set():
                break
            await asyncio.sleep(0.005)
        rest = [asyncio.ensure_future(h.client.post("/v1/predict", json={"text": f"good {i}"})) for i in range(1, 8)]
        for _ in range(2000):
            if h.service.batcher.queued == 7:
                break
            await asyncio.sleep(0.005)
        h.handler.gate.set()
        responses = await asyncio.gather(first, *rest)
        assert all(r.status_code == 200 for r in responses)
        assert sorted(len(c) for c in h.handler.calls[2:]) == [1, 7]  # after 2 warm-ups
