"""HTTP surface: v1 predict (single and batch), Open Inference Protocol v2,
health, metrics and the fault-injection admin endpoint.

Every error is JSON ``{"error": <message>, "code": <name>}`` (the KServe v2 error
shape plus a stable code), whatever produced it: our checks, pydantic, routing,
the batcher or the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_services import __version__, shadow_report
from model_services.batcher import BatcherClosed, BatcherError, DeadlineExceeded, QueueFull
from model_services.metrics import CONTENT_TYPE
from model_services.middleware import ServiceMiddleware
from model_services.near_miss import warning_header
from model_services.schemas import (
    BatchItem,
    BatchPredictRequest,
    BatchPredictResponse,
    ErrorResponse,
    FaultRequest,
    FaultResponse,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    ServerMetadata,
    TensorMetadata,
)
from model_services.service import InjectedFault, ModelService, NotReady, Prediction


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (404, 413, 422, 500, 503, 504)
}


def _service(request: Request) -> ModelService:
    service: ModelService = request.app.state.service
    return service


def _endpoint(path: str) -> str | None:
    """Metric label of a prediction endpoint; None for everything else."""
    if path == "/v1/predict":
        return "predict"
    if path == "/v1/predict/batch":
        return "predict_batch"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return None


def _elapsed(request: Request) -> float:
    started: float = request.state.started
    return time.perf_counter() - started


def _latency_ms(request: Request) -> float:
    return round(_elapsed(request) * 1000.0, 2)


def _deadline(request: Request, service: ModelService) -> float:
    timeout_ms = service.config.request_timeout_ms
    # Our own header wins; Envoy announces its route timeout in the other one.
    for header in ("x-request-timeout-ms", "x-envoy-expected-rq-timeout-ms"):
        raw = request.headers.get(header)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (value > 0 and math.isfinite(value)):
            raise ApiError(422, "invalid_header", f"{header} must be a positive number of ms")
        timeout_ms = value
        break
    return time.monotonic() + timeout_ms / 1000.0


def _check_version(service: ModelService, requested: str | None) -> None:
    if requested is not None and requested != service.version:
        raise ApiError(
            404,
            "version_not_served",
            f"this service serves {service.version!r}, not {requested!r}; "
            "send the request through the router or to that version's service",
        )


def _check_texts(service: ModelService, texts: Sequence[str], *, field: str) -> None:
    if not texts:
        raise ApiError(422, "empty_input", f"{field} must contain at least one text")
    if len(texts) > service.config.max_batch_texts:
        raise ApiError(
            413,
            "too_many_texts",
            f"{field} has {len(texts)} texts; the limit is {service.config.max_batch_texts}",
        )
    limit = service.config.max_text_chars
    for i, text in enumerate(texts):
        where = field if len(texts) == 1 and field == "text" else f"{field}[{i}]"
        if not text.strip():
            raise ApiError(422, "empty_text", f"{where} is empty; send some text to classify")
        if len(text) > limit:
            raise ApiError(
                413,
                "text_too_long",
                f"{where} has {len(text)} characters; the limit is {limit}",
            )


async def _predict(request: Request, texts: list[str]) -> list[Prediction]:
    service = _service(request)
    deadline = _deadline(request, service)
    arrival = getattr(request.state, "arrival", None)
    if arrival is not None:
        arrival.done()  # from here the batcher sees the request in its queue
    try:
        return await service.predict(texts, deadline=deadline)
    except (BatcherError, ApiError):
        raise
    except Exception as exc:
        raise ApiError(500, "inference_error", f"inference failed: {exc}") from exc


def _model_or_404(service: ModelService, name: str, version: str | None) -> None:
    if name != service.name:
        raise ApiError(
            404,
            "model_not_found",
            f"unknown model {name!r}; this service serves {service.name!r}",
        )
    if version is not None:
        _check_version(service, version)


router = APIRouter()


def warn_near_misses(service: ModelService, body: BaseModel, request: Request, response: Response) -> None:
    """A misspelt pin field or header went unnoticed by the router: say so in the answer."""
    warnings = service.near_misses.warnings((body.model_extra or {}).keys(), request.headers.keys())
    if warnings:
        response.headers["Warning"] = warning_header(warnings)


@router.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS)
async def predict(body: PredictRequest, request: Request, response: Response) -> PredictResponse:
    service = _service(request)
    warn_near_misses(service, body, request, response)
    _check_version(service, body.model_version)
    _check_texts(service, [body.text], field="text")
    (pred,) = await _predict(request, [body.text])
    service.metrics.request("predict", "ok", _elapsed(request))
    shadow_report.report(
        request, label=pred.label, confidence=pred.confidence, latency_ms=_latency_ms(request), text=body.text
    )
    return PredictResponse(
        label=pred.label,
        confidence=pred.confidence,
        model_version=service.version,
        latency_ms=_latency_ms(request),
    )


@router.post("/v1/predict/batch", response_model=BatchPredictResponse, responses=_ERRORS)
async def predict_batch(body: BatchPredictRequest, request: Request, response: Response) -> BatchPredictResponse:
    service = _service(request)
    warn_near_misses(service, body, request, response)
    _check_version(service, body.model_version)
    _check_texts(service, body.texts, field="texts")
    preds = await _predict(request, body.texts)
    service.metrics.request("predict_batch", "ok", _elapsed(request))
    return BatchPredictResponse(
        predictions=[BatchItem(label=p.label, confidence=p.confidence) for p in preds],
        model_version=service.version,
        latency_ms=_latency_ms(request),
    )


@router.get("/v2")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="switchyard-model-service", version=__version__, extensions=[])


@router.get("/v2/health/live")
async def live(request: Request) -> JSONResponse:
    service = _service(request)
    reason = service.not_live_reason
    if reason is None:
        return JSONResponse({"live": True})
    return JSONResponse({"live": False, "error": reason}, status_code=503)


@router.get("/v2/health/ready")
async def ready(request: Request) -> JSONResponse:
    service = _service(request)
    body: dict[str, Any] = {"ready": service.ready, "state": service.state.value}
    if service.failure or service.not_live_reason:
        body["error"] = service.failure or service.not_live_reason
    return JSONResponse(body, status_code=200 if service.ready else 503)


def _metadata(service: ModelService) -> ModelMetadata:
    n = -1
    return ModelMetadata(
        name=service.name,
        versions=[service.version],
        platform="pytorch",
        inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[n])],
        outputs=[
            TensorMetadata(name="label", datatype="BYTES", shape=[n]),
            TensorMetadata(name="confidence", datatype="FP32", shape=[n]),
            TensorMetadata(name="probabilities", datatype="FP32", shape=[n, len(service.labels)]),
        ],
        parameters={
            "labels": list(service.labels),
            "architecture": service.architecture,
            "max_batch_size": service.config.max_batch_size,
        },
    )


@router.get("/v2/models/{name}", responses=_ERRORS)
@router.get("/v2/models/{name}/versions/{version}", responses=_ERRORS)
async def model_metadata(request: Request, name: str, version: str | None = None) -> ModelMetadata:
    service = _service(request)
    _model_or_404(service, name, version)
    return _metadata(service)


@router.get("/v2/models/{name}/ready", responses=_ERRORS)
@router.get("/v2/models/{name}/versions/{version}/ready", responses=_ERRORS)
async def model_ready(request: Request, name: str, version: str | None = None) -> JSONResponse:
    service = _service(request)
    _model_or_404(service, name, version)
    body = {"name": service.name, "version": service.version, "ready": service.ready}
    # The spec asks for "a non-200" when not ready; 503 like /v2/health/ready,
    # so probes and load balancers read both the same way.
    return JSONResponse(body, status_code=200 if service.ready else 503)


def _texts_from(body: InferRequest) -> list[str]:
    if len(body.inputs) != 1:
        raise ApiError(422, "invalid_input", "expected exactly one input: a BYTES tensor of texts")
    tensor = body.inputs[0]
    if tensor.datatype != "BYTES":
        raise ApiError(422, "invalid_input", f"input {tensor.name!r} must be BYTES, not {tensor.datatype}")
    # The protocol allows nested (row-major) data; texts are one string per element.
    flat: list[Any] = []
    for item in tensor.data:
        flat.extend(item if isinstance(item, list) else [item])
    if not all(isinstance(x, str) for x in flat):
        raise ApiError(422, "invalid_input", f"input {tensor.name!r} data must be strings")
    if any(d < 0 for d in tensor.shape) or math.prod(tensor.shape) != len(flat):
        raise ApiError(
            422,
            "invalid_input",
            f"input {tensor.name!r} has shape {tensor.shape} but {len(flat)} elements",
        )
    return flat


@router.post("/v2/models/{name}/infer", response_model=InferResponse, responses=_ERRORS)
@router.post("/v2/models/{name}/versions/{version}/infer", response_model=InferResponse, responses=_ERRORS)
async def infer(body: InferRequest, request: Request, name: str, version: str | None = None) -> InferResponse:
    service = _service(request)
    _model_or_404(service, name, version)
    texts = _texts_from(body)
    _check_texts(service, texts, field=f"inputs[0] ({body.inputs[0].name})")
    wanted = [o.name for o in body.outputs] if body.outputs else None
    known = ("label", "confidence", "probabilities")
    unknown = sorted(set(wanted or ()) - set(known))
    if unknown:
        raise ApiError(422, "invalid_output", f"unknown outputs {unknown}; choose from {known}")
    preds = await _predict(request, texts)
    n, k = len(preds), len(service.labels)
    outputs = {
        "label": InferOutput(name="label", shape=[n], datatype="BYTES", data=[p.label for p in preds]),
        "confidence": InferOutput(name="confidence", shape=[n], datatype="FP32", data=[p.confidence for p in preds]),
        "probabilities": InferOutput(
            name="probabilities",
            shape=[n, k],
            datatype="FP32",
            data=[x for p in preds for x in p.probabilities],
        ),
    }
    service.metrics.request("infer", "ok", _elapsed(request))
    return InferResponse(
        model_name=service.name,
        model_version=service.version,
        id=body.id,
        outputs=[outputs[o] for o in (wanted or known)],
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    jobs = getattr(request.app.state, "jobs", None)
    if jobs is not None:
        await jobs.refresh_metrics()
    return Response(_service(request).metrics.render(), media_type=CONTENT_TYPE)


# Without a match set, the answer keeps its original two fields.
@router.get("/admin/fault", response_model_exclude_none=True)
async def get_fault(request: Request) -> FaultResponse:
    fault = _service(request).fault
    return FaultResponse(error_rate=fault.error_rate, latency_ms=fault.latency_ms, match=fault.match)


@router.post("/admin/fault", response_model_exclude_none=True)
async def set_fault(body: FaultRequest, request: Request) -> FaultResponse:
    """Fault injection for rollback drills: answer 500 to this share of predictions
    and/or add latency to each. ``{"error_rate": 0}`` turns it off."""
    fault = _service(request).fault
    fault.error_rate, fault.latency_ms, fault.match = body.error_rate, body.latency_ms, body.match
    return FaultResponse(error_rate=fault.error_rate, latency_ms=fault.latency_ms, match=fault.match)


# -- errors -------------------------------------------------------------------


def _error(request: Request, status: int, code: str, message: str, **headers: str) -> JSONResponse:
    endpoint = _endpoint(request.url.path)
    if endpoint is not None:
        _service(request).metrics.request(endpoint, code)
    if endpoint == "predict":
        shadow_report.report(request, label=None, confidence=None, latency_ms=_latency_ms(request), error=code)
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def _describe(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            parts.append(f"request body is not valid JSON ({err.get('ctx', {}).get('error', '')})")
        elif kind == "missing" and not loc:
            parts.append("request body is missing; send a JSON object")
        elif kind in ("model_attributes_type", "dict_type") and not loc:
            parts.append("request body must be a JSON object")
        else:
            parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(request, exc.status, exc.code, str(exc))


# The serving layer's refusals carry no HTTP status; here is where they get one.
_BATCHER_STATUS: dict[type[BatcherError], int] = {
    QueueFull: 503,
    BatcherClosed: 503,
    NotReady: 503,
    DeadlineExceeded: 504,
    InjectedFault: 500,
}


def batcher_status(exc: BatcherError) -> int:
    return next((_BATCHER_STATUS[cls] for cls in type(exc).__mro__ if cls in _BATCHER_STATUS), 500)


async def _on_batcher_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BatcherError)
    headers = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, NotReady):
        headers["Retry-After"] = "1"
    return _error(request, batcher_status(exc), exc.code, str(exc), **headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _error(request, 422, "invalid_request", _describe(exc.errors()))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}"
    return _error(request, exc.status_code, codes.get(exc.status_code, "http_error"), message)


def create_app(service: ModelService) -> FastAPI:
    # Imported here: the jobs package builds on this module's helpers.
    from model_services.jobs.api import router as jobs_router

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if app.state.shadow_reporter is not None:
            app.state.shadow_reporter.start()
        jobs = None
        if service.config.redis_url is not None:
            from model_services.jobs.system import JobSystem

            jobs = JobSystem(service, service.config.redis_url, service.config.jobs)
            jobs.start()
        app.state.jobs = jobs
        try:
            yield
        finally:
            # Jobs first: in-flight ones still need the batcher to finish and be stored.
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
    app.state.jobs = None
    app.include_router(router)
    app.include_router(jobs_router)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(BatcherError, _on_batcher_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_middleware(ServiceMiddleware, service=service)
    return app
