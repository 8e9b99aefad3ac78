"""The admin FastAPI application: routers per area, auth as dependencies."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from control_plane.admin import audit, envoys, errors, metrics, models, rollouts, shadow, status, validate
from control_plane.admin.context import AdminContext, identity, known_query_parameters

DESCRIPTION = """
Read what the control plane serves and change traffic without editing YAML by hand.

Every change is validated as a whole policy set, written back to the policy file
it came from (comments and formatting kept), and published through the same path
as a file edit. Send `If-Match` with a model's ETag to never overwrite someone
else's change (412). With `serve --tokens`, send `Authorization: Bearer <token>`:
readers may read, operators may change.
"""


def create_app(parts: AdminContext) -> FastAPI:
    """The admin API over ``parts`` (see ``control_plane.plane.build``): routers and error handling only.

    Routers reach the parts through one dependency (``admin.context.Context``).
    Without tokens in ``parts.authenticator`` it is open; the caller keeps it on loopback.
    """
    app = FastAPI(
        title="Switchyard admin API",
        version="1",
        description=DESCRIPTION,
        responses=errors.ERROR_RESPONSES,
        dependencies=[Depends(known_query_parameters)],
    )
    app.state.admin = parts
    errors.install(app)
    app.include_router(status.router)
    app.include_router(models.router)
    app.include_router(envoys.router)
    app.include_router(audit.router)
    app.include_router(validate.router)
    app.include_router(metrics.router, dependencies=[Depends(identity)])
    app.include_router(rollouts.router)
    app.include_router(shadow.router)
    return app
