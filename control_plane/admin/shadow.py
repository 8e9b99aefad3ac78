"""Shadow comparison: model services post their answers here; operators read the report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control_plane.admin.context import Context, Operator, Reader
from control_plane.operations.changes import no_such_model
from control_plane.shadow.records import ReportBatch

router = APIRouter(tags=["shadow"])


@router.post("/v1/shadow/reports", summary="Model services post batches of answers (production and shadow)")
async def ingest(body: ReportBatch, ctx: Context, who: Reader) -> dict[str, Any]:
    taken = ctx.shadow.ingest(body.records, dropped=body.dropped, version=body.version)
    return {"received": len(body.records), "kept": taken}


@router.get("/v1/models/{name}/shadow/report", summary="Production vs shadow answers, per shadow version")
async def report(name: str, ctx: Context, who: Reader) -> dict[str, Any]:
    intent = ctx.controller.intent
    if intent is None or name not in {m.name for m in intent.models}:
        raise no_such_model(name, (m.name for m in intent.models) if intent else ())
    return ctx.shadow.report(name)


@router.delete("/v1/models/{name}/shadow/report", summary="Forget the model's comparison so far")
async def reset(name: str, ctx: Context, who: Operator) -> dict[str, Any]:
    ctx.shadow.reset(name)
    return {"model": name, "reset": True}
