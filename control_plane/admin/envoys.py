"""``GET /v1/envoys``: what every Envoy runs, what is pending, and its last NACK."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control_plane.admin.context import Context, Reader

router = APIRouter(tags=["envoys"])


@router.get("/v1/envoys", summary="Connected Envoys: ACKed version per type, pending pushes, last NACK")
async def envoys(ctx: Context, who: Reader) -> dict[str, Any]:
    current = ctx.cache.current
    version = current.version if current else None
    return {
        "snapshot_version": version,
        "envoys": [
            {**node.to_json(), "in_sync": node.connected and node.synced_snapshot == version}
            for node in ctx.nodes.all()
        ],
    }
