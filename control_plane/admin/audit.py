"""``GET /v1/audit``: every mutating call, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from control_plane.admin.context import Context, Reader

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", summary="The audit log, newest first, optionally only one model's records")
async def audit(
    ctx: Context,
    who: Reader,
    model: Annotated[str | None, Query(max_length=253)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    return {"records": ctx.audit.read(model=model, limit=limit)}
