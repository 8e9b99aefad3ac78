"""Policies as Kubernetes resources: the ModelRoutes and the Gateway of one namespace.

``KubernetesSource`` is the Kubernetes mode's ``PolicySource`` and ``WriteBack``.
Informers keep a local copy of every resource; each one is rendered as the policy
document it stands for (``apiVersion: switchyard/v1``, its kind, name, labels and
``spec``) under the origin ``modelroutes/<namespace>/<name>``, so the controller,
the admin change path and ``/v1/validate`` treat it exactly like a file, and errors
name the resource.

A bad resource is rejected alone: each new spec is validated together with the
accepted rest, and only if that passes does it replace the resource's last accepted
text. Otherwise the old text keeps serving and the errors are kept for its status
(``StatusWriter``). Resources that were held back are retried after every change,
since a conflict with another resource (an overlapping host) may be gone.

Writes (``switchyard traffic``, rollouts) replace the resource with the
resourceVersion it was read at: if someone changed it since, the API server
answers ``409 Conflict`` and the change fails as stale (``WriteConflict``), so an
edit made with kubectl is never overwritten unseen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx2  # lightkube 1.x speaks httpx2 (a fork of httpx): its errors are not httpx2.HTTPError
import lightkube
import yaml
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from control_plane.k8s.crd import API_VERSION
from control_plane.k8s.kinds import CLASSES, PLURALS
from control_plane.k8s.watch import Event, Informer
from control_plane.policy.errors import PolicyError, PolicyErrors, format_path
from control_plane.policy.loader import load_texts
from control_plane.sources import Shadow, WriteConflict
from control_plane.sources.splice import edit_routing

log = logging.getLogger(__name__)

POLICY_API_VERSION = "switchyard/v1"
FIELD_MANAGER = "switchyard"
CONFLICT_RETRIES = 3
WRITE_TIMEOUT_S = 3.0  # per request of a write (see _client)
ROLLOUT_KEY = "rollout"  # the part of a ModelRoute's status that holds its rollout record


class WriteRefused(OSError):
    """This replica may not write now (not the leader, or the resource's newest spec is rejected)."""


@dataclass(slots=True)
class Tracked:
    """One resource: its newest version as the API server has it, and what of it is accepted."""

    origin: str
    kind: str
    name: str
    obj: dict[str, Any]  # the newest object (metadata, spec, status) as plain JSON
    rendered: str  # the newest spec as a policy document
    text: str | None = None  # the last accepted rendering (None: never accepted)
    errors: tuple[PolicyError, ...] = ()  # why ``rendered`` is not accepted (empty: it is)

    @property
    def generation(self) -> int:
        return int(self.obj.get("metadata", {}).get("generation") or 0)

    @property
    def resource_version(self) -> str:
        return str(self.obj.get("metadata", {}).get("resourceVersion") or "")

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})

    @property
    def problems(self) -> list[str]:
        """The errors as status shows them: ``field.path: message`` (the rendered line means nothing to a user)."""
        return [f"{format_path(e.path)}: {e.message}" if e.path else e.message for e in self.errors]


def _newer(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a later version than ``than`` (resourceVersions compare as integers in practice)."""
    a = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    b = str((than.get("metadata") or {}).get("resourceVersion") or "")
    return not (a.isdigit() and b.isdigit()) or int(a) > int(b)


def origin_of(kind: str, namespace: str, name: str) -> str:
    return f"{PLURALS[kind]}/{namespace}/{name}"


def plain(obj: Any) -> dict[str, Any]:
    """A lightkube object (or a dict holding models) as plain JSON data."""
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    data = dict(obj)
    meta = data.get("metadata")
    if meta is not None and hasattr(meta, "to_dict"):
        data["metadata"] = meta.to_dict()
    return data


def merge_patch_from(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns ``old`` into ``new`` (null removes a key; lists are whole)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch = {key: None for key in old.keys() - new.keys()}
    patch.update({key: merge_patch_from(old.get(key), value) for key, value in new.items() if old.get(key) != value})
    return patch


def render(kind: str, obj: Mapping[str, Any]) -> str:
    """The policy document a resource stands for: what a file holding it would say."""
    meta = obj.get("metadata") or {}
    metadata: dict[str, Any] = {"name": meta.get("name")}
    if meta.get("labels"):
        metadata["labels"] = dict(meta["labels"])
    document = {"apiVersion": POLICY_API_VERSION, "kind": kind, "metadata": metadata, "spec": obj.get("spec")}
    # ASCII only: a raw NEL or LINE SEPARATOR would read back as a line break.
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=False)


class _KindConsumer:
    """What an informer of one kind hands its changes to."""

    def __init__(self, source: KubernetesSource, kind: str) -> None:
        self.source = source
        self.kind = kind

    async def replace_all(self, objects: dict[str, Any]) -> None:
        await self.source.update(self.kind, {name: plain(obj) for name, obj in objects.items()}, whole=True)

    async def apply(self, event: Event) -> None:
        obj = None if event.kind == "DELETED" else plain(event.obj)
        await self.source.update(self.kind, {event.name: obj}, whole=False)


class KubernetesSource:
    """A ``PolicySource`` and ``WriteBack`` over the ModelRoutes and Gateways of ``namespace``."""

    def __init__(
        self,
        namespace: str,
        config: KubeConfig | None = None,
        *,
        may_write: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.namespace = namespace
        self.config = config
        # None when this replica may write; otherwise why not (names the leader).
        self.may_write = may_write
        # Called after the accepted texts changed (the controller reloads); set by the wiring.
        self.on_change: Callable[[], Awaitable[None]] | None = None
        self._tracked: dict[str, Tracked] = {}
        self._texts: dict[str, str] = {}  # accepted texts by origin, replaced whole (read() runs in threads)
        self._writer: lightkube.Client | None = None
        self.informers: list[Informer] = []

    # -- PolicySource ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"namespace {self.namespace}"

    @property
    def locations(self) -> list[str]:
        return [f"{plural}/{self.namespace}" for plural in PLURALS.values()]

    def read(self) -> dict[str, str]:
        return self._texts

    def resources(self) -> list[Tracked]:
        return list(self._tracked.values())

    # -- following the API server ------------------------------------------------------

    def informers_for(self, client: lightkube.AsyncClient) -> list[Informer]:
        """One informer per kind, feeding this source; the caller runs them."""
        self.informers = [
            Informer(client, CLASSES[kind], self.namespace, _KindConsumer(self, kind)) for kind in CLASSES
        ]
        return self.informers

    @property
    def synced(self) -> bool:
        return bool(self.informers) and all(i.synced.is_set() for i in self.informers)

    async def update(self, kind: str, objects: Mapping[str, dict[str, Any] | None], *, whole: bool) -> None:
        """Take in new versions (None: deleted) of ``kind``; ``whole``: these are all there are."""
        changed = False
        seen = {origin_of(kind, self.namespace, name) for name in objects}
        if whole:
            for origin in [o for o, t in self._tracked.items() if t.kind == kind and o not in seen]:
                changed |= self._tracked.pop(origin).text is not None
        for name, obj in objects.items():
            origin = origin_of(kind, self.namespace, name)
            if obj is None:
                gone = self._tracked.pop(origin, None)
                changed |= gone is not None and gone.text is not None
                continue
            tracked = self._tracked.get(origin)
            if tracked is None:
                self._tracked[origin] = Tracked(origin, kind, name, obj, render(kind, obj))
            elif not _newer(obj, tracked.obj):
                continue  # our own write's result, seen before its watch event
            else:
                tracked.obj = obj
                tracked.rendered = render(kind, obj)
        changed |= self._settle()
        if changed and self.synced and self.on_change is not None:
            await self.on_change()

    def _settle(self) -> bool:
        """Accept every pending rendering that validates with the accepted rest; True if any was."""
        pending = sorted(o for o, t in self._tracked.items() if t.rendered != t.text)
        for origin in self._tracked.keys() - set(pending):
            self._tracked[origin].errors = ()
        if not pending:
            return self._publish()
        # Usually everything is fine: one validation for the lot (a relist of many resources).
        if self._valid({o: t.rendered for o, t in self._tracked.items()}) is None:
            for origin in pending:
                tracked = self._tracked[origin]
                tracked.text, tracked.errors = tracked.rendered, ()
            return self._publish()
        for origin in pending:
            tracked = self._tracked[origin]
            accepted = {o: t.text for o, t in self._tracked.items() if t.text is not None and o != origin}
            errors = self._valid({**accepted, origin: tracked.rendered})
            if errors is None:
                tracked.text, tracked.errors = tracked.rendered, ()
            else:
                own = tuple(e for e in errors if e.file == origin) or tuple(errors)
                if own != tracked.errors:  # said once, not again at every retry
                    tracked.errors = own
                    log.error(
                        "%s rejected, still serving its last accepted spec:\n  %s",
                        origin,
                        "\n  ".join(tracked.problems),
                    )
        return self._publish()

    def _publish(self) -> bool:
        texts = {o: t.text for o, t in sorted(self._tracked.items()) if t.text is not None}
        changed = texts != self._texts
        self._texts = texts
        return changed

    @staticmethod
    def _valid(texts: dict[str, str]) -> list[PolicyError] | None:
        try:
            load_texts(texts)
        except PolicyErrors as exc:
            return list(exc.errors)
        return None

    # -- WriteBack ---------------------------------------------------------------------

    def edit_routing(
        self, origin: str, text: str, model: str, traffic: Mapping[str, int], shadow: Sequence[Shadow]
    ) -> str:
        return edit_routing(text, model, traffic, shadow)

    def write(self, origin: str, text: str) -> None:
        """Replace the resource's spec, conditional on the resourceVersion it was read at."""
        refusal = self.may_write()
        if refusal is not None:
            raise WriteRefused(refusal)
        tracked = self._tracked.get(origin)
        if tracked is None:
            raise WriteRefused(f"{origin} no longer exists")
        if tracked.errors:
            raise WriteRefused(
                f"its newest spec (generation {tracked.generation}) was rejected: {'; '.join(tracked.problems)};"
                " fix or revert it first"
            )
        obj = self._replace(tracked, yaml.safe_load(text)["spec"])
        tracked.obj, tracked.rendered = obj, render(tracked.kind, obj)
        tracked.text, tracked.errors = tracked.rendered, ()
        self._publish()

    def _replace(self, tracked: Tracked, spec: Any) -> dict[str, Any]:
        """PUT the resource with ``spec``; a 409 caused by a change of its status or annotations only
        (the status writer's, or the leader's rollout record) is retried with the newer version."""
        client, current = self._client(), tracked.obj
        for _ in range(CONFLICT_RETRIES):
            meta = {k: v for k, v in (current.get("metadata") or {}).items() if k != "managedFields"}
            replacement = CLASSES[tracked.kind](
                apiVersion=API_VERSION,
                kind=tracked.kind,
                metadata=cast(ObjectMeta, ObjectMeta.from_dict(meta)),
                spec=spec,
            )
            try:
                return plain(client.replace(replacement, field_manager=FIELD_MANAGER))
            except ApiError as exc:
                if exc.status.code != 409:
                    raise OSError(f"the API server refused it: {exc.status.code} {exc.status.message}") from None
                current = self._get(tracked)
                if render(tracked.kind, current) != tracked.text:
                    raise WriteConflict(f"{tracked.origin} changed since it was read: {exc.status.message}") from None
            except httpx2.HTTPError as exc:
                raise OSError(f"cannot reach the API server: {exc}") from None
        raise WriteConflict(f"{tracked.origin} keeps changing; retry")

    def save_rollout(self, model: str, record: dict[str, Any]) -> None:
        """Keep a ModelRoute's rollout record in its status (``status.rollout``); raises ``OSError``."""
        refusal = self.may_write()
        if refusal is not None:
            raise WriteRefused(refusal)
        tracked = self._tracked.get(origin_of("ModelRoute", self.namespace, model))
        if tracked is None:
            raise WriteRefused(f"no ModelRoute named {model!r} in namespace {self.namespace}")
        # A JSON patch: it replaces the record whole and keeps its nulls (a merge patch deletes them).
        if tracked.status:
            patch = [{"op": "add", "path": f"/status/{ROLLOUT_KEY}", "value": record}]
        else:  # no status yet (the status writer has not run): create it
            patch = [{"op": "add", "path": "/status", "value": {ROLLOUT_KEY: record}}]
        try:
            written = self._client().patch(
                CLASSES["ModelRoute"].Status, model, patch, namespace=self.namespace, patch_type=PatchType.JSON
            )
        except ApiError as exc:
            raise OSError(f"the API server refused it: {exc.status.code} {exc.status.message}") from None
        except httpx2.HTTPError as exc:
            raise OSError(f"cannot reach the API server: {exc}") from None
        # Seen at once, not when the watch brings it: the next save computes its patch from it.
        obj = plain(written)
        if _newer(obj, tracked.obj):
            tracked.obj = {**tracked.obj, "metadata": obj.get("metadata"), "status": obj.get("status")}

    def rollouts(self) -> dict[str, dict[str, Any]]:
        """The rollout record of every ModelRoute that has one."""
        records: dict[str, dict[str, Any]] = {}
        for tracked in self._tracked.values():
            record = tracked.status.get(ROLLOUT_KEY)
            if tracked.kind == "ModelRoute" and isinstance(record, dict):
                records[tracked.name] = record
        return records

    def _get(self, tracked: Tracked) -> dict[str, Any]:
        try:
            return plain(self._client().get(CLASSES[tracked.kind], tracked.name, namespace=self.namespace))
        except ApiError as exc:
            raise WriteConflict(f"{tracked.origin} changed since it was read: {exc.status.message}") from None
        except httpx2.HTTPError as exc:
            raise OSError(f"cannot reach the API server: {exc}") from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _client(self) -> lightkube.Client:
        # A synchronous client: the admin change path is synchronous and runs on the event
        # loop, so an API server that hangs would hold xDS and the API up; the short timeout
        # bounds that (the change then fails with a message, nothing is half-written).
        if self._writer is None:
            self._writer = lightkube.Client(
                config=self.config,
                namespace=self.namespace,
                field_manager=FIELD_MANAGER,
                timeout=httpx2.Timeout(WRITE_TIMEOUT_S),
            )
        return self._writer
