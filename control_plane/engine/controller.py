"""One direction only: policy source -> validate -> IR -> translate -> snapshot -> cache.

A reload can only accept or reject. Whatever goes wrong while reading,
validating, compiling, translating or snapshotting a policy set becomes a
rejection that names the file and line (and is logged); the last accepted
configuration keeps being served. An exception never leaves ``reload``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from control_plane import ir
from control_plane.engine import services as service_endpoints
from control_plane.engine.services import ServiceEndpoints
from control_plane.ir import RoutingIntent
from control_plane.policy.compile import LocalOverrides, overridden_model, to_intent
from control_plane.policy.errors import PolicyError, PolicyErrors
from control_plane.policy.loader import Located, PolicySet, load_texts
from control_plane.policy.removals import removal_errors
from control_plane.policy.schema import ModelRoute
from control_plane.policy.yaml_source import paused_gc
from control_plane.sources import PolicySource
from control_plane.translate import Translator, short_type, translate
from control_plane.xds.cache import Rejection, SnapshotCache
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot

log = logging.getLogger(__name__)

# Policy sets of the last published snapshots, so that when Envoy rejects one and
# the cache falls back, the controller serves (and reports) what Envoy runs.
_PUBLISHED_KEPT = 8


@dataclass(slots=True)
class ReloadOutcome:
    at: float
    accepted: bool
    errors: list[str] = field(default_factory=list)
    snapshot_version: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)  # load, intent, translate, snapshot
    changed: bool = False  # accepted and published a new snapshot (not a no-op such as our own write-back)
    models: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "accepted": self.accepted,
            "changed": self.changed,
            "errors": self.errors,
            "snapshot_version": self.snapshot_version,
            "models": self.models,
        }


RECENT_RELOADS = 32  # kept for /v1/status, so `switchyard up` can print every outcome


class Controller:
    """Owns the accepted policies and publishes their translation.

    An invalid edit is recorded (``last_rejected``) and changes nothing: the
    last accepted intent keeps being served. When Envoy rejects (NACKs) a
    published snapshot, the cache falls back to the one before it and so does
    the controller: ``policies`` and ``intent`` are always what Envoy is asked
    to run, and ``last_rejected`` carries Envoy's message.

    Contract: one event loop owns it. ``read`` may run in another thread (it
    only reads the source and validates); ``publish`` and everything else run
    on the loop.
    """

    def __init__(
        self,
        source: PolicySource,
        cache: SnapshotCache,
        overrides: LocalOverrides | None = None,
        *,
        allow_empty: bool = False,
        services: ServiceEndpoints | None = None,
    ) -> None:
        self.source = source
        # Resolves versions that name a Kubernetes Service; None (file mode): such a version is an error.
        self.services = services
        self.cache = cache
        self.overrides = overrides or LocalOverrides()
        self.allow_empty = allow_empty
        self.policies: PolicySet | None = None
        self.intent: RoutingIntent | None = None
        # ``intent`` with Service endpoints filled in: what the last snapshot was built from.
        self.served: RoutingIntent | None = None
        self.unready: frozenset[str] = frozenset()  # clusters the prober finds unready
        # What ``served`` was translated with: ``unready`` plus Service-backed versions without endpoints.
        self.served_unready: frozenset[str] = frozenset()
        self.last_reload: ReloadOutcome | None = None
        self.last_rejected: ReloadOutcome | None = None
        self.reloads: deque[ReloadOutcome] = deque(maxlen=RECENT_RELOADS)  # newest last
        # Bumped by every publish attempt: a reload whose files were read before
        # another publish ran is stale and must not overwrite it (see PolicyChanges).
        self.generation = 0
        # Called with the intent after Envoy's rejection rolled the controller back.
        self.on_reverted: Callable[[RoutingIntent | None], None] | None = None
        self.translator = Translator()
        # IR per validated document. The loader hands back the same (immutable)
        # ModelRoute object while a document is unchanged, so identity is a safe key.
        self._models: dict[int, tuple[ModelRoute, ir.Model]] = {}
        self._published: OrderedDict[str, tuple[PolicySet, RoutingIntent]] = OrderedDict()
        cache.on_fallback = self._envoy_rejected

    @property
    def origin(self) -> str:
        """How errors about the policy set as a whole name it."""
        return self.source.name

    # -- reloading -------------------------------------------------------------------

    def read(self) -> PolicySet | PolicyErrors:
        """Read and validate the policy files (no side effects; safe off the event loop)."""
        try:
            return load_texts(self.source.read())
        except PolicyErrors as exc:
            return exc
        except Exception as exc:  # a bug in the loader; still only a rejection
            log.exception("unexpected error while reading the policy files")
            return PolicyErrors([PolicyError(self.origin, 0, (), f"internal error while reading: {_describe(exc)}")])

    def reload(self) -> ReloadOutcome:
        started = time.perf_counter()
        return self.publish(self.read(), read_ms=(time.perf_counter() - started) * 1000)

    def publish(self, loaded: PolicySet | PolicyErrors, *, read_ms: float = 0.0) -> ReloadOutcome:
        """Accept ``loaded`` and publish its snapshot, or record why it is rejected."""
        self.generation += 1
        # A reload allocates hundreds of thousands of acyclic objects at 10,000
        # models; the cyclic collector would rescan them all repeatedly (it doubled
        # the time). Reference counting frees them; collection resumes afterwards.
        with paused_gc():
            try:
                return self._publish(loaded, read_ms)
            except Exception as exc:  # a bug; the outcome is still a rejection, never an exception
                log.exception("unexpected error while publishing the policies")
                return self._reject([f"internal error while publishing: {_describe(exc)} (please report it)"])

    def _publish(self, loaded: PolicySet | PolicyErrors, read_ms: float) -> ReloadOutcome:
        if isinstance(loaded, PolicyErrors):
            return self._reject([str(e) for e in loaded.errors])
        policies = loaded
        held = removal_errors(self.policies, policies, where=self.origin, allow_empty=self.allow_empty)
        if self.services is None:
            held = [*held, *service_endpoints.unresolvable(policies)]
        if held:
            return self._reject([str(e) for e in held])
        marks = [time.perf_counter()]
        intent = self._to_intent(policies)
        marks.append(time.perf_counter())
        try:
            served, unready = self._served(intent)
            resources = self.translator.translate(served, unready)
            marks.append(time.perf_counter())
            snapshot = Snapshot.build(resources, previous=self.cache.current)
            marks.append(time.perf_counter())
        except InconsistentSnapshot as exc:
            return self._reject([f"internal consistency check failed: {exc}"])
        except Exception as exc:  # e.g. a value protobuf refuses to serialise: name the model
            return self._reject([str(e) for e in untranslatable(policies, intent, exc)])
        rejection = self.cache.rejection(snapshot.version)
        if rejection is not None:
            return self._reject([_envoy_said(rejection, "this configuration")])
        self.policies, self.intent, self.served, self.served_unready = policies, intent, served, unready
        self._remember(snapshot, policies, intent)
        changed = self.cache.set(snapshot)
        stages = ("intent", "translate", "snapshot")
        timings = {"load": round(read_ms, 3)}
        timings.update({s: round((b - a) * 1000, 3) for s, a, b in zip(stages, marks[:-1], marks[1:], strict=True)})
        outcome = ReloadOutcome(
            time.time(),
            True,
            snapshot_version=snapshot.version,
            timings_ms=timings,
            changed=changed,
            models=len(intent.models),
        )
        self._record(outcome)
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
        self.retranslate("a readiness change")

    def retranslate(self, why: str) -> None:
        """Publish the accepted intent again with current readiness and Service endpoints."""
        if self.intent is None or self.policies is None:
            return
        try:
            with paused_gc():
                served, unready = self._served(self.intent)
                resources = self.translator.translate(served, unready)
                snapshot = Snapshot.build(resources, previous=self.cache.current)
        except Exception:  # the prober and the EndpointSlice watch call this: a failure must not stop them
            log.exception("cannot re-translate after %s; still serving the previous snapshot", why)
            return
        self.served, self.served_unready = served, unready
        self._remember(snapshot, self.policies, self.intent)
        self.cache.set(snapshot)

    def _served(self, intent: RoutingIntent) -> tuple[RoutingIntent, frozenset[str]]:
        """What to translate: ``intent`` with Service endpoints resolved, and the clusters to give no weight."""
        if self.services is None:
            return intent, self.unready
        served = service_endpoints.resolve(intent, self.services)
        return served, self.unready | service_endpoints.without_endpoints(served)

    # -- Envoy's verdict -------------------------------------------------------------

    def _remember(self, snapshot: Snapshot, policies: PolicySet, intent: RoutingIntent) -> None:
        self._published[snapshot.version] = (policies, intent)
        self._published.move_to_end(snapshot.version)
        while len(self._published) > _PUBLISHED_KEPT:
            self._published.popitem(last=False)

    def _envoy_rejected(self, rejection: Rejection, serving: Snapshot | None) -> None:
        """The cache fell back from a snapshot Envoy NACKed: serve, and show, what Envoy runs."""
        kept = self._published.get(serving.version) if serving is not None else None
        self.policies, self.intent = kept if kept is not None else (None, None)
        if self.intent is not None:
            self.served, self.served_unready = self._served(self.intent)
        else:
            self.served, self.served_unready = None, frozenset()
        now = "nothing" if serving is None else f"snapshot {serving.version}"
        outcome = ReloadOutcome(
            time.time(),
            False,
            [_envoy_said(rejection, f"snapshot {rejection.snapshot_version}") + f"; serving {now} again"],
            snapshot_version=rejection.snapshot_version,
        )
        self._record(outcome)
        log.error("%s", outcome.errors[0])
        if self.on_reverted is not None:
            self.on_reverted(self.intent)

    # -- helpers ---------------------------------------------------------------------

    def _to_intent(self, policies: PolicySet) -> RoutingIntent:
        """``to_intent(policies, overrides)``, reusing the IR of documents that did not change."""
        known = self._models
        current: dict[int, tuple[ModelRoute, ir.Model]] = {}

        def compile_model(route: ModelRoute) -> ir.Model:
            hit = known.get(id(route))
            if hit is None or hit[0] is not route:
                hit = (route, overridden_model(route, self.overrides))
            current[id(route)] = hit
            return hit[1]

        intent = to_intent(policies, self.overrides, compile_model)
        self._models = current  # only live documents: bounded by the policy set
        return intent

    def _record(self, outcome: ReloadOutcome) -> None:
        self.last_reload = outcome
        if not outcome.accepted:
            self.last_rejected = outcome
        self.reloads.append(outcome)

    def _reject(self, errors: list[str]) -> ReloadOutcome:
        outcome = ReloadOutcome(time.time(), False, errors)
        self._record(outcome)
        log.error("policy change rejected, still serving the last good configuration:\n  %s", "\n  ".join(errors))
        return outcome


def translation_errors(policies: PolicySet, intent: RoutingIntent) -> list[PolicyError]:
    """What stops ``intent`` from becoming a consistent set of Envoy resources (usually nothing).

    The final check of ``switchyard validate`` and ``POST /v1/validate``: the
    controller's translation without its memo, so it needs no state and can
    run in any thread.
    """
    try:
        Snapshot.build(translate(intent))
    except InconsistentSnapshot as exc:
        return [PolicyError("policies", 0, (), f"internal consistency check failed: {exc}")]
    except Exception as exc:
        return untranslatable(policies, intent, exc)
    return []


def untranslatable(policies: PolicySet, intent: RoutingIntent, exc: Exception) -> list[PolicyError]:
    """Which models cannot be turned into Envoy resources, found by translating each alone.

    Only runs after the whole translation failed, so the happy path pays nothing.
    Validation should make this unreachable; it exists so that a gap in it is
    still a rejection that names a file, not a crash.
    """
    log.error("translation failed (%s); looking for the model that causes it", _describe(exc))
    sources: dict[str, Located[ModelRoute]] = {m.value.metadata.name: m for m in policies.models}
    errors: list[PolicyError] = []
    for model in intent.models:
        try:
            translate(RoutingIntent(intent.listener, (model,)))
        except Exception as one:
            located = sources.get(model.name)
            file, line = (located.source.file, located.source.line) if located else ("policies", 0)
            why = f"model {model.name!r} cannot be translated into Envoy configuration: {_describe(one)}"
            errors.append(PolicyError(file, line, (), why))
    if not errors:  # only the combination fails
        errors.append(PolicyError("policies", 0, (), f"cannot translate the policy set: {_describe(exc)}"))
    return errors


def _envoy_said(rejection: Rejection, what: str) -> str:
    return (
        f"Envoy {rejection.node_id!r} rejected {what} "
        f"({short_type(rejection.type_url)}, snapshot {rejection.snapshot_version}): {rejection.message}"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
