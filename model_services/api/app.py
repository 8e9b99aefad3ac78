"""HTTP surface: v1 predict (single and batch), Open Inference Protocol v2,
health, metrics and the fault-injection admin endpoint; ``create_app`` mounts
the jobs routes only when the service has a Redis URL. Errors: ``errors.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from model_services import __version__
from model_services.api import binary, grpc_service, shadow_report, v2
from model_services.api.checks import check_texts, check_version, deadline_from
from model_services.api.errors import ERROR_RESPONSES, ApiError, install_error_handlers
from model_services.api.middleware import ServiceMiddleware
from model_services.api.near_miss import warning_header
from model_services.api.request_state import elapsed, latency_ms, service_of
from model_services.api.schemas import (
    BatchItem,
    BatchPredictRequest,
    BatchPredictResponse,
    FaultRequest,
    FaultResponse,
    InferRequest,
    InferResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ServerMetadata,
    inline_schema,
)
from model_services.serving.batcher import BatcherError
from model_services.serving.metrics import CONTENT_TYPE
from model_services.serving.service import ModelService, Prediction

if TYPE_CHECKING:
    from model_services.jobs.system import JobSystem


async def _predict(request: Request, texts: list[str]) -> list[Prediction]:
    service = service_of(request)
    deadline = deadline_from(request.headers, service)
    arrival = getattr(request.state, "arrival", None)
    if arrival is not None:
        arrival.done()  # from here the batcher sees the request in its queue
    try:
        return await service.predict(texts, deadline=deadline)
    except (BatcherError, ApiError):
        raise
    except Exception as exc:
        raise ApiError(500, "inference_error", f"inference failed: {exc}") from exc


router = APIRouter()


def warn_near_misses(service: ModelService, body: BaseModel, request: Request, response: Response) -> None:
    """A misspelt pin field or header went unnoticed by the router: say so in the answer."""
    warnings = service.near_misses.warnings((body.model_extra or {}).keys(), request.headers.keys())
    if warnings:
        response.headers["Warning"] = warning_header(warnings)


@router.post("/v1/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
async def predict(body: PredictRequest, request: Request, response: Response) -> PredictResponse:
    service = service_of(request)
    warn_near_misses(service, body, request, response)
    check_version(service, body.model_version)
    check_texts(service, [body.text], field="text")
    (pred,) = await _predict(request, [body.text])
    service.metrics.request("predict", "ok", elapsed(request))
    shadow_report.report(
        request, label=pred.label, confidence=pred.confidence, latency_ms=latency_ms(request), text=body.text
    )
    return PredictResponse(
        label=pred.label,
        confidence=pred.confidence,
        model_version=service.version,
        latency_ms=latency_ms(request),
    )


@router.post("/v1/predict/batch", response_model=BatchPredictResponse, responses=ERROR_RESPONSES)
async def predict_batch(body: BatchPredictRequest, request: Request, response: Response) -> BatchPredictResponse:
    service = service_of(request)
    warn_near_misses(service, body, request, response)
    check_version(service, body.model_version)
    check_texts(service, body.texts, field="texts")
    preds = await _predict(request, body.texts)
    service.metrics.request("predict_batch", "ok", elapsed(request))
    return BatchPredictResponse(
        predictions=[BatchItem(label=p.label, confidence=p.confidence) for p in preds],
        model_version=service.version,
        latency_ms=latency_ms(request),
    )


@router.get("/v2")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="switchyard-model-service", version=__version__, extensions=[binary.EXTENSION])


@router.get("/v2/health/live")
async def live(request: Request) -> JSONResponse:
    service = service_of(request)
    reason = service.not_live_reason
    if reason is None:
        return JSONResponse({"live": True})
    return JSONResponse({"live": False, "error": reason}, status_code=503)


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    service = service_of(request)
    body: dict[str, Any] = {"ready": service.ready, "state": service.state.value}
    if service.failure or service.not_live_reason:
        body["error"] = service.failure or service.not_live_reason
    return JSONResponse(body, status_code=200 if service.ready else 503)


@router.get("/v2/models/{name}", responses=ERROR_RESPONSES)
@router.get("/v2/models/{name}/versions/{version}", responses=ERROR_RESPONSES)
async def model_metadata(request: Request, name: str, version: str | None = None) -> ModelMetadata:
    service = service_of(request)
    v2.check_model(service, name, version)
    return v2.metadata(service)


@router.get("/v2/models/{name}/ready", responses=ERROR_RESPONSES)
@router.get("/v2/models/{name}/versions/{version}/ready", responses=ERROR_RESPONSES)
async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    service = service_of(request)
    v2.check_model(service, name, version)
    body = {"name": service.name, "version": service.version, "ready": service.ready}
    # The spec asks for "a non-200" when not ready; 503 like /v2/health/ready,
    # so probes and load balancers read both the same way.
    return JSONResponse(body, status_code=200 if service.ready else 503)


async def _infer_request(request: Request) -> tuple[InferRequest, bool]:
    """The request, from plain JSON or from the binary extension's JSON header and data."""
    raw = await request.body()
    length = binary.header_length(request.headers.get(binary.HEADER), len(raw))
    head = raw if length is None else raw[:length]
    if not head:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        body = InferRequest.model_validate_json(head)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    if length is not None:
        binary.attach_binary_inputs(body, raw[length:])
    return body, length is not None


# The body is read by hand (it may be binary after its JSON header), so its schema is given here.
_INFER_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(InferRequest)}}}
}


@router.post(
    "/v2/models/{name}/infer", response_model=InferResponse, responses=ERROR_RESPONSES, openapi_extra=_INFER_BODY
)
@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def infer(request: Request, name: str, version: str | None = None) -> Response:
    body, _ = await _infer_request(request)
    service = service_of(request)
    v2.check_model(service, name, version)
    texts = v2.texts_of(service, body)
    wanted = v2.requested_outputs(body)
    preds = await _predict(request, texts)
    service.metrics.request("infer", "ok", elapsed(request))
    shadow_report.report_predictions(request, texts, preds, latency_ms(request))
    chosen = v2.outputs(service, preds, wanted)
    as_binary = binary.binary_outputs(body, [o.name for o in chosen])
    shown, data = binary.split_outputs(chosen, as_binary)
    answer: dict[str, Any] = {"model_name": service.name, "model_version": service.version}
    if body.id is not None:
        answer["id"] = body.id
    answer["outputs"] = shown
    header = json.dumps(answer, separators=(",", ":")).encode()
    if not as_binary:
        return Response(header, media_type="application/json")
    return Response(
        header + data,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    jobs: JobSystem | None = request.app.state.jobs
    if jobs is not None:
        await jobs.refresh_metrics()
    return Response(service_of(request).metrics.render(), media_type=CONTENT_TYPE)


# Without a match set, the answer keeps its original two fields.
@router.get("/admin/fault", response_model_exclude_none=True)
async def get_fault(request: Request) -> FaultResponse:
    fault = service_of(request).fault
    return FaultResponse(error_rate=fault.error_rate, latency_ms=fault.latency_ms, match=fault.match)


@router.post("/admin/fault", response_model_exclude_none=True)
async def set_fault(body: FaultRequest, request: Request) -> FaultResponse:
    """Fault injection for rollback drills: answer 500 to this share of predictions
    and/or add latency to each. ``{"error_rate": 0}`` turns it off."""
    fault = service_of(request).fault
    fault.error_rate, fault.latency_ms, fault.match = body.error_rate, body.latency_ms, body.match
    return FaultResponse(error_rate=fault.error_rate, latency_ms=fault.latency_ms, match=fault.match)


# Without --redis-url the jobs package (and redis) is never imported; its paths still
# answer with what to do rather than a bare 404.
_jobs_disabled = APIRouter(include_in_schema=False)


@_jobs_disabled.api_route("/v1/jobs", methods=["GET", "POST", "DELETE"])
@_jobs_disabled.api_route("/v1/jobs/{rest:path}", methods=["GET", "POST", "DELETE"])
@_jobs_disabled.api_route("/admin/jobs/{rest:path}", methods=["GET", "POST", "DELETE"])
async def jobs_disabled() -> None:
    raise ApiError(
        503,
        "jobs_disabled",
        "async jobs are not enabled on this service; start it with --redis-url to enable /v1/jobs",
    )


def create_app(service: ModelService) -> FastAPI:
    jobs: JobSystem | None = None
    if service.config.redis_url is not None:
        from model_services.jobs.api import router as jobs_router
        from model_services.jobs.system import JobSystem

        jobs = JobSystem(service, service.config.redis_url, service.config.jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        reporter = app.state.shadow_reporter
        grpc_server = None if service.config.grpc_port is None else await grpc_service.serve(service, reporter)
        if app.state.shadow_reporter is not None:
            app.state.shadow_reporter.start()
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            # gRPC calls in flight finish first (their deadlines bound the wait), then
            # jobs: both still need the batcher, which service.stop() empties last.
            if grpc_server is not None:
                await grpc_server.stop(grace=service.config.request_timeout_ms / 1000.0)
            if jobs is not None:
                await jobs.stop()
            await service.stop()
            if app.state.shadow_reporter is not None:
                await app.state.shadow_reporter.stop()

    app = FastAPI(
        title=f"Switchyard model service: {service.name} {service.version}",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.shadow_reporter = shadow_report.reporter_for(
        service.config.report_url, model=service.name, version=service.version, inputs=service.config.report_inputs
    )
    app.state.jobs = jobs
    app.include_router(router)
    app.include_router(_jobs_disabled if jobs is None else jobs_router)
    install_error_handlers(app)
    app.add_middleware(ServiceMiddleware, service=service)
    return app
