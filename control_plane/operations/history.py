"""Every split each model has had: who set it, when, and how (API call or file edit).

Kept as JSON lines in the state directory so that history, and therefore
rollback, survives restarts. A model's history is a list of routing states;
rollback goes back to the latest state that differs from the current one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_plane import ir


@dataclass(frozen=True, slots=True)
class RoutingState:
    """What an operator changes: the default split and the shadow mirrors."""

    traffic: tuple[tuple[str, int], ...]
    shadow: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, model: ir.Model) -> RoutingState:
        return cls(model.split.weights, tuple((m.version, float(m.percent)) for m in model.mirrors))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoutingState:
        traffic = tuple((str(v), int(w)) for v, w in data["traffic"].items())
        shadow = tuple((str(s["version"]), float(s["percent"])) for s in data.get("shadow", []))
        return cls(traffic, shadow)

    def to_json(self) -> dict[str, Any]:
        return {
            "traffic": dict(self.traffic),
            "shadow": [{"version": v, "percent": p} for v, p in self.shadow],
        }

    def same_as(self, other: RoutingState) -> bool:
        """Equal as routing (the order of keys in the file does not matter)."""
        return dict(self.traffic) == dict(other.traffic) and dict(self.shadow) == dict(other.shadow)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    model: str
    state: RoutingState
    at: float
    who: str
    action: str
    snapshot_version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            **self.state.to_json(),
            "at": self.at,
            "who": self.who,
            "action": self.action,
            "snapshot_version": self.snapshot_version,
        }


class History:
    """Append-only history of routing states per model, mirrored to ``path``.

    Single-threaded: the event loop that owns the controller calls it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, list[HistoryEntry]] = {}
        self._seen: dict[str, ir.Model] = {}  # the IR last compared, to skip unchanged models cheaply
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                    entry = HistoryEntry(
                        str(data["model"]),
                        RoutingState.from_json(data),
                        float(data["at"]),
                        str(data["who"]),
                        str(data["action"]),
                        data.get("snapshot_version"),
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a torn last line after a crash: skip it, keep the rest
                self._entries.setdefault(entry.model, []).append(entry)

    def entries(self, model: str) -> list[HistoryEntry]:
        return list(self._entries.get(model, ()))

    def observe(
        self, intent: ir.RoutingIntent, *, who: str, action: str, snapshot_version: str | None
    ) -> list[HistoryEntry]:
        """Record every model whose routing state differs from its last recorded one."""
        added: list[HistoryEntry] = []
        now = time.time()
        for model in intent.models:
            if self._seen.get(model.name) is model:
                continue  # the controller reuses IR objects for documents that did not change
            self._seen[model.name] = model
            state = RoutingState.of(model)
            past = self._entries.get(model.name)
            if past and past[-1].state.same_as(state):
                continue
            entry = HistoryEntry(model.name, state, now, who, action, snapshot_version)
            self._entries.setdefault(model.name, []).append(entry)
            added.append(entry)
        if added:
            self._append(added)
        return added

    def previous(self, model: str, current: RoutingState) -> HistoryEntry | None:
        """The state before the last change: the latest recorded state unlike ``current``."""
        for entry in reversed(self._entries.get(model, ())):
            if not entry.state.same_as(current):
                return entry
        return None

    def _append(self, entries: list[HistoryEntry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(e.to_json(), sort_keys=True) + "\n" for e in entries))
            handle.flush()
            os.fsync(handle.fileno())


def default_state_dir(policy_paths: list[Path]) -> Path:
    """``<policies>/.switchyard``: next to the policies, ignored by the loader (a dot directory)."""
    first = policy_paths[0] if policy_paths else Path(".")
    return (first if first.is_dir() else first.parent) / ".switchyard"
