"""Shadow comparison end to end: Envoy mirrors, both sides report, the control plane pairs them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests.support.grpc_replicas import GrpcReplica, grpc_policy
from tests.support.procs import ModelService, wait_for
from tests.support.stack import Stack, retarget
from tests.support.upstream import VersionUpstream

pytestmark = pytest.mark.integration

MODEL = "sentiment"


def report(stack: Stack) -> dict[str, Any]:
    response = httpx.get(f"{stack.control_plane.url}/v1/models/{MODEL}/shadow/report", timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def shadow_of(result: dict[str, Any], version: str) -> dict[str, Any] | None:
    return next((s for s in result["shadows"] if s["version"] == version), None)


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    return fresh_stack  # these tests change upstreams and state: a stack of their own each


def flips(text: str) -> bool:
    return int(text.rsplit(" ", 1)[-1]) % 4 == 0  # a deterministic quarter of the inputs


def test_agreement_rate_is_the_share_of_inputs_the_shadow_agrees_on(stack: Stack) -> None:
    production = VersionUpstream("sentiment-v3", labeler=lambda t: ("positive", 0.9))
    shadow = VersionUpstream("sentiment-v5", labeler=lambda t: ("negative", 0.6) if flips(t) else ("positive", 0.8))
    try:
        policy = stack.policy("shadow: [{version: sentiment-v5, percent: 100}]", traffic="{sentiment-v3: 100}")
        retarget(stack, policy, {"sentiment-v3": production.address, "sentiment-v5": shadow.address})
        n = 200
        for i in range(n):
            r = stack.one(json={"text": f"review number {i}"})
            assert (r.status_code, r.headers["x-model-version"]) == (200, "sentiment-v3")
        wait_for(lambda: shadow.count("shadow") >= n, what="every mirrored request")
        url = f"{stack.control_plane.url}/v1/shadow/reports"
        shadow.flush_reports(url)
        production.flush_reports(url)
        result = shadow_of(report(stack), "sentiment-v5")
        assert result is not None
        assert result["requests_compared"] == n
        assert result["agreement_rate"] == 0.75
        assert result["confidence_diff"]["mean"] == pytest.approx(0.25 * 0.3 + 0.75 * 0.1, abs=1e-3)
        assert result["confidence_diff"]["p95"] == pytest.approx(0.3)
        assert result["shadow_errors"] == 0
        sample = result["disagreements"][0]
        assert flips(sample["input"])
        assert (sample["production"]["label"], sample["shadow"]["label"]) == ("positive", "negative")
    finally:
        production.close()
        shadow.close()


def _model_service(store: Path, version: str, workdir: Path, report_url: str) -> tuple[ModelService, str]:
    model_dir = store / "sentiment" / "sentiment-v3"
    args = ("--served-version", version, "--max-delay-ms", "1", "--report-url", report_url)
    service = ModelService(model_dir, workdir / f"{version}.log", *args)
    return service, service.address


def test_real_services_report_and_shadow_errors_never_reach_clients(stack: Stack, model_store: Path) -> None:
    url = f"{stack.control_plane.url}/v1/shadow/reports"
    # The same trained model behind both names: they must agree on every input.
    services = {v: _model_service(model_store, v, stack.workdir, url) for v in ("sentiment-v3", "sentiment-v5")}
    try:
        for proc, address in services.values():
            wait_for(
                lambda a=address: httpx.get(f"http://{a}/v2/health/ready").status_code == 200,  # type: ignore[misc]
                timeout=120,
                what=f"model service {address} ({proc.log_path})",
            )
        policy = stack.policy("shadow: [{version: sentiment-v5, percent: 100}]", traffic="{sentiment-v3: 100}")
        retarget(stack, policy, {v: address for v, (_, address) in services.items()})
        texts = [f"this was {w} {i}" for i, w in enumerate(["great", "awful", "fine", "broken"] * 15)]
        for text in texts:
            assert stack.one(json={"text": text}).status_code == 200

        def compared() -> dict[str, Any] | None:
            s = shadow_of(report(stack), "sentiment-v5")
            return s if s is not None and s["requests_compared"] >= len(texts) else None

        result = wait_for(compared, what="every pair compared", timeout=20)
        assert result["agreement_rate"] == 1.0
        assert result["confidence_diff"]["p95"] == pytest.approx(0.0, abs=1e-4)
        assert result["latency_ms"]["shadow"]["p99"] is not None

        # The shadow now fails every request: clients never see it, the report counts it.
        shadow_url = f"http://{services['sentiment-v5'][1]}"
        httpx.post(f"{shadow_url}/admin/fault", json={"error_rate": 1.0}).raise_for_status()
        httpx.delete(f"{stack.control_plane.url}/v1/models/{MODEL}/shadow/report").raise_for_status()
        seen: Counter[tuple[int, str | None]] = Counter()
        for text in texts:
            r = stack.one(json={"text": text})
            seen[(r.status_code, r.headers.get("x-model-version"))] += 1
        assert seen == Counter({(200, "sentiment-v3"): len(texts)})

        def errors_counted() -> dict[str, Any] | None:
            s = shadow_of(report(stack), "sentiment-v5")
            return s if s is not None and s["shadow_errors"] >= len(texts) else None

        result = wait_for(errors_counted, what="every shadow error reported", timeout=20)
        assert result["requests_compared"] == 0
    finally:
        for proc, _ in services.values():
            proc.stop()


def test_grpc_and_v2_infer_answers_are_compared_text_by_text(stack: Stack, model_store: Path) -> None:
    url = f"{stack.control_plane.url}/v1/shadow/reports"
    model_dir = model_store / "sentiment" / "sentiment-v3"
    replicas = {
        v: GrpcReplica(model_dir, stack.workdir, v, "--report-url", url) for v in ("sentiment-v3", "sentiment-v5")
    }
    try:
        for replica in replicas.values():
            replica.service.wait_ready()
        shadow = "traffic: {sentiment-v3: 100}\nshadow: [{version: sentiment-v5, percent: 100}]"
        stack.apply(grpc_policy(stack.listener_port, replicas, shadow, model=MODEL))
        texts = ["this was great", "this was awful", "it broke"]
        client = triton_grpc.InferenceServerClient(stack.url.removeprefix("http://"))
        try:
            wait_for(client.is_server_ready, what="gRPC through Envoy")
            tensor = triton_grpc.InferInput("text", [len(texts)], "BYTES")
            tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
            for _ in range(10):
                answer = client.infer(MODEL, [tensor]).get_response()
                assert answer.model_version == "sentiment-v3"  # only production answers
        finally:
            client.close()

        def compared(n: int) -> dict[str, Any] | None:
            s = shadow_of(report(stack), "sentiment-v5")
            return s if s is not None and s["requests_compared"] >= n else None

        result = wait_for(lambda: compared(10 * len(texts)), what="every gRPC text compared", timeout=20)
        assert result["requests_compared"] == 10 * len(texts) and result["agreement_rate"] == 1.0

        httpx.delete(f"{stack.control_plane.url}/v1/models/{MODEL}/shadow/report").raise_for_status()
        body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
        for _ in range(10):
            r = httpx.post(f"{stack.url}/v2/models/{MODEL}/infer", json=body, timeout=10)
            assert r.status_code == 200 and r.json()["model_version"] == "sentiment-v3", r.text
        result = wait_for(lambda: compared(10 * len(texts)), what="every v2 REST text compared", timeout=20)
        assert result["requests_compared"] == 10 * len(texts) and result["agreement_rate"] == 1.0
    finally:
        for replica in replicas.values():
            replica.service.stop()
