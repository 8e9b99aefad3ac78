"""The official Triton client (``tritonclient.http``), unchanged and in its default binary
mode, against real model services through a real Envoy: health, metadata, infer with
three texts in JSON and binary form, and versioned calls answered by the named version."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.procs import ModelService
from tests.support.stack import Stack, retarget

pytestmark = pytest.mark.integration

TEXTS = ["This product is terrible", "Absolutely wonderful, works great", "It broke after one day"]
VERSIONS = ("sentiment-v3", "sentiment-v4")


@pytest.fixture
def served(fresh_stack: Stack, model_store: Path) -> Iterator[triton.InferenceServerClient]:
    """Two versions (the same trained model under two names) behind Envoy, split 50/50."""
    model_dir = model_store / "sentiment" / "sentiment-v3"
    services = {
        v: ModelService(model_dir, fresh_stack.workdir / f"{v}.log", "--served-version", v, "--max-delay-ms", "1")
        for v in VERSIONS
    }
    try:
        for service in services.values():
            service.wait_ready()
        policy = fresh_stack.policy(traffic="{sentiment-v3: 50, sentiment-v4: 50}")
        retarget(fresh_stack, policy, {v: s.address for v, s in services.items()})
        client = triton.InferenceServerClient(url=fresh_stack.url.removeprefix("http://"))
        try:
            yield client
        finally:
            client.close()
    finally:
        for service in services.values():
            service.stop()


def text_input(binary_data: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary_data)
    return tensor


def labels(result: triton.InferResult) -> list[str]:
    found = result.as_numpy("label")
    assert found is not None
    return [x.decode() if isinstance(x, bytes) else str(x) for x in found.tolist()]


def test_tritonclient_calls_work_through_envoy(served: triton.InferenceServerClient) -> None:
    client = served
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("sentiment")
    metadata = client.get_model_metadata("sentiment")
    assert metadata["name"] == "sentiment" and metadata["inputs"][0]["datatype"] == "BYTES"

    # The client's defaults: binary input, every output in binary.
    binary = client.infer("sentiment", [text_input(True)])
    assert labels(binary) == ["negative", "positive", "negative"]
    probabilities = binary.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (3, 2) and probabilities.dtype == np.float32
    # The JSON form of the same call gives the same answer.
    outputs = [triton.InferRequestedOutput("label", binary_data=False)]
    as_json = client.infer("sentiment", [text_input(False)], outputs=outputs)
    assert labels(as_json) == labels(binary)


def test_versioned_calls_are_answered_by_that_version(served: triton.InferenceServerClient) -> None:
    client = served
    for version in VERSIONS:
        assert client.is_model_ready("sentiment", version)
        assert client.get_model_metadata("sentiment", version)["versions"] == [version]
        answered = Counter(
            client.infer("sentiment", [text_input(True)], model_version=version).get_response()["model_version"]
            for _ in range(20)
        )
        assert answered == Counter({version: 20})  # whatever the 50/50 split says
    # Without a version the split decides: both versions answer.
    unversioned = Counter(
        client.infer("sentiment", [text_input(True)]).get_response()["model_version"] for _ in range(40)
    )
    assert set(unversioned) == set(VERSIONS), unversioned
