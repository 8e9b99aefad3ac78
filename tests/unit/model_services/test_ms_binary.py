"""The binary tensor data extension, encoded and decoded by tritonclient itself (its
``generate_request_body`` and ``parse_response_body``), against the service in process;
and hostile binary bodies, which must get a 4xx that says what is wrong, never a 500."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_services.api.binary import attach_binary_inputs, decode
from model_services.api.errors import ApiError
from model_services.api.schemas import InferRequest

pytestmark = pytest.mark.timeout(60)

Make = Callable[..., Any]
TEXTS = ["good", "bad", "good again"]


def text_input(binary_data: bool) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary_data)
    return tensor


async def post(h: Any, body: bytes, header_length: int | None) -> triton.InferResult:
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    response = await h.client.post("/v2/models/fake/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get("inference-header-content-length")
    return triton.InferenceServerClient.parse_response_body(
        response.content, header_length=None if length is None else int(length)
    )


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
async def test_tritonclient_bodies_both_ways(make_harness: Make, binary_in: bool, binary_out: bool) -> None:
    outputs = [triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("label", "probabilities")]
    body, header_length = triton.InferenceServerClient.generate_request_body([text_input(binary_in)], outputs=outputs)
    async with make_harness() as h:
        result = await post(h, body, header_length)
    labels = result.as_numpy("label")
    assert labels is not None and [x.decode() if isinstance(x, bytes) else x for x in labels] == [
        "positive",
        "negative",
        "positive",
    ]
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (3, 2)
    assert probabilities.dtype == np.float32 and np.allclose(probabilities[0], [0.1, 0.9])
    sent_as = (result.get_output("label") or {}).get("parameters", {})
    assert ("binary_data_size" in sent_as) == binary_out


async def test_default_client_request_gets_every_output_in_binary(make_harness: Make) -> None:
    # No outputs named: tritonclient asks for binary_data_output, as perf_analyzer does.
    body, header_length = triton.InferenceServerClient.generate_request_body([text_input(True)])
    async with make_harness() as h:
        result = await post(h, body, header_length)
        metadata = (await h.client.get("/v2")).json()
    assert {o["name"] for o in result.get_response()["outputs"]} == {"label", "confidence", "probabilities"}
    confidence = result.as_numpy("confidence")
    assert confidence is not None and confidence.dtype == np.float32 and confidence.shape == (3,)
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("FP32", [1.5, -2.0]), ("INT64", [2**40, -7]), ("BOOL", [True, False]), ("UINT8", [0, 255])],
)
def test_numeric_tensors_decode(datatype: str, values: list[Any]) -> None:
    dtype = {"FP32": "<f4", "INT64": "<i8", "BOOL": "?", "UINT8": "<u1"}[datatype]
    assert decode(datatype, np.array(values, dtype=dtype).tobytes(), "x") == values


def request_with(size: object, datatype: str = "BYTES") -> InferRequest:
    return InferRequest.model_validate(
        {"inputs": [{"name": "text", "shape": [1], "datatype": datatype, "parameters": {"binary_data_size": size}}]}
    )


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=64),
    size=st.one_of(st.integers(-5, 80), st.text(max_size=3), st.none(), st.booleans()),
    datatype=st.sampled_from(["BYTES", "FP32", "INT64", "FP16", "BF16", "STRING"]),
)
def test_hostile_binary_data_is_refused_clearly(data: bytes, size: object, datatype: str) -> None:
    request = request_with(size, datatype)
    refused: ApiError | None = None
    try:
        attach_binary_inputs(request, data)
    except ApiError as exc:
        refused = exc
    if refused is not None:
        assert 400 <= refused.status < 500
        assert "inputs[text]" in str(refused) or "belong to no input" in str(refused), str(refused)
        return
    if size is None:  # no binary_data_size: a JSON tensor, and no byte may be left over
        assert data == b""
        return
    # Accepted: exactly the declared bytes were used.
    assert isinstance(size, int) and size == len(data)


async def test_bad_binary_bodies_over_http_are_4xx(make_harness: Make) -> None:
    header = json.dumps(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]}
    ).encode()
    element = struct.pack("<I", 4) + b"good"
    async with make_harness() as h:
        cases = {
            "short": (header + element[:-1], str(len(header))),
            "too long a header length": (header + element, str(len(header) + 100)),
            "not a number": (header + element, "ten"),
            "header not JSON": (b"{" + element, "1"),
        }
        for what, (body, length) in cases.items():
            r = await h.client.post(
                "/v2/models/fake/infer", content=body, headers={"Inference-Header-Content-Length": length}
            )
            assert 400 <= r.status_code < 500, (what, r.status_code, r.text)
            assert r.json()["error"], what
        ok = await h.client.post(
            "/v2/models/fake/infer",
            content=header + element,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == ["positive"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200), length=st.integers(0, 220))
async def test_any_binary_body_gets_a_json_answer_not_a_500(make_harness: Make, body: bytes, length: int) -> None:
    async with make_harness() as h:
        r = await h.client.post(
            "/v2/models/fake/infer", content=body, headers={"Inference-Header-Content-Length": str(length)}
        )
    assert r.status_code in (200, 404, 413, 422), r.text
    assert r.status_code == 200 or r.json()["code"]
