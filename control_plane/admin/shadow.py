"""Shadow comparison: model services post their answers here; operators read the report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from control_plane.admin.context import Operator, Reader
from control_plane.changes import ChangeError, no_such_model
from control_plane.shadow.collector import ShadowCollector
from control_plane.shadow.records import ReportBatch

router = APIRouter(tags=["shadow"])


def collector(request: Request) -> ShadowCollector:
    found: ShadowCollector | None = getattr(request.app.state, "shadow", None)
    if found is None:
        raise ChangeError(503, "shadow comparison is not enabled in this control plane")
    return found


@router.post("/v1/shadow/reports", summary="Model services post batches of answers (production and shadow)")
async def ingest(body: ReportBatch, request: Request, who: Reader) -> dict[str, Any]:
    taken = collector(request).ingest(body.records, dropped=body.dropped, version=body.version)
    return {"received": len(body.records), "kept": taken}


@router.get("/v1/models/{name}/shadow/report", summary="Production vs shadow answers, per shadow version")
async def report(name: str, request: Request, who: Reader) -> dict[str, Any]:
    found = collector(request)
    controller = request.app.state.controller
    intent = controller.intent
    if intent is None or name not in {m.name for m in intent.models}:
        raise no_such_model(name, (m.name for m in intent.models) if intent else ())
    return found.report(name)


@router.delete("/v1/models/{name}/shadow/report", summary="Forget the model's comparison so far")
async def reset(name: str, request: Request, who: Operator) -> dict[str, Any]:
    collector(request).reset(name)
    return {"model": name, "reset": True}
