"""Ordinary calls of the ``kserve`` SDK's inference clients, run by its own virtualenv.

The kserve SDK pins protobuf<7, which this project's tools cannot use, so it lives in
``.venv-kserve`` (made by ``.ci/setup`` from ``kserve-requirements.txt``) and this script
runs there: ``python kserve_calls.py REST_URL GRPC_HOST:PORT VERSION...``. It prints one
JSON object of what each call returned (or the error it raised); the test asserts on it.
Only the clients' public API is used, with their defaults.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

TEXTS = ["This product is terrible", "Absolutely wonderful, works great", "It broke after one day"]


def request(binary: bool, version: str | None = None) -> InferRequest:
    tensor = InferInput(name="text", shape=[len(TEXTS)], datatype="BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=np.object_), binary_data=binary)
    return InferRequest(model_name="sentiment", infer_inputs=[tensor], model_version=version)


def labels(response: Any) -> list[str]:
    (found,) = [o for o in response.outputs if o.name == "label"]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in found.as_numpy().tolist()]


def probabilities_shape(response: Any) -> list[int]:
    (found,) = [o for o in response.outputs if o.name == "probabilities"]
    return list(found.as_numpy().shape)


async def rest_calls(url: str) -> dict[str, Any]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    try:
        out: dict[str, Any] = {
            "live": await client.is_server_live(url),
            "ready": await client.is_server_ready(url),
            "model_ready": await client.is_model_ready(url, "sentiment"),
        }
        as_json = await client.infer(url, request(binary=False), model_name="sentiment")
        out["json_labels"] = labels(as_json)
        out["json_probabilities_shape"] = probabilities_shape(as_json)
        # Binary inputs: the client sends application/octet-stream with Inference-Header-Content-Length.
        binary = request(binary=True)
        out["binary_header_length"] = binary.to_rest()[1]  # None if the client fell back to JSON
        as_binary = await client.infer(url, binary, model_name="sentiment")
        out["binary_labels"] = labels(as_binary)
        try:
            await client.infer(url, request(binary=False), model_name="no-such-model")
            out["unknown_model_error"] = None
        except Exception as exc:  # the client raises httpx.HTTPStatusError with the server's message
            out["unknown_model_error"] = str(exc)
        return out
    finally:
        await client.close()


async def grpc_calls(address: str, versions: list[str]) -> dict[str, Any]:
    client = InferenceGRPCClient(address, timeout=30)
    try:
        out: dict[str, Any] = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready("sentiment"),
        }
        response = await client.infer(request(binary=False))
        out["labels"] = labels(response)
        # The request's model_version picks the version, whatever the split: 10 calls each.
        out["answered_by"] = {}
        for version in versions:
            answered = []
            for _ in range(10):
                answered.append((await client.infer(request(binary=False, version=version))).model_version)
            out["answered_by"][version] = answered
        return out
    finally:
        await client.close()


async def main(url: str, grpc_address: str, versions: list[str]) -> None:
    result = {"rest": await rest_calls(url), "grpc": await grpc_calls(grpc_address, versions)}
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
