"""Raw ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware, which costs
a task and a memory stream per request): response headers, request ids, the
body size limit, JSON bodies whatever their Content-Type, and arrival
announcements for the batcher."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from model_services.serving.service import ModelService

REQUEST_ID = b"x-request-id"
MODEL_VERSION = b"x-model-version"
CONTENT_TYPE = b"content-type"


def _sane_request_id(raw: bytes) -> str | None:
    # Echo ids that are safe to log and to put back in a header; replace others.
    if 0 < len(raw) <= 200 and all(0x21 <= b <= 0x7E for b in raw):
        return raw.decode("ascii")
    return None


def _is_prediction(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] == "POST" and (path.startswith("/v1/predict") or path.endswith("/infer"))


def _takes_json(scope: Scope) -> bool:
    """Inference calls: their body is JSON whatever the client says it is."""
    return _is_prediction(scope) or (scope["method"] == "POST" and scope["path"] == "/v1/jobs")


def _is_json_type(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _as_json(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Headers with ``content-type: application/json`` in place of a missing or other one.

    The Triton and KServe clients send JSON with no Content-Type, and curl's ``-d``
    labels it a form; Triton and KServe parse the body as JSON regardless, and so do
    we. A body that is not JSON still gets a 422 that says so.
    """
    if any(key == CONTENT_TYPE and _is_json_type(value) for key, value in headers):
        return headers
    return [*(h for h in headers if h[0] != CONTENT_TYPE), (CONTENT_TYPE, b"application/json")]


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, service: ModelService) -> None:
        self.app = app
        self.service = service
        self._version = service.version.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: str | None = None
        length: int | None = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID:
                request_id = _sane_request_id(value)
            elif key == b"content-length" and value.isdigit():
                length = int(value)
        request_id = request_id or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = time.perf_counter()
        extra = [(MODEL_VERSION, self._version), (REQUEST_ID, request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        limit = self.service.config.max_body_bytes
        if length is not None and length > limit:
            await _json_error(
                send_with_headers,
                413,
                "body_too_large",
                f"request body is {length} bytes; the limit is {limit}",
            )
            return

        if _takes_json(scope):
            scope["headers"] = _as_json(scope["headers"])
        if not _is_prediction(scope):
            await self.app(scope, receive, send_with_headers)
            return
        arrival = self.service.arrival()
        state["arrival"] = arrival
        in_progress = self.service.metrics.in_progress
        in_progress.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            in_progress.dec()
            if arrival is not None:
                arrival.done()


async def _json_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": message, "code": code}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
