"""One direction only: policy source -> validate -> IR -> translate -> snapshot -> cache."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from control_plane import ir
from control_plane.ir import RoutingIntent
from control_plane.policy.compile import LocalOverrides, to_intent, to_model, with_endpoints
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import PolicySet, load_policies
from control_plane.policy.schema import ModelRoute
from control_plane.policy.yaml_source import paused_gc
from control_plane.translate.serialized import serialize
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReloadOutcome:
    at: float
    accepted: bool
    errors: list[str] = field(default_factory=list)
    snapshot_version: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # load, intent, translate, snapshot


class Controller:
    """Owns the accepted policies and publishes their translation.

    An invalid edit is recorded (``last_rejected``) and changes nothing: the
    last accepted intent keeps being served.
    """

    def __init__(self, policy_paths: list[Path], cache: SnapshotCache, overrides: LocalOverrides | None = None) -> None:
        self.policy_paths = policy_paths
        self.cache = cache
        self.overrides = overrides or LocalOverrides()
        self.policies: PolicySet | None = None
        self.intent: RoutingIntent | None = None
        self.unready: frozenset[str] = frozenset()
        self.last_reload: ReloadOutcome | None = None
        self.last_rejected: ReloadOutcome | None = None
        # IR per validated document. The loader hands back the same (immutable)
        # ModelRoute object while a document is unchanged, so identity is a safe key.
        self._models: dict[int, tuple[ModelRoute, ir.Model]] = {}

    def reload(self) -> ReloadOutcome:
        # A reload allocates hundreds of thousands of acyclic objects at 10,000
        # models; the cyclic collector would rescan them all repeatedly (it doubled
        # the time). Reference counting frees them; collection resumes afterwards.
        with paused_gc():
            return self._reload()

    def _reload(self) -> ReloadOutcome:
        marks = [time.perf_counter()]
        try:
            policies = load_policies(self.policy_paths)
            marks.append(time.perf_counter())
            intent = self._to_intent(policies)
            marks.append(time.perf_counter())
            resources = serialize(intent, self.unready)
            marks.append(time.perf_counter())
            snapshot = Snapshot.from_serialized(resources, previous=self.cache.current)
            marks.append(time.perf_counter())
        except PolicyErrors as exc:
            return self._reject([str(e) for e in exc.errors])
        except InconsistentSnapshot as exc:
            return self._reject([f"internal consistency check failed: {exc}"])
        self.policies, self.intent = policies, intent
        changed = self.cache.set(snapshot)
        stages = ("load", "intent", "translate", "snapshot")
        timings = {s: round((b - a) * 1000, 3) for s, a, b in zip(stages, marks[:-1], marks[1:], strict=True)}
        outcome = ReloadOutcome(time.time(), True, snapshot_version=snapshot.version, timings_ms=timings)
        self.last_reload = outcome
        if changed:
            log.info(
                "policies accepted: %d models, snapshot %s (%s)",
                len(intent.models),
                snapshot.version,
                ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()),
            )
        return outcome

    def set_unready(self, unready: frozenset[str]) -> None:
        """Readiness changed: re-translate the accepted intent with the new weights."""
        self.unready = unready
        if self.intent is not None:
            with paused_gc():
                resources = serialize(self.intent, unready)
                snapshot = Snapshot.from_serialized(resources, previous=self.cache.current)
            self.cache.set(snapshot)

    def _to_intent(self, policies: PolicySet) -> RoutingIntent:
        """``to_intent(policies)``, reusing the IR of documents that did not change."""
        known = self._models
        current: dict[int, tuple[ModelRoute, ir.Model]] = {}
        models = []
        for located in policies.models:
            route = located.value
            hit = known.get(id(route))
            if hit is None or hit[0] is not route:
                hit = (route, to_model(route))
            current[id(route)] = hit
            models.append(with_endpoints(hit[1], self.overrides.endpoints))
        self._models = current  # only live documents: bounded by the policy set
        listener = self.overrides.listener or to_intent(replace(policies, models=())).listener
        return RoutingIntent(listener, tuple(models))

    def _reject(self, errors: list[str]) -> ReloadOutcome:
        outcome = ReloadOutcome(time.time(), False, errors)
        self.last_reload = self.last_rejected = outcome
        log.error("policy change rejected, still serving the last good configuration:\n  %s", "\n  ".join(errors))
        return outcome
