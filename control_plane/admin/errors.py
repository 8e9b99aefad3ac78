"""Every error is JSON with a message; no input makes the API answer 500.

``{"status": 422, "message": "what is wrong", "errors": ["detail", ...]}``.
Mutating calls rejected before their handler runs (a reader's token, bad JSON)
are audited here, so the audit log holds every attempt by a known caller, not
only the valid ones. Calls without a valid token (401) are only counted
(``switchyard_admin_unauthorized_total``): anyone who can reach the port can
send them, and auditing each would let them grow the audit log without bound.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from control_plane.admin.auth import Identity
from control_plane.admin.context import mutation_of
from control_plane.operations.changes import ChangeError, Conflict, Invalid, NotFound, Stale

log = logging.getLogger(__name__)

# Domain errors carry no HTTP status; this is where they get one.
_STATUS: dict[type[ChangeError], int] = {NotFound: 404, Conflict: 409, Invalid: 422, Stale: 412}
# And the other way, for calls refused here before a handler ran: how the audit log names them.
_KIND = {400: "malformed", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 422: "invalid"}


def http_status(exc: ChangeError) -> int:
    return next((_STATUS[cls] for cls in type(exc).__mro__ if cls in _STATUS), 409)


def _identify(request: Request) -> Identity | None:
    found: Identity | None = getattr(request.state, "identity", None)
    admin = getattr(request.app.state, "admin", None)
    if found is None and admin is not None:
        found = admin.authenticator.identify(request.headers.get("authorization"))
    return found


class ErrorBody(BaseModel):
    """What every error answer of the admin API looks like."""

    status: int = Field(description="The HTTP status, repeated")
    message: str = Field(description="What is wrong, in a sentence")
    errors: list[str] = Field(description="Details, e.g. one `file:line: field: message` per problem")


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every operation: the OpenAPI document says what clients really get
# (and FastAPI's default 422 schema, which we never send, is left out).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("Malformed JSON in the request body"),
    401: _documented("Missing or invalid bearer token"),
    403: _documented("The token's role may not do this (readers cannot change traffic)"),
    404: _documented("No such model, version or rollout"),
    409: _documented("The change conflicts with the current state (e.g. the policy files on disk are invalid)"),
    412: _documented("If-Match is stale: the model changed since it was read"),
    422: _documented("The request is well-formed but invalid; `errors` says where"),
}


def error_body(status: int, message: str, errors: list[str] | None = None) -> dict[str, Any]:
    return {"status": status, "message": message, "errors": errors or []}


def _respond(
    request: Request, status: int, message: str, errors: list[str] | None = None, headers: Any = None
) -> JSONResponse:
    mutation = mutation_of(request)
    admin = getattr(request.app.state, "admin", None)
    if status == 401 and admin is not None:
        admin.metrics.unauthorized.inc()
    elif mutation is not None and admin is not None:
        who = _identify(request)
        action, model = mutation
        admin.audit.refused(
            who=who.name if who else "anonymous",
            action=action,
            model=model,
            error=_KIND.get(status, "refused"),
            reason=message,
        )
        admin.metrics.changes.labels(action, "rejected").inc()
    return JSONResponse(error_body(status, message, errors), status_code=status, headers=headers)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods the API documents for this path (its OpenAPI document is the route table)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in operations)
    return sorted(methods)


def _field(loc: Any) -> str:
    return ".".join(str(part) for part in loc) or "request"


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path;
            # a path served by several routes (PUT and DELETE .../shadow) allows them all.
            allowed = _allowed_methods(app, request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            return _respond(
                request, 405, f"{request.method} is not allowed here; use {' or '.join(allowed)}", headers=headers
            )
        return _respond(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI decodes a JSON body before it runs the auth dependency: check the token
        # here too, so a caller without one learns nothing but 401 (and a reader gets 403).
        who = _identify(request)
        if who is None:
            return _respond(request, 401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        if mutation_of(request) is not None and not who.may("operator"):
            return _respond(request, 403, f"{who.name!r} has the reader role; changing traffic needs an operator token")
        problems = list(exc.errors())
        if any(p.get("type") == "json_invalid" for p in problems):
            detail = next(p for p in problems if p.get("type") == "json_invalid")
            where = detail.get("ctx", {}).get("error", "")
            return _respond(request, 400, f"malformed JSON in the request body: {where}".rstrip(": "))
        errors = [f"{_field(p.get('loc', ()))}: {p.get('msg', 'invalid')}" for p in problems]
        return _respond(request, 422, "invalid request: " + "; ".join(errors), errors)

    @app.exception_handler(ChangeError)
    async def change_error(request: Request, exc: ChangeError) -> JSONResponse:
        status = http_status(exc)
        return JSONResponse(error_body(status, exc.message, exc.errors), status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug
        log.exception("admin API error on %s %s", request.method, request.url.path)
        return _respond(request, 500, f"internal error ({type(exc).__name__}); see the control plane's log")
