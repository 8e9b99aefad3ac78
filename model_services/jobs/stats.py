"""Queue statistics per model version, read straight from Redis.

The ``switchyard jobs`` CLI uses this: Redis holds the whole fleet's queues,
so one read covers every version and replica, including stopped ones.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from model_services.jobs.keys import GROUP, Keys, index_key


def _age_s(entries: Any) -> float:
    if not entries:
        return 0.0
    millis = int(str(entries[0][0]).split("-")[0])
    return max(0.0, time.time() - millis / 1000.0)


def version_stats(client: redis.Redis, prefix: str = "switchyard", model: str | None = None) -> list[dict[str, Any]]:
    """One row per model version that ever had a job. ``client`` decodes responses."""
    members: Any = client.smembers(index_key(prefix))
    rows: list[dict[str, Any]] = []
    for member in sorted(members):
        name, _, version = str(member).partition("/")
        if model is not None and name != model:
            continue
        keys = Keys(prefix, name, version)
        pending: Any = client.xpending(keys.stream, GROUP) if client.exists(keys.stream) else None
        stats: Any = client.hgetall(keys.stats)
        completed = int(stats.get("completed", 0))
        seconds = float(stats.get("processing_seconds", 0.0))
        depth = int(client.xlen(keys.stream))
        rows.append(
            {
                "model": name,
                "version": version,
                "depth": depth,
                # Delivered to a worker and not yet acknowledged (running, or a dead worker's).
                "running": int(pending["pending"]) if pending else 0,
                "oldest_age_s": round(_age_s(client.xrange(keys.stream, count=1)), 3),
                "completed": completed,
                "failed_attempts": int(stats.get("failed_attempts", 0)),
                "reclaimed": int(stats.get("reclaimed", 0)),
                "dead_lettered": int(stats.get("dead_lettered", 0)),
                "dead_letters_now": int(client.xlen(keys.dead)),
                "mean_processing_ms": round(seconds / completed * 1000.0, 2) if completed else 0.0,
            }
        )
    return rows
