"""Every error a model service answers, as JSON ``{"error": <message>, "code": <name>}``
(the KServe v2 error shape plus a stable code), whatever produced it: our checks,
pydantic, routing, the batcher or the model. The serving layer's refusals carry no
HTTP status; this module is where they get one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_services.api import shadow_report
from model_services.api.request_state import latency_ms, service_of
from model_services.api.schemas import ErrorResponse
from model_services.serving.batcher import BatcherClosed, BatcherError, DeadlineExceeded, QueueFull
from model_services.serving.service import InjectedFault, NotReady


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (404, 413, 422, 500, 503, 504)
}


def _endpoint(path: str) -> str | None:
    """Metric label of a prediction endpoint; None for everything else."""
    if path == "/v1/predict":
        return "predict"
    if path == "/v1/predict/batch":
        return "predict_batch"
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        return "infer"
    return None


def _error(request: Request, status: int, code: str, message: str, **headers: str) -> JSONResponse:
    endpoint = _endpoint(request.url.path)
    if endpoint is not None:
        service_of(request).metrics.request(endpoint, code)
    if endpoint == "predict":
        shadow_report.report(request, label=None, confidence=None, latency_ms=latency_ms(request), error=code)
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
    if exc.status_code == 400 and message == _UNPARSABLE_BODY:
        # FastAPI's answer to a body json.loads cannot even decode (not UTF-8 text):
        # the same answer as for any other body that is not JSON.
        return _error(request, 422, "invalid_request", "request body is not valid JSON (not UTF-8 text)")
    return _error(request, exc.status_code, codes.get(exc.status_code, "http_error"), message)


_UNPARSABLE_BODY = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(BatcherError, _on_batcher_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
