"""The audit log: every mutating admin call and rollout transition, accepted or rejected.

Append-only JSON lines in the state directory, fsynced per line, so it survives
restarts and crashes (a torn last line is skipped when reading).

A change is recorded *before* it is applied: ``begin`` writes its intent (who,
what, the request), and the outcome follows as a second line with the same id.
A process killed between the two leaves an intent with no outcome, which
``read`` reports as ``"outcome": "unknown"``: an applied change can never be
missing from the log, at worst its result is. Calls refused before anything
could be applied are one ``append``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from control_plane.operations.changes import ChangeError

T = TypeVar("T")

UNKNOWN_REASON = (
    "no outcome was recorded: the control plane stopped during this change, which may or may not have been"
    " applied (the policy file and `switchyard history` tell)"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an accepted change did, for its audit record."""

    old: Any = None
    new: Any = None
    snapshot_version: str | None = None
    reason: str | None = None
    action: str | None = None  # what the change turned into, when not what was asked (rollout-failed)


def audited(
    log: AuditLog,
    *,
    who: str,
    action: str,
    model: str | None,
    request: Any,
    apply: Callable[[], T],
    outcome: Callable[[T], Outcome],
) -> T:
    """The one way a change is made: its intent recorded, then ``apply``, then how it ended.

    Every mutating admin endpoint and every transition the rollout runner makes
    on its own goes through here. A refusal (``ChangeError``) is recorded with
    its kind and re-raised; anything else that escapes leaves the intent alone,
    which reads back as ``outcome: unknown``, the truth for a change that failed
    half-way.
    """
    entry = log.begin(who=who, action=action, model=model, request=request)
    try:
        result = apply()
    except ChangeError as exc:
        entry.rejected(error=exc.kind, reason=exc.reason)
        raise
    entry.accepted(outcome(result))
    return result


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def begin(self, *, who: str, action: str, model: str | None, request: Any) -> AuditEntry:
        """Record the intent of a change about to be applied; finish it with the entry's methods."""
        entry = AuditEntry(self, uuid.uuid4().hex, model)
        self._write(
            {"id": entry.id, "phase": "intent", "who": who, "action": action, "model": model, "request": request}
        )
        return entry

    def refused(self, *, who: str, action: str, model: str | None, error: str, reason: str) -> dict[str, Any]:
        """One complete record, for a call refused before anything could be applied (a reader's
        token, a malformed body): ``error`` is the kind of refusal."""
        return self._write(
            {
                "id": uuid.uuid4().hex,
                "phase": "complete",
                "who": who,
                "action": action,
                "model": model,
                "request": None,
                **_rejected(error, reason),
            }
        )

    def _write(self, fields: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        record = {"at": now, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def read(self, *, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, at most ``limit`` records, optionally only those about ``model``.

        An intent and its outcome come back as one record; an intent whose
        outcome was never written has ``accepted: null`` and ``outcome: unknown``.
        """
        if not self.path.exists():
            return []
        # An outcome follows its intent closely (a change is applied without
        # awaiting anything), so a little more than `limit` records suffices.
        kept: deque[str] = deque()
        records: dict[str, dict[str, Any]] = {}
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict) or (model is not None and record.get("model") != model):
                    continue
                key = str(record.get("id") or f"line-{number}")
                if record.get("phase") == "outcome":
                    if key in records:
                        records[key].update(_outcome_fields(record))
                    continue
                records[key] = _as_read(record)
                kept.append(key)
                if len(kept) > limit + 64:
                    del records[kept.popleft()]
        newest = [records[key] for key in list(kept)[-limit:]]
        return list(reversed(newest))


class AuditEntry:
    """A change whose intent is in the log; exactly one of the methods records how it ended."""

    def __init__(self, log: AuditLog, entry_id: str, model: str | None) -> None:
        self._log = log
        self.id = entry_id
        self._model = model

    def accepted(self, outcome: Outcome) -> None:
        fields = {
            "accepted": True,
            "outcome": "accepted",
            "error": None,
            "old": outcome.old,
            "new": outcome.new,
            "snapshot_version": outcome.snapshot_version,
            "reason": outcome.reason,
        }
        self._finish(fields, outcome.action)

    def rejected(self, *, error: str, reason: str) -> None:
        self._finish(_rejected(error, reason), None)

    def _finish(self, outcome: dict[str, Any], action: str | None) -> None:
        fields: dict[str, Any] = {"id": self.id, "phase": "outcome", "model": self._model, **outcome}
        if action is not None:  # what it turned into (a rollout step that failed is "rollout-failed")
            fields["action"] = action
        self._log._write(fields)


def _rejected(error: str, reason: str) -> dict[str, Any]:
    return {
        "accepted": False,
        "outcome": "rejected",
        "error": error,  # the kind of refusal: not_found, conflict, invalid, stale, forbidden, malformed...
        "old": None,
        "new": None,
        "snapshot_version": None,
        "reason": reason,
    }


def _outcome_fields(record: dict[str, Any]) -> dict[str, Any]:
    wanted = ("accepted", "outcome", "error", "old", "new", "snapshot_version", "reason", "action")
    return {k: record[k] for k in wanted if k in record}


def _as_read(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("phase") == "intent":
        record = {**record, **_rejected("unknown", UNKNOWN_REASON), "accepted": None, "outcome": "unknown"}
    elif "outcome" not in record:  # written before intents existed
        record = {**record, "outcome": "accepted" if record.get("accepted") else "rejected"}
    record.pop("phase", None)
    return record
