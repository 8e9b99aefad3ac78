"""What the admin routers share: the control plane's parts, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.admin.auth import Authenticator, Identity
from control_plane.admin.metrics import Metrics
from control_plane.engine.controller import Controller
from control_plane.engine.health import HealthProber
from control_plane.engine.tasks import BackgroundTasks
from control_plane.operations.audit import AuditLog
from control_plane.operations.changes import PolicyChanges
from control_plane.rollout.runner import RolloutRunner
from control_plane.shadow.collector import ShadowCollector
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry


@dataclass(frozen=True, slots=True)
class AdminContext:
    controller: Controller
    cache: SnapshotCache
    nodes: NodeRegistry
    prober: HealthProber
    changes: PolicyChanges
    audit: AuditLog
    authenticator: Authenticator
    metrics: Metrics
    tasks: BackgroundTasks  # the process's background tasks, for /healthz
    rollouts: RolloutRunner
    shadow: ShadowCollector


def context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.admin
    return ctx


Context = Annotated[AdminContext, Depends(context)]

_bearer = HTTPBearer(auto_error=False, description="A token from `switchyard serve --tokens FILE`")


async def identity(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Identity:
    ctx = context(request)
    header = f"Bearer {credentials.credentials}" if credentials is not None else None
    who = ctx.authenticator.identify(header)
    if who is None:
        raise HTTPException(
            401,
            "missing or invalid bearer token (send 'Authorization: Bearer <token>')",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.identity = who  # for the audit of calls rejected before their handler runs
    return who


async def operator(request: Request, who: Annotated[Identity, Depends(identity)]) -> Identity:
    if not who.may("operator"):
        raise HTTPException(403, f"{who.name!r} has the reader role; changing traffic needs an operator token")
    return who


async def known_query_parameters(request: Request) -> None:
    """Unknown query parameters are errors, as unknown body and policy fields are (a typo is not ignored)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route.dependant)
    problems: list[dict[str, Any]] = []
    for name in sorted(set(request.query_params)):
        if name not in known:
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            problems.append(
                {"loc": ("query", name), "msg": f"unknown query parameter ({takes})", "type": "extra_forbidden"}
            )
        elif len(request.query_params.getlist(name)) > 1:  # every parameter here takes one value
            problems.append({"loc": ("query", name), "msg": "given more than once", "type": "value_error"})
    if problems:
        raise RequestValidationError(problems)


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


# A mutating route names its audit action here (formatted with its path parameters); the
# handler gets it through the `Action` dependency and the error handlers read it for calls
# refused before the handler ran, so the route is the one place that names its action.
AUDIT_ACTION = "x-switchyard-audit-action"


def mutation(action: str) -> dict[str, Any]:
    """Route options of a mutating endpoint: ``@router.put(path, **mutation("shift"))``."""
    return {"openapi_extra": {AUDIT_ACTION: action}}


def mutation_of(request: Request) -> tuple[str, str | None] | None:
    """(audit action, model) of a call to a mutating route, else None."""
    route = request.scope.get("route")
    action = ((getattr(route, "openapi_extra", None) or {}).get(AUDIT_ACTION)) if route is not None else None
    if not isinstance(action, str):
        return None
    params = {k: str(v) for k, v in request.path_params.items()}
    try:
        return action.format(**params), params.get("name")
    except (KeyError, IndexError):
        return action, params.get("name")


def route_action(request: Request) -> str:
    found = mutation_of(request)
    if found is None:  # pragma: no cover - a route using Action without mutation()
        raise RuntimeError(f"{request.url.path} has no audit action")
    return found[0]


Action = Annotated[str, Depends(route_action)]
Reader = Annotated[Identity, Depends(identity)]
Operator = Annotated[Identity, Depends(operator)]
