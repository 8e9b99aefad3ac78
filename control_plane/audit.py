"""The audit log: one JSON line per mutating admin call, accepted or rejected.

Append-only in the state directory, fsynced per line, so it survives restarts
and crashes (a torn last line is skipped when reading).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        *,
        who: str,
        action: str,
        model: str | None,
        request: Any,
        accepted: bool,
        status: int,
        old: Any = None,
        new: Any = None,
        snapshot_version: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        now = time.time()
        record = {
            "at": now,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "who": who,
            "action": action,
            "model": model,
            "request": request,
            "accepted": accepted,
            "status": status,
            "old": old,
            "new": new,
            "snapshot_version": snapshot_version,
            "reason": reason,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def read(self, *, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` records, optionally only those about ``model``."""
        if not self.path.exists():
            return []
        newest: deque[dict[str, Any]] = deque(maxlen=limit)
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and (model is None or record.get("model") == model):
                    newest.append(record)
        return list(reversed(newest))
