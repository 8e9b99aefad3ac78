"""The official Triton gRPC client (``tritonclient.grpc``), unchanged, against real model
services through a real Envoy, in both ADS modes: health, metadata, infer with three texts,
versioned calls answered by the named version, the split, header pins and rules, an unknown
version or model refused with NOT_FOUND, and HTTP still served beside gRPC on one listener."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from tests.support.grpc_replicas import GrpcReplica, grpc_policy, running_replicas
from tests.support.procs import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

TEXTS = ["This product is terrible", "Absolutely wonderful, works great", "It broke after one day"]
VERSIONS = ("sentiment-v3", "sentiment-v4")


@pytest.fixture(scope="module")
def replicas(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GrpcReplica]]:
    model_dir = model_store / "sentiment" / "sentiment-v3"
    with running_replicas(model_dir, tmp_path_factory.mktemp("grpc-replicas"), VERSIONS) as started:
        yield started


SPEC = """
traffic: {sentiment-v3: 50, sentiment-v4: 50}
pinning: {header: x-model-version}
rules: [{name: premium, match: {headers: {x-user-tier: premium}}, traffic: {sentiment-v4: 100}}]
"""


@pytest.fixture
def client(stack: Stack, replicas: dict[str, GrpcReplica]) -> Iterator[triton.InferenceServerClient]:
    stack.apply(grpc_policy(stack.listener_port, replicas, SPEC))
    grpc_client = triton.InferenceServerClient(url=stack.url.removeprefix("http://"))
    try:
        wait_for(grpc_client.is_server_ready, what="gRPC through Envoy")
        yield grpc_client
    finally:
        grpc_client.close()


def text_input() -> triton.InferInput:
    tensor = triton.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_))
    return tensor


def labels(result: triton.InferResult) -> list[str]:
    found = result.as_numpy("label")
    assert found is not None
    return [x.decode() for x in found.tolist()]


def answered_by(client: triton.InferenceServerClient, n: int, **call: object) -> Counter[str]:
    return Counter(client.infer("sentiment", [text_input()], **call).get_response().model_version for _ in range(n))


def test_health_metadata_and_infer(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name
    assert client.is_model_ready("sentiment")
    metadata = client.get_model_metadata("sentiment")
    assert metadata.name == "sentiment" and metadata.inputs[0].datatype == "BYTES"
    result = client.infer("sentiment", [text_input()])
    assert labels(result) == ["negative", "positive", "negative"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (3, 2) and probabilities.dtype == np.float32


def test_a_versioned_call_is_answered_by_that_version(client: triton.InferenceServerClient) -> None:
    for version in VERSIONS:
        assert client.is_model_ready("sentiment", version)
        assert list(client.get_model_metadata("sentiment", version).versions) == [version]
        assert answered_by(client, 20, model_version=version) == Counter({version: 20})


def test_split_header_pin_and_rule(client: triton.InferenceServerClient) -> None:
    assert set(answered_by(client, 40)) == set(VERSIONS)  # 50/50: both answer
    pinned = answered_by(client, 20, headers={"x-model-version": "sentiment-v3"})
    assert pinned == Counter({"sentiment-v3": 20})
    premium = answered_by(client, 20, headers={"x-user-tier": "premium"})
    assert premium == Counter({"sentiment-v4": 20})


def test_a_spoofed_routing_header_does_not_choose_the_version(client: triton.InferenceServerClient) -> None:
    # The router's own header, sent by a client, is replaced by what the call names.
    spoofed = {"x-switchyard-model-version": "sentiment-v4"}
    assert answered_by(client, 10, model_version="sentiment-v3", headers=spoofed) == Counter({"sentiment-v3": 10})


@pytest.mark.parametrize(
    "call",
    [{"model_version": "sentiment-v9"}, {"headers": {"x-model-version": "sentiment-v9"}}],
    ids=["in-the-call", "pin-header"],
)
def test_an_unknown_version_is_not_found_naming_the_known_ones(
    client: triton.InferenceServerClient, call: dict[str, object]
) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("sentiment", [text_input()], **call)
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "sentiment-v3, sentiment-v4" in info.value.message()


def test_an_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("no-such-model", [text_input()])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert not client.is_model_ready("no-such-model")


def test_http_is_served_beside_grpc(stack: Stack, client: triton.InferenceServerClient) -> None:
    response = httpx.post(f"{stack.url}/v2/models/sentiment/infer", json=_v2_body(), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] in VERSIONS


def _v2_body() -> dict[str, object]:
    return {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]}


def test_on_a_shared_host_each_call_goes_to_the_model_it_names(stack: Stack, replicas: dict[str, GrpcReplica]) -> None:
    """Models told apart by path prefix share one virtual host; gRPC calls, whose path is
    the service's, are told apart by the model they name."""
    v3, v4 = replicas["sentiment-v3"], replicas["sentiment-v4"]

    def model(name: str, prefix: str, replica: GrpcReplica, grpc: bool) -> str:
        grpc_endpoints = f', grpc_endpoints: ["{replica.grpc_address}"]' if grpc else ""
        return (
            f"apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n"
            f"  path_prefix: {prefix}\n"
            f'  versions: {{v1: {{endpoints: ["{replica.service.address}"]{grpc_endpoints}}}}}\n'
        )

    stack.apply(
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gateway}\n"
        f"spec: {{address: 127.0.0.1, port: {stack.listener_port}}}\n---\n"
        + "---\n".join(
            [model("sentiment", "/s", v3, True), model("plain", "/v1", v3, False), model("other", "/o", v4, True)]
        )
    )

    def grpc_calls(cluster: str) -> int:
        stats = httpx.get(f"{stack.envoy.admin}/stats?filter=^cluster\\.{cluster}\\.upstream_rq_total$", timeout=5)
        return sum(int(line.rsplit(":", 1)[1]) for line in stats.text.splitlines() if line.strip())

    client = triton.InferenceServerClient(url=stack.url.removeprefix("http://"))
    try:
        wait_for(client.is_server_ready, what="gRPC through Envoy")
        before = grpc_calls("other/v1/grpc")
        assert labels(client.infer("sentiment", [text_input()])) == ["negative", "positive", "negative"]
        assert grpc_calls("other/v1/grpc") == before
        with pytest.raises(InferenceServerException) as info:  # v4's replica serves "sentiment" only
            client.infer("other", [text_input()])
        assert "unknown model 'other'" in info.value.message()
        assert grpc_calls("other/v1/grpc") == before + 1
        # HTTP on the same host still goes by prefix (the model without gRPC serves /v1).
        response = httpx.post(f"{stack.url}/v1/predict", json={"text": "fine"}, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        client.close()
