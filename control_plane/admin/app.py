"""The admin FastAPI application: routers per area, auth as dependencies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import Depends, FastAPI

from control_plane.admin import audit, envoys, errors, metrics, models, rollouts, shadow, status, validate
from control_plane.admin.context import AdminContext, identity, known_query_parameters
from control_plane.audit import AuditLog
from control_plane.auth import Authenticator
from control_plane.changes import PolicyChanges
from control_plane.controller import Controller
from control_plane.health import HealthProber
from control_plane.history import History, default_state_dir
from control_plane.rollout.metrics import EnvoyStats, envoy_admin_urls
from control_plane.rollout.runner import RolloutRunner
from control_plane.shadow.collector import ShadowCollector
from control_plane.tasks import BackgroundTasks
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry

DESCRIPTION = """
Read what the control plane serves and change traffic without editing YAML by hand.

Every change is validated as a whole policy set, written back to the policy file
it came from (comments and formatting kept), and published through the same path
as a file edit. Send `If-Match` with a model's ETag to never overwrite someone
else's change (412). With `serve --tokens`, send `Authorization: Bearer <token>`:
readers may read, operators may change.
"""


def create_app(
    controller: Controller,
    cache: SnapshotCache,
    nodes: NodeRegistry,
    prober: HealthProber,
    *,
    changes: PolicyChanges | None = None,
    audit_log: AuditLog | None = None,
    authenticator: Authenticator | None = None,
    state_dir: Path | None = None,
    envoy_admin: Sequence[str] = (),
    shadow_inputs: bool = True,
    tasks: BackgroundTasks | None = None,
) -> FastAPI:
    """The admin API. Without ``authenticator`` it is open (the caller keeps it on loopback)."""
    state = state_dir or default_state_dir(controller.policy_paths)
    if changes is None:
        changes = PolicyChanges(controller, prober, History(state / "history.jsonl"))
    app = FastAPI(
        title="Switchyard admin API",
        version="1",
        description=DESCRIPTION,
        responses=errors.ERROR_RESPONSES,
        dependencies=[Depends(known_query_parameters)],
    )
    collector = metrics.Metrics(cache, nodes)
    nodes.events = collector
    app.state.admin = AdminContext(
        controller=controller,
        cache=cache,
        nodes=nodes,
        prober=prober,
        changes=changes,
        audit=audit_log or AuditLog(state / "audit.jsonl"),
        authenticator=authenticator or Authenticator(None),
        metrics=collector,
        tasks=tasks or BackgroundTasks(),
    )
    # Kept for the read-only status router, which reads these directly.
    app.state.controller = controller
    app.state.cache = cache
    app.state.nodes = nodes
    app.state.prober = prober
    # Rollouts and shadow comparison; `serve` runs the runner's loop (app.state.rollouts.run()).
    app.state.rollouts = RolloutRunner(
        changes, app.state.admin.audit, EnvoyStats(lambda: envoy_admin_urls(nodes, envoy_admin)), state
    )
    app.state.shadow = ShadowCollector(lambda: controller.intent, capture_inputs=shadow_inputs)
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
