"""What the admin routers share: the control plane's parts, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.admin.metrics import Metrics
from control_plane.audit import AuditLog
from control_plane.auth import Authenticator, Identity
from control_plane.changes import PolicyChanges
from control_plane.controller import Controller
from control_plane.health import HealthProber
from control_plane.tasks import BackgroundTasks
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


Reader = Annotated[Identity, Depends(identity)]
Operator = Annotated[Identity, Depends(operator)]
