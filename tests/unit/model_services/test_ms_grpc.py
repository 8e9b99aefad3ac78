"""The gRPC Open Inference Protocol service, called by the real Triton client
(``tritonclient.grpc.aio``) over loopback against a service in this process: every
RPC, the shared batcher, and each refusal's status code. Hostile requests (Hypothesis)
must get INVALID_ARGUMENT or NOT_FOUND, never INTERNAL or UNKNOWN."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as triton_pb2
from tritonclient.utils import InferenceServerException

from control_plane.local.up import free_port
from model_services.api.errors import ApiError
from model_services.api.grpc_service import create_server, infer_request
from model_services.api.v2 import requested_outputs, texts_of
from model_services.config import ServeConfig
from model_services.protocol import compile as protocol_compile
from model_services.protocol import messages
from model_services.serving.service import ModelService
from tests.unit.model_services.conftest import Harness, write_fake_version

pytestmark = pytest.mark.timeout(60)

Make = Callable[..., Any]
TEXTS = ["good", "bad", "good again"]


@asynccontextmanager
async def grpc_harness(
    make_harness: Make, **config: Any
) -> AsyncIterator[tuple[Harness, triton.InferenceServerClient]]:
    async with make_harness(**config) as h:
        port = free_port()
        server = create_server(h.service, "127.0.0.1", port)
        await server.start()
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            yield h, client
        finally:
            h.handler.gate.set()
            await client.close()
            await server.stop(grace=None)


def text_input(texts: list[str] = TEXTS) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return tensor


def status(exc: InferenceServerException) -> str:
    return str(exc.status())


# -- the protocol definition -------------------------------------------------------


def _fields(descriptor: Any) -> dict[str, tuple[int, int, str]]:
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return {f.name: (f.number, f.type, f.type_name.rsplit(".", 1)[-1]) for f in proto.field}


def _all_messages(descriptor: Any) -> dict[str, Any]:
    found = {descriptor.full_name: descriptor}
    for nested in descriptor.nested_types:
        found |= _all_messages(nested)
    return found


def test_every_message_matches_tritonclients_field_for_field() -> None:
    ours: dict[str, Any] = {}
    for name in messages.POOL.FindFileByName("grpc_predict_v2.proto").message_types_by_name:
        ours |= _all_messages(messages.POOL.FindMessageTypeByName(f"inference.{name}"))
    for full_name, descriptor in ours.items():
        theirs = triton_pb2.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
        assert _fields(descriptor).items() <= _fields(theirs).items(), full_name
    ours_methods = {m.name for m in messages.POOL.FindServiceByName("inference.GRPCInferenceService").methods}
    assert ours_methods == set(messages.METHODS)
    assert ours_methods <= {m.name for m in triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}


def test_the_compiled_descriptor_set_is_up_to_date() -> None:
    assert protocol_compile.main(["--check"]) == 0


# -- every RPC, through the Triton client -----------------------------------------------


async def test_health_and_metadata(make_harness: Make) -> None:
    async with grpc_harness(make_harness) as (_, client):
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("fake")
        assert await client.is_model_ready("fake", "fake-v1")
        server = await client.get_server_metadata(as_json=True)
        assert server["name"] == "switchyard-model-service" and "binary_tensor_data" in server["extensions"]
        meta = await client.get_model_metadata("fake", as_json=True)
        assert meta["versions"] == ["fake-v1"] and meta["platform"] == "pytorch"
        assert [i["name"] for i in meta["inputs"]] == ["text"]
        assert [o["name"] for o in meta["outputs"]] == ["label", "confidence", "probabilities"]
        assert meta["outputs"][2]["shape"] == ["-1", "2"]


async def test_infer_three_texts_all_outputs(make_harness: Make) -> None:
    async with grpc_harness(make_harness) as (_, client):
        result = await client.infer("fake", [text_input()], request_id="r-1")
    assert [x.decode() for x in result.as_numpy("label")] == ["positive", "negative", "positive"]
    confidence = result.as_numpy("confidence")
    assert confidence.dtype == np.float32 and np.allclose(confidence, [0.9, 0.8, 0.9])
    assert result.as_numpy("probabilities").shape == (3, 2)
    response = result.get_response(as_json=True)
    assert response["model_name"] == "fake" and response["model_version"] == "fake-v1" and response["id"] == "r-1"


async def test_infer_with_contents_and_chosen_outputs(make_harness: Make) -> None:
    """A request carrying its texts in ``contents`` (not raw bytes), asking for one output."""
    request = messages.ModelInferRequest(model_name="fake", model_version="fake-v1")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"good", b"bad"])
    request.outputs.add(name="label")
    async with make_harness() as h:
        port = free_port()
        server = create_server(h.service, "127.0.0.1", port)
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    "/inference.GRPCInferenceService/ModelInfer",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=messages.ModelInferResponse.FromString,
                )
                response = await call(request)
        finally:
            await server.stop(grace=None)
    assert [o.name for o in response.outputs] == ["label"]
    assert response.raw_output_contents[0] == b"\x08\x00\x00\x00positive\x08\x00\x00\x00negative"


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [("other", "", "NOT_FOUND"), ("fake", "fake-v9", "NOT_FOUND")],
)
async def test_unknown_model_or_version_is_not_found(
    make_harness: Make, model: str, version: str, expected: str
) -> None:
    async with grpc_harness(make_harness) as (_, client):
        with pytest.raises(InferenceServerException) as info:
            await client.infer(model, [text_input()], model_version=version)
        assert status(info.value) == f"StatusCode.{expected}"
        with pytest.raises(InferenceServerException):
            await client.get_model_metadata(model, version)
        assert await client.is_model_ready(model, version) is False


@pytest.mark.parametrize(
    ("texts", "code"),
    [([" "], "empty_text"), (["x" * 6000], "text_too_long"), (["t"] * 300, "too_many_texts")],
)
async def test_bad_texts_are_invalid_argument_with_their_code(make_harness: Make, texts: list[str], code: str) -> None:
    async with grpc_harness(make_harness) as (_, client):
        with pytest.raises(InferenceServerException) as info:
            await client.infer("fake", [text_input(texts)])
    assert status(info.value) == "StatusCode.INVALID_ARGUMENT"


async def test_error_code_travels_in_trailing_metadata(make_harness: Make) -> None:
    async with make_harness() as h:
        port = free_port()
        server = create_server(h.service, "127.0.0.1", port)
        await server.start()
        request = messages.ModelInferRequest(model_name="fake")
        request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b" ")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(
                    "/inference.GRPCInferenceService/ModelInfer",
                    request_serializer=lambda m: m.SerializeToString(),
                    response_deserializer=messages.ModelInferResponse.FromString,
                )
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call(request)
        finally:
            await server.stop(grace=None)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[0] (text)[0] is empty" in (info.value.details() or "")
    assert ("error-code", "empty_text") in tuple(info.value.trailing_metadata() or ())


async def test_not_loaded_yet_is_unavailable_and_not_ready(make_harness: Make) -> None:
    async with grpc_harness(make_harness, wait_ready=False, hold_load=True) as (_, client):
        assert await client.is_server_live()
        assert not await client.is_server_ready()
        with pytest.raises(InferenceServerException) as info:
            await client.infer("fake", [text_input()])
        assert status(info.value) == "StatusCode.UNAVAILABLE"


async def test_a_full_queue_is_resource_exhausted(make_harness: Make) -> None:
    async with grpc_harness(make_harness, max_batch_size=1, max_queue_size=1) as (h, client):
        h.handler.gate.clear()
        first = asyncio.ensure_future(client.infer("fake", [text_input(["good"])]))
        await asyncio.get_running_loop().run_in_executor(None, h.handler.entered.wait, 10)
        queued = asyncio.ensure_future(client.infer("fake", [text_input(["good"])]))
        await asyncio.sleep(0.2)  # let it take the one queue slot
        with pytest.raises(InferenceServerException) as info:
            await client.infer("fake", [text_input(["good"])])
        assert status(info.value) == "StatusCode.RESOURCE_EXHAUSTED"
        h.handler.gate.set()
        await asyncio.gather(first, queued)


async def test_the_callers_deadline_is_the_requests_deadline(make_harness: Make) -> None:
    async with grpc_harness(make_harness) as (h, client):
        h.handler.gate.clear()
        with pytest.raises(InferenceServerException) as info:
            await client.infer("fake", [text_input()], client_timeout=0.3)
        assert status(info.value) == "StatusCode.DEADLINE_EXCEEDED"


async def test_grpc_and_rest_calls_share_one_batch(make_harness: Make) -> None:
    async with grpc_harness(make_harness, max_delay_ms=200) as (h, client):
        h.handler.gate.clear()
        blocker = asyncio.ensure_future(h.client.post("/v1/predict", json={"text": "first"}))
        await asyncio.get_running_loop().run_in_executor(None, h.handler.entered.wait, 10)
        rest = asyncio.ensure_future(h.client.post("/v1/predict", json={"text": "over rest"}))
        over_grpc = asyncio.ensure_future(client.infer("fake", [text_input(["over grpc"])]))
        await asyncio.sleep(0.3)
        h.handler.gate.set()
        await asyncio.gather(blocker, rest, over_grpc)
    assert sorted(h.handler.calls[-1]) == ["over grpc", "over rest"]


async def test_draining_reports_not_ready_and_still_answers(make_harness: Make) -> None:
    async with grpc_harness(make_harness) as (h, client):
        h.service.begin_drain()
        assert not await client.is_server_ready()
        assert not await client.is_model_ready("fake")
        result = await client.infer("fake", [text_input()])
    assert result.as_numpy("label") is not None


# -- hostile requests ----------------------------------------------------------------


@pytest.fixture
def make_service(tmp_path: Path) -> ModelService:
    return ModelService(ServeConfig(model_dir=write_fake_version(tmp_path), worker="thread"))


_datatypes = st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "", "bytes", "\x00"])
_tensor = st.fixed_dictionaries(
    {
        "name": st.text(max_size=8),
        "datatype": _datatypes,
        "shape": st.lists(st.integers(-(2**40), 2**40), max_size=3),
        "contents": st.lists(st.binary(max_size=12), max_size=4),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tensors=st.lists(_tensor, max_size=3),
    raw=st.lists(st.binary(max_size=24), max_size=3),
    outputs=st.lists(st.text(max_size=8), max_size=2),
)
def test_hostile_infer_requests_get_a_client_error(
    tensors: list[dict[str, Any]], raw: list[bytes], outputs: list[str], make_service: ModelService
) -> None:
    request = messages.ModelInferRequest(model_name="fake")
    for t in tensors:
        tensor = request.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        tensor.contents.bytes_contents.extend(t["contents"])
    request.raw_input_contents.extend(raw)
    for name in outputs:
        request.outputs.add(name=name)
    refusal: ApiError | None = None
    try:
        body = infer_request(request)
        texts_of(make_service, body)
        requested_outputs(body)
    except ApiError as exc:
        refusal = exc
    assert refusal is None or refusal.status in (413, 422), refusal
