"""Operator verbs (shift, shadow, promote, rollback) as policy-file edits.

A change never touches Envoy resources. It is planned against the policy files
as they are on disk, validated as a whole policy set with the edited text in
place, written back (``control_plane.sources.splice``), and then published by the same
reload a hand edit goes through: source -> validate -> IR -> translate ->
snapshot -> push. The file watcher sees our write too; its reload finds the
same content, builds the same snapshot, and ``cache.set`` ignores it.

Contract: single-threaded. The admin API calls this from the event loop that
owns the controller, with no ``await`` between planning and publishing, so
two racing requests are serialised and the second sees the first's ETag.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from control_plane import ir
from control_plane.engine.controller import Controller, ReloadOutcome
from control_plane.engine.health import HealthProber
from control_plane.operations.history import History, HistoryEntry, RoutingState
from control_plane.policy.compile import to_model
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import Located, PolicySet, load_texts
from control_plane.policy.schema import ModelRoute
from control_plane.sources import WriteBack, WriteConflict
from control_plane.sources.splice import StoreError

Planner = Callable[[RoutingState, ir.Model], RoutingState]


class ChangeError(Exception):
    """A change (or a read) that cannot be done; the subclass says what kind of refusal it is.

    Domain errors carry no transport details: the admin API maps each kind to an
    HTTP status at its edge (``admin/errors.py``), the audit log records the kind.
    """

    kind = "refused"

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []

    @property
    def reason(self) -> str:
        return "; ".join([self.message, *self.errors])


class NotFound(ChangeError):
    """No such model, version, rollout or history."""

    kind = "not_found"


class Conflict(ChangeError):
    """The current state does not allow it (invalid files on disk, a rollout already running)."""

    kind = "conflict"


class Invalid(ChangeError):
    """What was asked for is not valid (weights that do not sum to 100, an undeclared version)."""

    kind = "invalid"


class Stale(ChangeError):
    """The caller's view is out of date (a stale If-Match)."""

    kind = "stale"


@dataclass(slots=True)
class Plan:
    model: str
    file: str
    old: RoutingState
    new: RoutingState
    old_text: str
    new_text: str
    before: PolicySet  # the policy set on disk
    after: PolicySet  # the same set with the edit in place (validated)

    @property
    def changed(self) -> bool:
        return self.new_text != self.old_text


@dataclass(slots=True)
class Change:
    model: str
    file: str
    old: RoutingState
    new: RoutingState
    changed: bool
    snapshot_version: str | None
    etag: str
    history: list[HistoryEntry] = field(default_factory=list)


def strong_etag(value: Any) -> str:
    """A strong ETag of JSON-like data: the hash of its canonical serialisation."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:20] + '"'


def etag_of(route: ModelRoute) -> str:
    """A strong ETag over the model's whole validated policy, not just its split."""
    return strong_etag(route.model_dump(mode="json"))


def no_such_model(name: str, known: Iterable[str]) -> ChangeError:
    """404 for an unknown model, naming the ones there are (a typo is then obvious)."""
    names = ", ".join(known) or "none"
    return NotFound(f"no model named {name!r} (models: {names})")


def combined_etag(etags: list[str]) -> str:
    """One strong ETag for a collection: changes whenever any member's does."""
    return strong_etag(etags)


def etag_matches(if_match: str | None, etag: str) -> bool:
    """RFC 9110 If-Match: absent or ``*`` matches; otherwise a strong match against the list."""
    if if_match is None or if_match.strip() == "*":
        return True
    return any(candidate.strip() == etag for candidate in if_match.split(","))


def find_model(policies: PolicySet | None, name: str) -> Located[ModelRoute] | None:
    if policies is None:
        return None
    for located in policies.models:
        if located.value.metadata.name == name:
            return located
    return None


class PolicyChanges:
    """The operator verbs. Reads the policy set through the controller's source and writes
    accepted changes through ``write_back`` (for files: the same files)."""

    def __init__(self, controller: Controller, prober: HealthProber, history: History, write_back: WriteBack) -> None:
        self.controller = controller
        self.prober = prober
        self.history = history
        self.write_back = write_back
        controller.on_reverted = self._reverted

    # -- publishing ------------------------------------------------------------------

    def reload(self, *, who: str = "file", action: str = "file-edit") -> ReloadOutcome:
        """Re-read the policy files and publish; record split changes under ``who``."""
        return self._observe(self.controller.reload(), who=who, action=action)

    async def reload_in_thread(self, *, who: str = "file", action: str = "file-edit") -> ReloadOutcome | None:
        """``reload``, with the files read and validated off the event loop (xDS and the API keep going).

        None when another reload published while these files were being read:
        that one read the files later, so this result is stale (and any edit made
        after it triggers another reload).
        """
        generation = self.controller.generation
        started = time.perf_counter()
        loaded = await asyncio.to_thread(self.controller.read)
        if self.controller.generation != generation:
            return None
        outcome = self.controller.publish(loaded, read_ms=(time.perf_counter() - started) * 1000)
        return self._observe(outcome, who=who, action=action)

    def _observe(self, outcome: ReloadOutcome, *, who: str, action: str) -> ReloadOutcome:
        intent = self.controller.intent
        if outcome.accepted and intent is not None:
            self.prober.set_intent(intent)
            self.history.observe(intent, who=who, action=action, snapshot_version=outcome.snapshot_version)
        return outcome

    def _reverted(self, intent: ir.RoutingIntent | None) -> None:
        """Envoy rejected the latest snapshot and the controller went back: follow it."""
        if intent is not None:
            self.prober.set_intent(intent)
            current = self.controller.cache.current
            self.history.observe(
                intent, who="envoy", action="envoy-rejected", snapshot_version=current.version if current else None
            )

    # -- the verbs -------------------------------------------------------------------

    def shift(self, model: str, weights: dict[str, int], *, who: str, if_match: str | None) -> Change:
        return self.apply(model, shift_to(weights), who=who, action="shift", if_match=if_match)

    def promote(self, model: str, version: str, *, who: str, if_match: str | None) -> Change:
        return self.apply(model, promote_to(version), who=who, action="promote", if_match=if_match)

    def set_shadow(self, model: str, version: str, percent: float, *, who: str, if_match: str | None) -> Change:
        return self.apply(model, mirror(version, percent), who=who, action="shadow", if_match=if_match)

    def stop_shadow(self, model: str, version: str | None, *, who: str, if_match: str | None) -> Change:
        return self.apply(model, unmirror(version), who=who, action="shadow-off", if_match=if_match)

    def rollback(self, model: str, *, who: str, if_match: str | None) -> Change:
        return self.apply(model, self.back(), who=who, action="rollback", if_match=if_match)

    def back(self) -> Planner:
        """To the split before the last change (from history); rolling back twice undoes the first."""

        def plan(old: RoutingState, m: ir.Model) -> RoutingState:
            entry = self.history.previous(m.name, old)
            if entry is None:
                raise Conflict(f"{m.name!r} has no earlier split in its history to roll back to")
            for version, _ in (*entry.state.traffic, *entry.state.shadow):
                if version not in _versions(m):
                    raise Conflict(
                        f"cannot roll back {m.name!r}: its previous split uses version {version!r}, "
                        "which is no longer declared",
                    )
            return entry.state

        return plan

    # -- planning and applying -------------------------------------------------------

    def plan(self, model: str, planner: Planner, *, if_match: str | None = None) -> Plan:
        """Everything up to (not including) the write: raises ChangeError if it cannot be done."""
        try:
            texts = self.controller.source.read()
            before = load_texts(texts)
        except PolicyErrors as exc:
            raise Conflict(
                "the policy files on disk are invalid; fix them before changing traffic",
                [str(e) for e in exc.errors],
            ) from None
        located = find_model(before, model)
        if located is None:
            raise no_such_model(model, (m.value.metadata.name for m in before.models))
        if not etag_matches(if_match, etag_of(located.value)):
            raise Stale(
                f"model {model!r} changed since you read it (If-Match {if_match} is stale, now "
                f"{etag_of(located.value)}); read it again and retry",
            )
        current = to_model(located.value)
        old = RoutingState.of(current)
        new = planner(old, current)
        file = located.source.file
        old_text = texts[file]
        if new == old:
            return Plan(model, file, old, new, old_text, old_text, before, before)
        try:
            new_text = self.write_back.edit_routing(file, old_text, model, dict(new.traffic), new.shadow)
        except StoreError as exc:
            raise Conflict(str(exc)) from None
        try:
            after = load_texts({**texts, file: new_text})
        except PolicyErrors as exc:
            raise Invalid("the change was rejected by policy validation", [str(e) for e in exc.errors]) from None
        edited = find_model(after, model)
        if edited is None or not RoutingState.of(to_model(edited.value)).same_as(new):
            raise Conflict(f"could not express the change in {file}; edit the file by hand")
        return Plan(model, file, old, new, old_text, new_text, before, after)

    def apply(self, model: str, planner: Planner, *, who: str, action: str, if_match: str | None) -> Change:
        plan = self.plan(model, planner, if_match=if_match)
        located = find_model(plan.after, model)
        assert located is not None
        etag = etag_of(located.value)
        if not plan.changed:
            current = self.controller.cache.current
            return Change(model, plan.file, plan.old, plan.new, False, current.version if current else None, etag)
        try:
            self.write_back.write(plan.file, plan.new_text)
        except WriteConflict as exc:
            raise Stale(f"{exc}; read model {model!r} again and retry") from None
        except OSError as exc:
            raise Conflict(f"cannot write {plan.file}: {exc}") from None
        before = len(self.history.entries(model))
        outcome = self.reload(who=who, action=action)
        if not outcome.accepted:  # someone edited another file between our read and our reload
            raise Conflict(f"{plan.file} was written, but the policy set was rejected on reload", outcome.errors)
        return Change(
            model,
            plan.file,
            plan.old,
            plan.new,
            True,
            outcome.snapshot_version,
            etag,
            self.history.entries(model)[before:],
        )


# -- planners: (current state, current model) -> wanted state, or ChangeError ----------------


def shift_to(weights: dict[str, int]) -> Planner:
    def plan(old: RoutingState, m: ir.Model) -> RoutingState:
        _check_weights(m, weights)
        return RoutingState(tuple(weights.items()), old.shadow)

    return plan


def promote_to(version: str) -> Planner:
    def plan(old: RoutingState, m: ir.Model) -> RoutingState:
        _check_version(m, version)
        # Promoting the version being mirrored is the usual path: it stops being a shadow.
        return RoutingState(((version, 100),), tuple(s for s in old.shadow if s[0] != version))

    return plan


def mirror(version: str, percent: float) -> Planner:
    def plan(old: RoutingState, m: ir.Model) -> RoutingState:
        _check_version(m, version)
        if not 0 < percent <= 100:
            raise Invalid(f"percent must be > 0 and <= 100 (got {percent}); to stop, DELETE")
        live = dict(old.traffic).get(version, 0)
        if live > 0:
            raise Invalid(
                f"{version!r} already receives {live}% of live traffic in {m.name!r}: a version cannot shadow itself",
            )
        shadow = dict(old.shadow)
        shadow[version] = float(percent)
        return RoutingState(old.traffic, tuple(shadow.items()))

    return plan


def unmirror(version: str | None) -> Planner:
    """Stop mirroring to ``version``, or to every version when it is None."""

    def plan(old: RoutingState, m: ir.Model) -> RoutingState:
        if version is None:
            return RoutingState(old.traffic, ())
        _check_version(m, version)
        if version not in dict(old.shadow):
            raise NotFound(f"{version!r} is not mirrored in {m.name!r}")
        return RoutingState(old.traffic, tuple(s for s in old.shadow if s[0] != version))

    return plan


def _versions(model: ir.Model) -> list[str]:
    return [v.name for v in model.versions]


def _check_version(model: ir.Model, version: str) -> None:
    if version not in _versions(model):
        raise Invalid(
            f"model {model.name!r} has no version {version!r}; its versions are {', '.join(_versions(model))}",
        )


def _check_weights(model: ir.Model, weights: dict[str, int]) -> None:
    if not weights:
        raise Invalid("weights must name at least one version")
    for version in weights:
        _check_version(model, version)
    total = sum(weights.values())
    if total != 100:
        raise Invalid(f"weights must sum to 100 (got {total})")
