"""One direction only: policy source -> validate -> IR -> translate -> snapshot -> cache."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.ir import RoutingIntent
from control_plane.policy.compile import to_intent
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import PolicySet, load_policies
from control_plane.translate import translate
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ReloadOutcome:
    at: float
    accepted: bool
    errors: list[str] = field(default_factory=list)
    snapshot_version: str | None = None


class Controller:
    """Owns the accepted policies and publishes their translation.

    An invalid edit is recorded (``last_rejected``) and changes nothing: the
    last accepted intent keeps being served.
    """

    def __init__(self, policy_paths: list[Path], cache: SnapshotCache) -> None:
        self.policy_paths = policy_paths
        self.cache = cache
        self.policies: PolicySet | None = None
        self.intent: RoutingIntent | None = None
        self.unready: frozenset[str] = frozenset()
        self.last_reload: ReloadOutcome | None = None
        self.last_rejected: ReloadOutcome | None = None

    def reload(self) -> ReloadOutcome:
        try:
            policies = load_policies(self.policy_paths)
            intent = to_intent(policies)
            snapshot = Snapshot.build(translate(intent, self.unready))
        except PolicyErrors as exc:
            return self._reject([str(e) for e in exc.errors])
        except InconsistentSnapshot as exc:
            return self._reject([f"internal consistency check failed: {exc}"])
        self.policies, self.intent = policies, intent
        changed = self.cache.set(snapshot)
        outcome = ReloadOutcome(time.time(), True, snapshot_version=snapshot.version)
        self.last_reload = outcome
        if changed:
            log.info("policies accepted: %d models, snapshot %s", len(intent.models), snapshot.version)
        return outcome

    def set_unready(self, unready: frozenset[str]) -> None:
        """Readiness changed: re-translate the accepted intent with the new weights."""
        self.unready = unready
        if self.intent is not None:
            self.cache.set(Snapshot.build(translate(self.intent, unready)))

    def _reject(self, errors: list[str]) -> ReloadOutcome:
        outcome = ReloadOutcome(time.time(), False, errors)
        self.last_reload = self.last_rejected = outcome
        log.error(
            "policy change rejected, still serving the last good configuration:\n  %s", "\n  ".join(errors)
        )
        return outcome
