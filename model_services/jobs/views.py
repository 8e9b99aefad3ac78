"""A job record (Redis hash of strings) as the JSON the API and webhooks send."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def _iso(raw: str | None) -> str | None:
    if not raw:
        return None
    return datetime.fromtimestamp(float(raw), UTC).isoformat().replace("+00:00", "Z")


def job_view(record: dict[str, str]) -> dict[str, Any]:
    result = json.loads(record["result"]) if record.get("result") else None
    error = json.loads(record["error"]) if record.get("error") else None
    status = record.get("status", "")
    return {
        "job_id": record.get("id", ""),
        "status": status,
        "model": record.get("model"),
        # The version the routing policy assigned when the job was accepted;
        # the result's model_version is the one that computed it (the same).
        "model_version": record.get("version"),
        "attempts": int(record.get("attempts", "0") or 0),
        "created_at": _iso(record.get("created_at")),
        "started_at": _iso(record.get("started_at")),
        "finished_at": _iso(record.get("finished_at")),
        "result": result,
        # While queued for another try this is the last attempt's error.
        "error": error,
    }
