"""Runs rollouts: reads Envoy's statistics each interval, applies the machine's decisions.

Every change of the candidate's weight is an ordinary admin change
(``PolicyChanges.apply``): validated as a whole policy set, written back to the
policy file, recorded in the split history and published to Envoy. The
rollout's own state (phase, step, consecutive failures, the latest checks) is a
record in a ``RolloutStore`` (a JSON file per model in ``<state dir>/rollouts/``;
in Kubernetes mode the ModelRoute's status), written before every change of
traffic and after every check, so a restarted control plane, or the replica that
takes over as leader, resumes each rollout where it was (the interval in progress
starts again: its first reading was in memory).

Contract: single-threaded. Verbs and ticks run on the event loop that owns the
controller; a tick awaits only its statistics read and re-checks afterwards that
no verb replaced the rollout meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control_plane import ir
from control_plane.operations.audit import AuditLog, Outcome, audited
from control_plane.operations.changes import ChangeError, Conflict, NotFound, Planner, PolicyChanges, no_such_model
from control_plane.operations.history import RoutingState
from control_plane.rollout import machine
from control_plane.rollout.machine import Phase, Plan, Rollout, TransitionError
from control_plane.rollout.metrics import EnvoyStats, MetricsError, Reading, Window, window
from control_plane.rollout.store import FileRolloutStore, RolloutStore
from control_plane.translate.names import cluster_name, grpc_cluster_name

log = logging.getLogger(__name__)

AUTO = "rollout"  # who the runner's own transitions are audited as


@dataclass(frozen=True, slots=True)
class Transition:
    """A rollout's step from one state to the next, and what it did to traffic."""

    rollout: Rollout
    action: str  # what it turned into: "rollout-failed" when traffic could not be changed
    old: dict[str, Any]
    new: dict[str, Any]
    snapshot_version: str | None
    reason: str

    def outcome(self) -> Outcome:
        return Outcome(self.old, self.new, self.snapshot_version, self.reason, self.action)


class RolloutRunner:
    def __init__(
        self,
        changes: PolicyChanges,
        audit: AuditLog,
        stats: EnvoyStats,
        state_dir: Path,
        *,
        tick_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        store: RolloutStore | None = None,  # None: files in <state_dir>/rollouts
        is_leader: Callable[[], bool] = lambda: True,  # only the leader runs rollouts (Kubernetes mode)
    ) -> None:
        self.changes = changes
        self.audit = audit
        self.stats = stats
        self.store = store or FileRolloutStore(state_dir / "rollouts")
        self.is_leader = is_leader
        self.tick_s = tick_s
        self.clock = clock
        self.rollouts: dict[str, Rollout] = {}
        self._windows: dict[str, tuple[float, Reading]] = {}  # model -> (interval start, first reading)
        self._leading = False  # as of the last tick: a change to True loads what the previous leader left
        self.load()

    def load(self) -> None:
        """Take the stored records as the truth (at start, and on becoming the leader)."""
        now = self.clock()
        rollouts: dict[str, Rollout] = {}
        for model, record in self.store.load().items():
            try:
                r = Rollout.from_json(record)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("ignoring unreadable rollout state of %s: %s", model, exc)
                continue
            rollouts[r.model] = machine.resumed_after_restart(r, now)
            if r.live:
                log.info("resuming %s's rollout of %s: %s at %d%%", r.model, r.plan.candidate, r.phase, r.weight)
        self.rollouts = rollouts
        self._windows.clear()

    def adopt(self) -> None:
        """Finish the step a record names when traffic is still at the one before it.

        The record is written before traffic changes; a leader (or process) that
        stopped between the two left the traffic one step behind. Traffic that is
        not a split between the rollout's two versions was changed by someone
        else, and is left alone (the next strict step fails the rollout, saying so).
        """
        for model, r in self.rollouts.items():
            if r.phase is not Phase.PROGRESSING:
                continue
            try:
                current = {v: w for v, w in self._model(model).split.weights if w > 0}
            except ChangeError:
                continue
            want = r.plan.traffic(r.weight)
            if current == want or not set(current) <= {r.plan.baseline, r.plan.candidate}:
                continue
            log.warning("%s rollout: traffic is %s, its record says %s; finishing that step", model, current, want)
            try:
                self.changes.apply(
                    model, self._planner(None, r, strict=False), who=AUTO, action="rollout-step", if_match=None
                )
            except ChangeError as exc:
                log.error("%s rollout: cannot finish the step to %d%%: %s", model, r.weight, exc.reason)

    # -- reading ---------------------------------------------------------------------

    def get(self, model: str) -> Rollout:
        if not self.is_leader():
            self.load()  # a standby shows what the leader recorded last
        r = self.rollouts.get(model)
        if r is None:
            raise NotFound(f"{model!r} has no rollout; start one with `switchyard rollout start {model}`")
        return r

    def view(self, model: str) -> dict[str, Any]:
        r = self.get(model)
        out = r.to_json()
        started = self._windows.get(model)
        out["next_check_at"] = started[0] + r.plan.interval_s if started and r.phase is Phase.PROGRESSING else None
        out["traffic"] = r.plan.traffic(r.weight)
        return out

    # -- verbs -----------------------------------------------------------------------

    def start(self, model: str, who: str) -> Transition:
        current = self.rollouts.get(model)
        if current is not None and current.live:
            raise Conflict(f"{model!r} already has a {current.phase.value} rollout of {current.plan.candidate!r}")
        m = self._model(model)
        if m.canary is None:
            raise Conflict(f"{model!r} has no canary block in its policy: add spec.canary first")
        plan = Plan.of(m.canary, _baseline(m, m.canary))
        new = machine.start(model, plan, self.clock())
        strays = [v for v, w in m.split.weights if w > 0 and v not in (plan.baseline, plan.candidate)]
        if strays:
            raise Conflict(
                f"{model!r}'s split also sends traffic to {', '.join(strays)}: a rollout moves traffic between "
                f"{plan.baseline!r} and {plan.candidate!r} only; shift the others away first",
            )
        return self._commit(None, new, who, "rollout-start")

    def pause(self, model: str, who: str) -> Transition:
        return self._verb(model, who, "rollout-pause", lambda r, now: machine.pause(r, now))

    def resume(self, model: str, who: str) -> Transition:
        return self._verb(model, who, "rollout-resume", machine.resume)

    def abort(self, model: str, who: str) -> Transition:
        return self._verb(model, who, "rollout-abort", lambda r, now: machine.abort(r, now))

    def promote(self, model: str, who: str) -> Transition:
        return self._verb(model, who, "rollout-promote", machine.promote)

    def _verb(self, model: str, who: str, action: str, step: Callable[[Rollout, float], Rollout]) -> Transition:
        old = self.get(model)
        try:
            new = step(old, self.clock())
        except TransitionError as exc:
            raise Conflict(str(exc)) from None
        return self._commit(old, new, who, action)

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                leading = self.is_leader()
                if leading and not self._leading:
                    self.load()  # what the previous leader (or this process, before a restart) recorded
                    self.adopt()
                self._leading = leading
                if leading:
                    await self.tick()
            except Exception:  # a bug must not stop every rollout for good
                log.exception("rollout tick failed")
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        for model, r in list(self.rollouts.items()):
            if not r.live:
                continue
            now = self.clock()
            late = machine.expired(r, now)
            if late is not None:
                self._automatic(r, late, "rollout-failed")
            elif r.phase is Phase.PROGRESSING:
                await self._maybe_check(model, r)

    async def _maybe_check(self, model: str, r: Rollout) -> None:
        started = self._windows.get(model)
        if started is not None and self.clock() < started[0] + r.plan.interval_s:
            return
        # A version's HTTP and gRPC calls both count (a model without gRPC has no such cluster).
        candidate, baseline = (
            (cluster_name(model, v), grpc_cluster_name(model, v)) for v in (r.plan.candidate, r.plan.baseline)
        )
        try:
            reading: Reading | None = await self.stats.read([*candidate, *baseline])
            error = None
        except MetricsError as exc:
            reading, error = None, str(exc)
        if self.rollouts.get(model) is not r:
            return  # a verb changed the rollout while we read: this reading belongs to nothing
        now = self.clock()
        if started is None:
            if reading is not None:
                self._windows[model] = (now, reading)
            else:
                log.warning("%s rollout: cannot start an interval: %s", model, error)
            return
        if reading is None:
            cand, base = Window(0, 0, None), None
            check = machine.Check(now, r.weight, cand, base, False, (f"statistics unavailable: {error}",))
        else:
            cand = window(started[1], reading, candidate)
            base = window(started[1], reading, baseline)
            check = machine.evaluate(r.plan, now, r.weight, cand, base)
            self._windows[model] = (now, reading)  # the next interval starts where this one ended
        new = machine.after_check(r, check)
        if new.phase is Phase.PROGRESSING and new.weight == r.weight:
            self._save(new)  # same step: keep the count of failures across a restart
            self.rollouts[model] = new
            return
        action = {Phase.PROMOTED: "rollout-promoted", Phase.ROLLED_BACK: "rollout-rollback"}.get(
            new.phase, "rollout-step"
        )
        self._automatic(r, new, action, strict=True)

    # -- applying --------------------------------------------------------------------

    def _automatic(self, old: Rollout, new: Rollout, action: str, *, strict: bool = False) -> Transition:
        """A transition the runner makes on its own, audited as `rollout` (verbs are audited by the caller)."""
        return audited(
            self.audit,
            who=AUTO,
            action=action,
            model=new.model,
            request={"candidate": new.plan.candidate, "baseline": new.plan.baseline},
            apply=lambda: self._commit(old, new, AUTO, action, strict=strict),
            outcome=Transition.outcome,
        )

    def _commit(self, old: Rollout | None, new: Rollout, who: str, action: str, *, strict: bool = False) -> Transition:
        """Write the new weight through the policy path (if it changed) and persist the rollout."""
        model = new.model
        old_weight = None if old is None else old.weight
        snapshot = None
        before = after = None
        if old is None or new.weight != old.weight:
            self._save(new)  # first: a successor finds the record at or ahead of the traffic (see adopt)
            try:
                change = self.changes.apply(
                    model, self._planner(old, new, strict=strict), who=who, action=action, if_match=None
                )
                before, after, snapshot = change.old.to_json(), change.new.to_json(), change.snapshot_version
            except ChangeError as exc:
                log.error("%s rollout: cannot set %s to %d%%: %s", model, new.plan.candidate, new.weight, exc.reason)
                new = machine.fail(new, self.clock(), f"{action} could not change traffic: {exc.reason}", weight=None)
                if old is None:  # nothing started: refuse the verb (the record says why it failed)
                    self._save(new)
                    self.rollouts[model] = new
                    raise
                action = "rollout-failed"
        self.rollouts[model] = new
        self._windows.pop(model, None)  # the next interval starts after the change
        self._save(new)
        log.info(
            "%s rollout: %s -> %s (%s at %d%%): %s",
            model,
            old and old.phase,
            new.phase,
            new.plan.candidate,
            new.weight,
            new.reason,
        )
        return Transition(
            rollout=new,
            action=action,
            old=before or {"phase": None if old is None else old.phase.value, "weight": old_weight},
            new=after or {"phase": new.phase.value, "weight": new.weight},
            snapshot_version=snapshot,
            reason=f"{new.phase.value}: {new.reason}",
        )

    def _planner(self, old: Rollout | None, new: Rollout, *, strict: bool) -> Planner:
        want = new.plan.traffic(new.weight)

        def plan(state: RoutingState, m: ir.Model) -> RoutingState:
            if strict and old is not None:
                expected = old.plan.traffic(old.weight)
                if {v: w for v, w in state.traffic if w > 0} != expected:
                    raise Conflict(
                        f"traffic was changed outside the rollout (expected {expected}, found {dict(state.traffic)}); "
                        "leaving it as it is",
                    )
            declared = {v.name for v in m.versions}
            for version in want:
                if version not in declared:
                    raise Conflict(f"version {version!r} is no longer declared in {m.name!r}")
            # A version given live traffic stops being a mirror (a version cannot shadow itself).
            return RoutingState(tuple(want.items()), tuple(s for s in state.shadow if s[0] not in want))

        return plan

    def _model(self, name: str) -> ir.Model:
        intent = self.changes.controller.intent
        try:
            if intent is None:
                raise KeyError(name)
            return intent.model(name)
        except KeyError:
            raise no_such_model(name, (m.name for m in intent.models) if intent else ()) from None

    def _save(self, r: Rollout) -> None:
        try:
            self.store.save(r.model, r.to_json())
        except OSError as exc:
            raise Conflict(f"cannot record {r.model!r}'s rollout: {exc}") from None

    async def close(self) -> None:
        await self.stats.close()


def _baseline(m: ir.Model, canary: ir.Canary) -> str:
    if canary.baseline is not None:
        return canary.baseline
    others = [(w, v) for v, w in m.split.weights if v != canary.candidate and w > 0]
    if not others:
        raise Conflict(f"{canary.candidate!r} already has all of {m.name!r}'s traffic: nothing to roll out from")
    return max(others, key=lambda p: p[0])[1]
