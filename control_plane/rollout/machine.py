"""The rollout state machine: pure functions from (rollout, event, time) to the next rollout.

    progressing ──check passes──▶ progressing (next step) ──last step passes──▶ promoted
        │  ▲  └──failure_threshold consecutive failed checks──▶ rolled_back
    pause│  │resume                      abort (any live state) ──▶ rolled_back
        ▼  │                             promote (any live state) ──▶ promoted
      paused                             deadline passed ──▶ failed (traffic back to the baseline)

Every state has a deadline: ``progressing`` must advance a step within
``progress_deadline``, ``paused`` must be resumed within ``pause_deadline``, and
the terminal states (promoted, rolled_back, failed) have nothing left to wait for.
The candidate's weight in each state is what the runner writes to the policy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from control_plane import ir
from control_plane.rollout.metrics import Window


class Phase(StrEnum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


TERMINAL = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED})
KEEP_CHECKS = 20  # the latest checks kept in the state (and shown by `rollout status`)


class TransitionError(Exception):
    """The verb does not apply in the rollout's current state (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The canary block as it was when the rollout started (later edits do not change it)."""

    candidate: str
    baseline: str
    weights: tuple[int, ...]
    interval_s: float
    max_error_rate: float
    max_p99_ms: float | None
    max_p99_ratio: float | None
    min_requests: int
    failure_threshold: int
    progress_deadline_s: float
    pause_deadline_s: float

    @classmethod
    def of(cls, canary: ir.Canary, baseline: str) -> Plan:
        return cls(
            canary.candidate,
            baseline,
            canary.weights,
            canary.interval_ms / 1000,
            canary.max_error_rate,
            canary.max_p99_ms,
            canary.max_p99_ratio,
            canary.min_requests,
            canary.failure_threshold,
            canary.progress_deadline_ms / 1000,
            canary.pause_deadline_ms / 1000,
        )

    def traffic(self, weight: int) -> dict[str, int]:
        """The default split with the candidate at ``weight``."""
        if weight >= 100:
            return {self.candidate: 100}
        if weight <= 0:
            return {self.baseline: 100}
        return {self.baseline: 100 - weight, self.candidate: weight}


@dataclass(frozen=True, slots=True)
class Check:
    at: float
    weight: int
    candidate: Window
    baseline: Window | None
    passed: bool
    reasons: tuple[str, ...]  # why it failed (empty when it passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "weight": self.weight,
            "candidate": self.candidate.to_json(),
            "baseline": None if self.baseline is None else self.baseline.to_json(),
            "passed": self.passed,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Check:
        def win(w: dict[str, Any] | None) -> Window | None:
            return None if w is None else Window(int(w["requests"]), int(w["errors"]), w.get("p99_ms"))

        cand = win(d["candidate"])
        assert cand is not None
        return cls(float(d["at"]), int(d["weight"]), cand, win(d["baseline"]), bool(d["passed"]), tuple(d["reasons"]))


def evaluate(plan: Plan, at: float, weight: int, candidate: Window, baseline: Window | None) -> Check:
    """Apply the gates to one interval. Too few requests fails: silence is not health."""
    reasons: list[str] = []
    if candidate.requests < plan.min_requests:
        reasons.append(f"only {candidate.requests} requests reached the candidate (min_requests {plan.min_requests})")
    else:
        if candidate.error_rate > plan.max_error_rate:
            reasons.append(f"error rate {candidate.error_rate:.2%} > {plan.max_error_rate:.2%}")
        p99 = candidate.p99_ms
        if plan.max_p99_ms is not None and p99 is not None and p99 > plan.max_p99_ms:
            reasons.append(f"p99 {p99:.1f} ms > {plan.max_p99_ms:g} ms")
        base = baseline.p99_ms if baseline is not None and baseline.requests >= plan.min_requests else None
        # Relative latency needs a baseline measured on enough requests; without one it is not judged.
        ratio = plan.max_p99_ratio
        if ratio is not None and p99 is not None and base is not None and base > 0 and p99 > base * ratio:
            reasons.append(f"p99 {p99:.1f} ms > {plan.max_p99_ratio:g} x baseline p99 {base:.1f} ms")
    return Check(at, weight, candidate, baseline, not reasons, tuple(reasons))


@dataclass(frozen=True, slots=True)
class Rollout:
    model: str
    plan: Plan
    phase: Phase
    step: int  # index into plan.weights of the current step
    weight: int  # the candidate's share now
    failed_checks: int  # consecutive
    started_at: float
    phase_since: float
    deadline: float | None
    reason: str | None = None  # why the last transition happened
    checks: tuple[Check, ...] = ()

    @property
    def live(self) -> bool:
        return self.phase not in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "phase": self.phase.value,
            "candidate": self.plan.candidate,
            "baseline": self.plan.baseline,
            "step": self.step,
            "weight": self.weight,
            "failed_checks": self.failed_checks,
            "started_at": self.started_at,
            "phase_since": self.phase_since,
            "deadline": self.deadline,
            "reason": self.reason,
            "plan": dataclasses.asdict(self.plan),
            "checks": [c.to_json() for c in self.checks],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rollout:
        p = dict(d["plan"])
        p["weights"] = tuple(p["weights"])
        return cls(
            model=str(d["model"]),
            plan=Plan(**p),
            phase=Phase(d["phase"]),
            step=int(d["step"]),
            weight=int(d["weight"]),
            failed_checks=int(d["failed_checks"]),
            started_at=float(d["started_at"]),
            phase_since=float(d["phase_since"]),
            deadline=None if d.get("deadline") is None else float(d["deadline"]),
            reason=d.get("reason"),
            checks=tuple(Check.from_json(c) for c in d.get("checks", ())),
        )


def start(model: str, plan: Plan, now: float) -> Rollout:
    return Rollout(
        model, plan, Phase.PROGRESSING, 0, plan.weights[0], 0, now, now, now + plan.progress_deadline_s, "started"
    )


def _to(r: Rollout, phase: Phase, now: float, reason: str, **changes: Any) -> Rollout:
    deadline = None
    if phase is Phase.PROGRESSING:
        deadline = now + r.plan.progress_deadline_s
    elif phase is Phase.PAUSED:
        deadline = now + r.plan.pause_deadline_s
    return dataclasses.replace(r, phase=phase, phase_since=now, deadline=deadline, reason=reason, **changes)


def after_check(r: Rollout, check: Check) -> Rollout:
    """Record a check: advance on a pass, roll back after ``failure_threshold`` failures in a row."""
    if r.phase is not Phase.PROGRESSING:
        return r
    checks = (*r.checks, check)[-KEEP_CHECKS:]
    now = check.at
    if not check.passed:
        failed = r.failed_checks + 1
        if failed >= r.plan.failure_threshold:
            why = f"{failed} failed checks in a row: " + "; ".join(check.reasons)
            return _to(r, Phase.ROLLED_BACK, now, why, weight=0, failed_checks=failed, checks=checks)
        return dataclasses.replace(r, failed_checks=failed, checks=checks)
    nxt = r.step + 1
    if nxt >= len(r.plan.weights) or r.plan.weights[nxt] >= 100:
        return _to(r, Phase.PROMOTED, now, "every step passed", weight=100, step=nxt, failed_checks=0, checks=checks)
    weight = r.plan.weights[nxt]
    # A new step gets a fresh progress deadline, and its own count of failures.
    return _to(
        r, Phase.PROGRESSING, now, f"step {nxt + 1}: {weight}%", step=nxt, weight=weight, failed_checks=0, checks=checks
    )


def pause(r: Rollout, now: float, reason: str = "paused by an operator") -> Rollout:
    if r.phase is not Phase.PROGRESSING:
        raise TransitionError(f"only a progressing rollout can be paused ({r.model}'s is {r.phase.value})")
    return _to(r, Phase.PAUSED, now, reason)


def resume(r: Rollout, now: float) -> Rollout:
    if r.phase is not Phase.PAUSED:
        raise TransitionError(f"only a paused rollout can be resumed ({r.model}'s is {r.phase.value})")
    return _to(r, Phase.PROGRESSING, now, "resumed by an operator", failed_checks=0)


def abort(r: Rollout, now: float, reason: str = "aborted by an operator") -> Rollout:
    if not r.live:
        raise TransitionError(f"{r.model}'s rollout has already ended ({r.phase.value})")
    return _to(r, Phase.ROLLED_BACK, now, reason, weight=0)


def promote(r: Rollout, now: float) -> Rollout:
    if not r.live:
        raise TransitionError(f"{r.model}'s rollout has already ended ({r.phase.value})")
    return _to(r, Phase.PROMOTED, now, "promoted by an operator", weight=100)


def fail(r: Rollout, now: float, reason: str, *, weight: int | None = 0) -> Rollout:
    """Something other than the gates ended it; ``weight=None`` leaves traffic as it is."""
    return _to(r, Phase.FAILED, now, reason, weight=r.weight if weight is None else weight)


def expired(r: Rollout, now: float) -> Rollout | None:
    """The rollout after its deadline passed, or None if it has not."""
    if not r.live or r.deadline is None or now < r.deadline:
        return None
    if r.phase is Phase.PAUSED:
        return fail(r, now, f"paused for longer than pause_deadline ({r.plan.pause_deadline_s:g} s)")
    return fail(r, now, f"no step advanced within progress_deadline ({r.plan.progress_deadline_s:g} s)")


def resumed_after_restart(r: Rollout, now: float) -> Rollout:
    """A restarted control plane does not count its own downtime against a progressing rollout."""
    if r.phase is Phase.PROGRESSING and r.deadline is not None:
        return dataclasses.replace(r, deadline=max(r.deadline, now + r.plan.interval_s * 2))
    return r
