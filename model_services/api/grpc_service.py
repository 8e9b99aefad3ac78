"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), on its own port.

It answers ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and
ModelInfer with grpcio's asyncio server on the HTTP server's event loop, so its
calls join the same dynamic batches as REST ones and meet the same checks
(``v2.py``), deadlines, overload and drain. Refusals map to gRPC status codes:
overload is RESOURCE_EXHAUSTED, not ready or closing UNAVAILABLE, a missed
deadline DEADLINE_EXCEEDED, a bad request INVALID_ARGUMENT, an unknown model or
version NOT_FOUND. The error's stable code (``queue_full``, ``text_too_long``...)
travels in the ``error-code`` trailing metadata, as REST answers carry it in
their JSON.

Tensors come in ``contents`` or ``raw_input_contents``; outputs go back in
``raw_output_contents``, as Triton answers, which every client decodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from model_services import __version__
from model_services.api import binary, v2
from model_services.api.checks import deadline_from
from model_services.api.errors import ApiError
from model_services.api.schemas import InferInput, InferRequest, RequestedOutput
from model_services.api.shadow_report import ShadowReporter, is_shadow
from model_services.protocol import SERVICE, messages
from model_services.serving.batcher import BatcherClosed, BatcherError, DeadlineExceeded, QueueFull
from model_services.serving.service import ModelService, NotReady

log = logging.getLogger("model_services")

_HTTP_TO_GRPC = {
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

_BATCHER_TO_GRPC: dict[type[BatcherError], grpc.StatusCode] = {
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BatcherClosed: grpc.StatusCode.UNAVAILABLE,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(exc: ApiError | BatcherError) -> grpc.StatusCode:
    if isinstance(exc, ApiError):
        return _HTTP_TO_GRPC.get(exc.status, grpc.StatusCode.UNKNOWN)
    return next((_BATCHER_TO_GRPC[c] for c in type(exc).__mro__ if c in _BATCHER_TO_GRPC), grpc.StatusCode.INTERNAL)


def _version(requested: str) -> str | None:
    # proto3 strings have no "absent": an empty version means "whichever is served".
    return requested or None


def infer_request(request: Any) -> InferRequest:
    """The gRPC request as the REST form, so both take one path through the checks."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ApiError(
            422,
            "invalid_input",
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input",
        )
    inputs = []
    for i, tensor in enumerate(request.inputs):
        where = f"inputs[{tensor.name}]"
        data: list[Any] = []
        if tensor.datatype == "BYTES":
            if raw:
                data = binary.decode("BYTES", raw[i], where)
            else:
                try:
                    data = [b.decode() for b in tensor.contents.bytes_contents]
                except UnicodeDecodeError:
                    raise ApiError(422, "invalid_input", f"{where}: BYTES elements must be UTF-8 text") from None
        inputs.append(InferInput(name=tensor.name, shape=list(tensor.shape), datatype=tensor.datatype, data=data))
    if not inputs:
        raise ApiError(422, "invalid_input", "expected exactly one input: a BYTES tensor of texts")
    return InferRequest(
        id=request.id or None,
        inputs=inputs,
        outputs=[RequestedOutput(name=o.name) for o in request.outputs] or None,
    )


class InferenceServicer:
    """The RPCs, each taking the request message and the call's context."""

    def __init__(self, service: ModelService, reporter: ShadowReporter | None = None) -> None:
        self.service = service
        self.reporter = reporter  # shadow comparison (``--report-url``)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return messages.ServerLiveResponse(live=self.service.not_live_reason is None)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return messages.ServerReadyResponse(ready=self.service.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # As Triton answers: a model or version this service does not serve is not
        # ready, not an error (tritonclient's is_model_ready then says False, as over REST).
        try:
            v2.check_model(self.service, request.name, _version(request.version))
        except ApiError:
            return messages.ModelReadyResponse(ready=False)
        return messages.ModelReadyResponse(ready=self.service.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return messages.ServerMetadataResponse(
            name="switchyard-model-service", version=__version__, extensions=[binary.EXTENSION]
        )

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        v2.check_model(self.service, request.name, _version(request.version))
        meta = v2.metadata(self.service)
        response = messages.ModelMetadataResponse(name=meta.name, versions=meta.versions, platform=meta.platform)
        for tensors, into in ((meta.inputs, response.inputs), (meta.outputs, response.outputs)):
            for t in tensors:
                into.add(name=t.name, datatype=t.datatype, shape=t.shape)
        return response

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        service = self.service
        started = time.perf_counter()
        remaining = context.time_remaining()
        headers = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        # The caller's gRPC deadline (Envoy passes grpc-timeout on) wins over headers.
        deadline = time.monotonic() + remaining if remaining is not None else deadline_from(headers, service)
        v2.check_model(service, request.model_name, _version(request.model_version))
        body = infer_request(request)
        texts = v2.texts_of(service, body)
        wanted = v2.requested_outputs(body)
        preds = await service.predict(texts, deadline=deadline)
        if self.reporter is not None and "x-request-id" in headers:  # only Envoy's calls can be paired
            latency = (time.perf_counter() - started) * 1000.0
            self.reporter.record_predictions(headers["x-request-id"], is_shadow(headers), texts, preds, latency)
        response = messages.ModelInferResponse(model_name=service.name, model_version=service.version, id=body.id)
        for output in v2.outputs(service, preds, wanted):
            response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
            response.raw_output_contents.append(binary.encode(output))
        return response


Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


@contextmanager
def _metered(service: ModelService, method: str) -> Iterator[None]:
    if method != "ModelInfer":
        yield
        return
    started = time.perf_counter()
    service.metrics.in_progress.inc()
    try:
        yield
        service.metrics.request("grpc_infer", "ok", time.perf_counter() - started)
    except (ApiError, BatcherError) as exc:
        service.metrics.request("grpc_infer", getattr(exc, "code", "error"))
        raise
    finally:
        service.metrics.in_progress.dec()


def _answering(service: ModelService, method: str, handler: Handler) -> Handler:
    """The handler with refusals turned into gRPC statuses (and any other failure into INTERNAL)."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            with _metered(service, method):
                return await handler(request, context)
        except (ApiError, BatcherError) as exc:
            context.set_trailing_metadata((("error-code", exc.code),))
            await context.abort(status_of(exc), str(exc))
        except Exception as exc:  # the model itself failed: say so, as REST's 500 does
            context.set_trailing_metadata((("error-code", "inference_error"),))
            await context.abort(grpc.StatusCode.INTERNAL, f"inference failed: {exc}")

    return call


class GrpcBindError(RuntimeError):
    pass


async def serve(service: ModelService, reporter: ShadowReporter | None = None) -> grpc.aio.Server:
    """Start answering gRPC on the service's host and ``grpc_port``."""
    config = service.config
    assert config.grpc_port is not None
    server = create_server(service, config.host, config.grpc_port, reporter)
    await server.start()
    log.info("gRPC Open Inference Protocol on %s:%d", config.host, config.grpc_port)
    return server


def create_server(
    service: ModelService, host: str, port: int, reporter: ShadowReporter | None = None
) -> grpc.aio.Server:
    """A gRPC server for ``service`` bound to ``host:port``, not yet started."""
    limit = service.config.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            # A second service on a busy port must fail, not share it.
            ("grpc.so_reuseport", 0),
        ]
    )
    servicer = InferenceServicer(service, reporter)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _answering(service, name, getattr(servicer, name)),
            request_deserializer=request_class.FromString,
            response_serializer=response_class.SerializeToString,
        )
        for name, (request_class, response_class) in messages.METHODS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    try:
        server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise GrpcBindError(f"cannot listen for gRPC on {host}:{port}: {exc}") from None
    return server
