"""Pair production and shadow answers by ``x-request-id`` and keep per-shadow statistics.

Everything is bounded: at most ``pending_limit`` request ids wait for their other
half (the oldest is evicted first, counted as unmatched), percentiles are over the
latest ``keep`` pairs, and at most ``samples`` disagreements are kept per shadow.
Production answers of models that mirror nothing are dropped on arrival.

Contract: single-threaded (the admin API's event loop).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control_plane import ir
from control_plane.percentiles import percentile
from control_plane.shadow.records import AnswerRecord

IntentSource = Callable[[], ir.RoutingIntent | None]


@dataclass(slots=True)
class ShadowStats:
    keep: int
    samples: int
    compared: int = 0
    agreed: int = 0
    diff_sum: float = 0.0
    diff_n: int = 0
    shadow_errors: int = 0
    production_errors: int = 0
    unmatched_shadow: int = 0  # shadow answers whose production answer never arrived
    production_versions: dict[str, int] = field(default_factory=dict)
    first_at: float | None = None
    last_at: float | None = None
    diffs: deque[float] = field(init=False)
    prod_latency: deque[float] = field(init=False)
    shadow_latency: deque[float] = field(init=False)
    disagreements: deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.diffs = deque(maxlen=self.keep)
        self.prod_latency = deque(maxlen=self.keep)
        self.shadow_latency = deque(maxlen=self.keep)
        self.disagreements = deque(maxlen=self.samples)

    def add(self, live: AnswerRecord, shadow: AnswerRecord, *, inputs: bool) -> None:
        now = time.time()
        self.first_at = self.first_at or now
        self.last_at = now
        self.production_versions[live.version] = self.production_versions.get(live.version, 0) + 1
        if live.error is not None:
            self.production_errors += 1  # nothing to compare the shadow against
            return
        self.prod_latency.append(live.latency_ms)
        if shadow.error is not None:
            self.shadow_errors += 1
            return
        self.shadow_latency.append(shadow.latency_ms)
        self.compared += 1
        same = live.label == shadow.label
        self.agreed += same
        if live.confidence is not None and shadow.confidence is not None:
            diff = abs(live.confidence - shadow.confidence)
            self.diff_sum += diff
            self.diff_n += 1
            self.diffs.append(diff)
        if not same:
            self.disagreements.append(
                {
                    "request_id": live.request_id,
                    "input": (shadow.input or live.input) if inputs else None,
                    "production": {"version": live.version, "label": live.label, "confidence": live.confidence},
                    "shadow": {"version": shadow.version, "label": shadow.label, "confidence": shadow.confidence},
                }
            )

    def to_json(self, version: str) -> dict[str, Any]:
        def rnd(x: float | None, n: int = 4) -> float | None:
            return None if x is None else round(x, n)

        diffs = list(self.diffs)
        return {
            "version": version,
            "production_versions": dict(self.production_versions),
            "requests_compared": self.compared,
            "agreement_rate": rnd(self.agreed / self.compared) if self.compared else None,
            "confidence_diff": {
                "mean": rnd(self.diff_sum / self.diff_n) if self.diff_n else None,
                "p95": rnd(percentile(diffs, 95)),
            },
            "latency_ms": {
                "production": {
                    "p50": rnd(percentile(self.prod_latency, 50), 2),
                    "p99": rnd(percentile(self.prod_latency, 99), 2),
                },
                "shadow": {
                    "p50": rnd(percentile(self.shadow_latency, 50), 2),
                    "p99": rnd(percentile(self.shadow_latency, 99), 2),
                },
            },
            "shadow_errors": self.shadow_errors,
            "production_errors": self.production_errors,
            "unmatched_shadow_answers": self.unmatched_shadow,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "disagreements": list(self.disagreements),
        }


@dataclass(slots=True)
class _Pending:
    model: str
    live: AnswerRecord | None = None
    shadows: dict[str, AnswerRecord] = field(default_factory=dict)


class ShadowCollector:
    def __init__(
        self,
        intent: IntentSource,
        *,
        pending_limit: int = 20_000,
        keep: int = 10_000,
        samples: int = 20,
        capture_inputs: bool = True,
    ) -> None:
        self._intent = intent
        self.pending_limit = pending_limit
        self.keep = keep
        self.samples = samples
        self.capture_inputs = capture_inputs
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._stats: dict[tuple[str, str], ShadowStats] = {}
        self._dropped: dict[tuple[str, str], int] = {}  # (model, version) -> dropped by the service
        self.received = 0
        self.ignored = 0  # production answers of models that mirror nothing
        self._index_of: ir.RoutingIntent | None = None
        self._index: dict[str, list[tuple[str, bool]]] = {}

    # -- ingest ----------------------------------------------------------------------

    def ingest(self, records: Iterable[AnswerRecord], *, dropped: int = 0, version: str | None = None) -> int:
        taken = 0
        for record in records:
            self.received += 1
            found = self._resolve(record.model, record.version)
            if found is None or (not record.shadow and not found[1]):
                self.ignored += 1
                continue
            taken += 1
            self._add(found[0], record)
        if dropped and version:
            found = self._resolve("", version)
            key = (found[0] if found else "", version)
            self._dropped[key] = self._dropped.get(key, 0) + dropped
        return taken

    def _add(self, model: str, record: AnswerRecord) -> None:
        entry = self._pending.get(record.request_id)
        if entry is None:
            entry = self._pending[record.request_id] = _Pending(model)
            self._evict()
        if record.shadow:
            if entry.live is not None:
                self._stats_for(entry.model, record.version).add(entry.live, record, inputs=self.capture_inputs)
            else:
                entry.shadows[record.version] = record
            return
        entry.live = record  # kept for shadows that arrive later, until evicted
        for version, shadow in entry.shadows.items():
            self._stats_for(entry.model, version).add(record, shadow, inputs=self.capture_inputs)
        entry.shadows.clear()

    def _evict(self) -> None:
        while len(self._pending) > self.pending_limit:
            _, old = self._pending.popitem(last=False)
            for version in old.shadows:
                self._stats_for(old.model, version).unmatched_shadow += 1

    def _stats_for(self, model: str, version: str) -> ShadowStats:
        key = (model, version)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = ShadowStats(self.keep, self.samples)
        return stats

    def _resolve(self, hint: str, version: str) -> tuple[str, bool] | None:
        """(model, whether it mirrors anything) for a version; None if no model declares it."""
        intent = self._intent()
        if intent is None:
            return (hint, True) if hint else None
        if intent is not self._index_of:
            index: dict[str, list[tuple[str, bool]]] = {}
            for m in intent.models:
                mirrored = bool(m.mirrors) or any(r.mirrors for r in m.rules)
                for v in m.versions:
                    index.setdefault(v.name, []).append((m.name, mirrored))
            self._index, self._index_of = index, intent
        candidates = self._index.get(version, [])
        for candidate in candidates:
            if candidate[0] == hint:
                return candidate
        return candidates[0] if candidates else None

    # -- reading ---------------------------------------------------------------------

    def report(self, model: str) -> dict[str, Any]:
        shadows = sorted((v, s) for (m, v), s in self._stats.items() if m == model)
        return {
            "model": model,
            "capture_inputs": self.capture_inputs,
            "pending": sum(1 for p in self._pending.values() if p.model == model),
            "capture_dropped": {v: n for (m, v), n in self._dropped.items() if m == model},
            "shadows": [s.to_json(v) for v, s in shadows],
        }

    def reset(self, model: str) -> None:
        for key in [k for k in self._stats if k[0] == model]:
            del self._stats[key]
        for key in [k for k in self._dropped if k[0] == model]:
            del self._dropped[key]
        for rid in [r for r, p in self._pending.items() if p.model == model]:
            del self._pending[rid]
