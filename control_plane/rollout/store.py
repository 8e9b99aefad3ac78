"""Where a rollout's own state (phase, step, failures, checks) is kept between transitions.

The runner writes the record *before* it changes traffic, so whoever resumes it (this
process after a restart, or another replica that became the leader) finds the record
at or ahead of the traffic, never behind it, and finishes the step it names
(``RolloutRunner.adopt``): no step is skipped, and none is applied twice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

from control_plane.sources.splice import write_atomic

log = logging.getLogger(__name__)


class RolloutStore(Protocol):
    def load(self) -> dict[str, dict[str, Any]]:
        """Every stored record, by model (unreadable ones are logged and left out)."""
        ...

    def save(self, model: str, record: dict[str, Any]) -> None:
        """Keep ``record`` as the model's rollout; raises ``OSError`` if it cannot."""
        ...


class FileRolloutStore:
    """One JSON file per model, ``<state dir>/rollouts/<model>.json``, written atomically."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def load(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else ():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as exc:
                log.error("ignoring unreadable rollout state %s: %s", path, exc)
                continue
            records[path.stem] = record
        return records

    def save(self, model: str, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / f"{model}.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
