"""Read-only views: what is served, what Envoy runs, what was rejected."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from control_plane.admin.context import Context, identity
from control_plane.engine.controller import Controller
from control_plane.engine.health import HealthProber
from control_plane.ir import Model
from control_plane.translate.names import cluster_name
from control_plane.translate.weights import effective_weights

router = APIRouter()


@router.get(
    "/healthz",
    summary="Liveness: 503 once a background task (watcher, prober, rollouts) has died",
    responses={503: {"description": "A background task died; the body says which and why"}},
)
def healthz(ctx: Context, response: Response) -> dict[str, Any]:
    tasks = ctx.tasks
    if tasks.healthy:
        return {"status": "ok"}
    response.status_code = 503
    return {"status": "unhealthy", "failed_tasks": [f.to_json() for f in tasks.failures]}


@router.get("/v1/status", dependencies=[Depends(identity)])
def status(ctx: Context) -> dict[str, Any]:
    controller, cache, nodes, prober = ctx.controller, ctx.cache, ctx.nodes, ctx.prober
    snapshot = cache.current
    return {
        "snapshot_version": snapshot.version if snapshot else None,
        "published_at": cache.published_at,
        "policy": {
            "paths": controller.source.locations,
            **policy_state(controller),
            "reloads": [o.to_json() for o in controller.reloads],
        },
        "models": [model_view(controller, prober, name) for name in _model_names(controller)],
        "envoys": [node.to_json() for node in nodes.all()],
        "rejected_snapshots": [
            {
                "version": r.snapshot_version,
                "type": r.type_url,
                "node": r.node_id,
                "error": r.message,
                "at": r.at,
            }
            for r in cache.rejections
        ],
    }


def _model_names(controller: Controller) -> list[str]:
    return [m.name for m in controller.intent.models] if controller.intent else []


def policy_state(controller: Controller) -> dict[str, Any]:
    """Whether the files on disk are what is served, and the latest reload outcomes."""
    last, rejected = controller.last_reload, controller.last_rejected
    return {
        # False: the latest reload was rejected, so the files say something the
        # control plane does not serve (it serves the last good configuration).
        "files_valid": last is None or last.accepted,
        "last_reload": last.to_json() if last else None,
        "last_rejected": rejected.to_json() if rejected else None,
    }


def model_view(controller: Controller, prober: HealthProber, name: str, model: Model | None = None) -> dict[str, Any]:
    """``model``, when given, saves a linear search of the intent (listing many models)."""
    served = controller.served or controller.intent  # with Service endpoints filled in (Kubernetes mode)
    assert served is not None
    model = model or served.model(name)
    unready = {v.name for v in model.versions if cluster_name(model.name, v.name) in controller.served_unready}
    versions = []
    for version in model.versions:
        endpoints = []
        for endpoint in version.endpoints:
            health = prober.endpoint_health(model, endpoint)
            endpoints.append(
                {
                    "address": endpoint.address,
                    "ready": None if model.health_check is None else bool(health and health.healthy),
                    "last_error": health.last_error if health else None,
                }
            )
        versions.append({"name": version.name, "ready": version.name not in unready, "endpoints": endpoints})
    return {
        "name": model.name,
        "hosts": list(model.hosts),
        "path_prefix": model.path_prefix,
        "versions": versions,
        "traffic": model.split.as_dict(),
        "effective_traffic": dict(effective_weights(model.split, unready)),
        "shadow": [{"version": m.version, "percent": m.percent} for m in model.mirrors],
        "rules": [
            {
                "name": r.name,
                "traffic": r.split.as_dict(),
                "effective_traffic": dict(effective_weights(r.split, unready)),
                "shadow": [{"version": m.version, "percent": m.percent} for m in r.mirrors],
            }
            for r in model.rules
        ],
        "pinning": None
        if model.pinning is None
        else {
            "header": model.pinning.header,
            "body_field": ".".join(model.pinning.body_field) if model.pinning.body_field else None,
        },
    }
