"""A Kubernetes API server on loopback, close enough to the real one for our controllers.

kmock 0.8's ``KubernetesEmulator`` speaks the real HTTP API (discovery, list, watch,
get, create, patch, delete) but keeps objects as plain dicts: no resourceVersions, no
409 on a stale write, no PUT, every PATCH a deep merge, ``/status`` not separate,
watches that replay everything as ADDED. Leader election, informers and status writers
depend on exactly those semantics, so :class:`ApiServerEmulator` subclasses it and
replaces the stateful part (the fallback handlers and the write-tracking ``_handle``)
while keeping kmock's HTTP server, request parsing, discovery and reaction DSL. Tests
can still inject failures with reactions (``k['patch', k.resource(...)] << 500``); a
request a reaction answers changes nothing, as on a real server that failed it.

What is emulated, seen through any client (the tests check it through lightkube):

- ``metadata.resourceVersion``: one cluster-wide counter, a decimal string, bumped by
  every write that changes an object (a no-op patch changes nothing and sends no
  event, as on the real server); lists carry the collection's version.
- ``metadata.uid``, ``creationTimestamp`` (RFC 3339, second precision), ``namespace``
  (from the URL), ``generation``: 1 on create, +1 when anything outside ``metadata``
  and ``status`` changes (that is ``spec`` for our kinds).
- Optimistic concurrency: PATCH or PUT whose body carries a ``metadata.resourceVersion``
  other than the stored one gets ``409 Conflict``; POST of an existing name gets
  ``409 AlreadyExists``; PUT of a missing object ``404 NotFound``; PUT without a
  resourceVersion is refused with ``422 Invalid`` for custom resources and Leases
  (their strategies forbid unconditional updates) and allowed for Services and
  EndpointSlices. ``generateName`` works. DELETE honours
  ``preconditions.resourceVersion`` and ``finalizers`` (``deletionTimestamp`` first,
  gone once the finalizers are removed).
- The status subresource, for kinds registered with ``subresources={'status'}``:
  writes to ``.../status`` change only ``status``; writes to the object itself and
  creates ignore ``status``; ``/status`` of other kinds is ``404``.
- Patches by Content-Type: ``merge-patch+json`` per RFC 7386 (null deletes a key, lists
  are replaced whole); ``json-patch+json`` per RFC 6902; ``strategic-merge-patch+json``
  and ``apply-patch+yaml`` are treated as merge patches (server-side apply also
  creates a missing object). The real server would merge some built-in lists by key
  under a strategic patch, refuse strategic patches of custom resources (415), and
  track field managers under apply: none of that is emulated.
- Watches: without ``resourceVersion`` (or with ``"0"``) the current objects come as
  ADDED first, then later changes; from a resourceVersion, only the events after it
  (replayed from the event log, then live). ``allowWatchBookmarks=true`` adds a
  BOOKMARK carrying the current version every ``bookmark_interval_s`` without
  events; ``timeoutSeconds`` ends the stream cleanly. :meth:`ApiServerEmulator.compact`
  expires every version older than the current one: a later watch from such a
  version gets ``ERROR`` with a ``410 Expired`` Status and the stream ends, as after
  an etcd compaction.
- Equality-based label selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``) and the
  ``metadata.name`` / ``metadata.namespace`` field selectors on list and watch.

Not emulated: schema validation or defaulting of any kind (objects are stored as sent),
admission, ownerReferences and garbage collection, ``managedFields``, list paging
(``limit``/``continue``: everything comes in one page), list at a past
``resourceVersion`` (always served from the current state), set-based selectors
(``in``, ``notin``), deletecollection, ``dryRun``, ``watch`` initial-events
(``sendInitialEvents``), authentication and RBAC. Object responses are ``200`` where
the real server answers ``201 Created`` to a POST (clients do not tell them apart).

Usage::

    async with kube_emulator() as kube:
        client = kube.client("ml")                    # a lightkube AsyncClient for namespace ml
        await client.create(ModelRoute(metadata=ObjectMeta(name="a"), spec={...}))
        kube.emulator.compact()                       # old resourceVersions now give 410
        kube.emulator["patch", kube.emulator.resource(LEASES)] << 500   # inject a failure
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime
import json
import queue
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import lightkube
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User

from control_plane.k8s.crd import GROUP, VERSION
from control_plane.k8s.kinds import Gateway, ModelRoute

MODELROUTES = kmock.resource(group=GROUP, version=VERSION, plural="modelroutes")
GATEWAYS = kmock.resource(group=GROUP, version=VERSION, plural="gateways")
ENDPOINTSLICES = kmock.resource(group="discovery.k8s.io", version="v1", plural="endpointslices")
SERVICES = kmock.resource(group="", version="v1", plural="services")
LEASES = kmock.resource(group="coordination.k8s.io", version="v1", plural="leases")

_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}

RESOURCES: dict[kmock.resource, kmock.ResourceInfo] = {
    MODELROUTES: kmock.ResourceInfo(kind="ModelRoute", namespaced=True, verbs=_VERBS, subresources={"status"}),
    GATEWAYS: kmock.ResourceInfo(kind="Gateway", namespaced=True, verbs=_VERBS, subresources={"status"}),
    ENDPOINTSLICES: kmock.ResourceInfo(kind="EndpointSlice", namespaced=True, verbs=_VERBS),
    SERVICES: kmock.ResourceInfo(kind="Service", namespaced=True, verbs=_VERBS, subresources={"status"}),
    LEASES: kmock.ResourceInfo(kind="Lease", namespaced=True, verbs=_VERBS),
}

# Their registry strategies allow a PUT without a resourceVersion (last write wins);
# custom resources and Leases refuse one (apiextensions' and coordination's strategies).
UNCONDITIONAL_UPDATE = {SERVICES, ENDPOINTSLICES}

_Key = tuple[kmock.resource, str | None, str]


def api_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    # Explicit details: kmock's default ones hold a traceback the real Status never has.
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def _failure(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``Status`` object as the API server sends it with an error (and in a watch ERROR event)."""
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``generation`` tracks: everything but metadata and status (and type identity)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_version(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(obj))
    out.get("metadata", {}).pop("resourceVersion", None)
    return out


def _selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    for raw in (selector or "").split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def _fields_match(selector: str | None, obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata", {})
    values = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
    for raw in (selector or "").split(","):
        term = raw.strip()
        if not term:
            continue
        negate = "!=" in term
        key, value = (s.strip() for s in term.replace("!=", "=").replace("==", "=").split("=", 1))
        if key not in values:
            raise api_error(400, "BadRequest", f'field label not supported: "{key}"')
        if (values[key] == value) == negate:
            return False
    return True


@dataclass(frozen=True)
class _Event:
    revision: int
    resource: kmock.resource
    type: str
    object: dict[str, Any]


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with an API server's versioning, concurrency and subresource rules."""

    bookmark_interval_s: float = 1.0

    _revision: int = attrs.field(default=0, init=False)
    _compacted: int = attrs.field(default=0, init=False)  # watches from a version below this get 410
    _log: list[_Event] = attrs.field(factory=list, init=False)
    _log_revisions: list[int] = attrs.field(factory=list, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock maps PUT on a named object to no action; the real server's "update".
        self.fallback[kmock.method.PUT] << self._serve_replace

    @property
    def resource_version(self) -> str:
        """The cluster's current resourceVersion (that of the latest write)."""
        return str(self._revision)

    def history(self, resource: kmock.resource, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every version of one object written since the start, oldest first (copies)."""
        return [
            copy.deepcopy(e.object)
            for e in list(self._log)
            if e.resource == resource
            and e.object.get("metadata", {}).get("namespace") == namespace
            and e.object.get("metadata", {}).get("name") == name
        ]

    def compact(self, before: int | str | None = None) -> None:
        """Expire resourceVersions older than ``before`` (default: the current one), as etcd compaction does.

        A watch started afterwards from an expired version gets a 410 ERROR event.
        Watches already running keep receiving events, as on a real server.
        """
        self._compacted = self._revision if before is None else int(before)

    # The object-tracking interceptor of kmock applies writes even when a reaction answers
    # them, with its own semantics; here all state changes happen in the fallback handlers.
    async def _handle(self, request: kmock.Request) -> Any:
        return await kmock.RawHandler._handle(self, request)

    # lightkube turns an error response into ApiError only when its Content-Type is exactly
    # "application/json", as the API server sends it; aiohttp's json_response appends a
    # charset, so kmock's errors would reach clients as bare HTTP errors.
    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            code, reason, message, details = exc.status, exc.reason or "InternalError", exc.message or "", exc.details
        else:
            code, reason, message, details = 500, "InternalError", f"{type(exc).__name__}: {exc}", None
        status = _failure(code, reason, message)
        if details:
            status["details"] = details
        return aiohttp.web.Response(
            status=code, body=json.dumps(status).encode(), headers={"Content-Type": "application/json"}
        )

    # --- helpers -------------------------------------------------------------------------

    def _info(self, resource: kmock.resource | None) -> kmock.ResourceInfo:
        if resource is None or resource not in self.resources:
            raise kmock.KubernetesResourceNotFoundError()
        return self.resources[resource]

    def _has_status(self, resource: kmock.resource) -> bool:
        return "status" in self._info(resource).subresources

    def _type_meta(self, resource: kmock.resource) -> dict[str, str]:
        group, version = resource.group, resource.version
        return {"apiVersion": f"{group}/{version}" if group else str(version), "kind": self._info(resource).kind or ""}

    def _stored(self, key: _Key) -> dict[str, Any] | None:
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _not_found(self, resource: kmock.resource, name: str) -> kmock.KubernetesError:
        return api_error(404, "NotFound", f'{resource.plural}.{resource.group} "{name}" not found', name=name)

    def _bump(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _emit(self, resource: kmock.resource, type_: str, obj: dict[str, Any]) -> None:
        self._log.append(_Event(self._revision, resource, type_, copy.deepcopy(obj)))
        self._log_revisions.append(self._revision)
        # Wake every watcher: each waits on the event object it saw, then takes a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def _store(self, key: _Key, obj: dict[str, Any]) -> None:
        if key in self._objects:
            self._objects[key].create(obj)  # appends a whole new version to kmock's history
        else:
            self._objects[key] = obj

    def _matches(self, request: kmock.Request, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        if request.name is not None and meta.get("name") != request.name:
            return False
        return _selector_matches(request.params.get("labelSelector"), meta.get("labels") or {}) and _fields_match(
            request.params.get("fieldSelector"), obj
        )

    def _current(self, request: kmock.Request) -> list[dict[str, Any]]:
        out = []
        for (resource, _, _), obj in self._objects.items():
            if resource == request.resource and not obj.deleted and self._matches(request, obj.raw):
                out.append(copy.deepcopy(obj.raw))
        return out

    def _check_precondition(self, request_version: Any, stored: Mapping[str, Any], resource: kmock.resource) -> None:
        if request_version and request_version != stored["metadata"]["resourceVersion"]:
            name = stored["metadata"]["name"]
            raise api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural}.{resource.group} "{name}": '
                "the object has been modified; please apply your changes to the latest version and try again",
                name=name,
                kind=resource.plural,
            )

    # --- writes --------------------------------------------------------------------------

    def _create(self, request: kmock.Request, body: Any) -> dict[str, Any]:
        assert request.resource is not None
        resource = request.resource
        if not isinstance(body, Mapping):
            raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise api_error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        namespace = request.namespace if self._info(resource).namespaced else None
        if namespace is not None:
            if meta.get("namespace") not in (None, namespace):
                raise api_error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        key: _Key = (resource, namespace, meta["name"])
        if self._stored(key) is not None:
            raise api_error(
                409,
                "AlreadyExists",
                f'{resource.plural}.{resource.group} "{meta["name"]}" already exists',
                name=meta["name"],
            )
        if self._has_status(resource):
            obj.pop("status", None)  # the status subresource owns it: a create cannot set it
        obj.update(self._type_meta(resource))
        meta.pop("deletionTimestamp", None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, resourceVersion=self._bump())
        self._store(key, obj)
        self._emit(resource, "ADDED", obj)
        return obj

    def _update(self, request: kmock.Request, old: dict[str, Any], new: Any) -> dict[str, Any]:
        """Store ``new`` (a whole object, already checked for conflicts) as the next version of ``old``."""
        assert request.resource is not None and request.name is not None
        resource = request.resource
        if not isinstance(new, Mapping):
            raise api_error(400, "BadRequest", "the result is not a JSON object")
        if request.subresource == "status":
            if not self._has_status(resource):
                raise self._not_found(resource, request.name)
            result = copy.deepcopy(old)
            if new.get("status") is None:
                result.pop("status", None)
            else:
                result["status"] = copy.deepcopy(new["status"])
        elif request.subresource is not None:
            raise self._not_found(resource, request.name)
        else:
            result = copy.deepcopy(dict(new))
            result.update(self._type_meta(resource))
            if self._has_status(resource):
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
        meta = result.setdefault("metadata", {})
        old_meta = old["metadata"]
        # Fields the server owns: whatever the client sent, they stay as stored.
        for owned in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if _content(result) != _content(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if result == old:
            return result  # a no-op write: no new version, no event
        meta["resourceVersion"] = self._bump()
        key: _Key = (resource, old_meta.get("namespace"), old_meta["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._objects[key].create(result)
            self._objects[key].delete()
            self._emit(resource, "DELETED", result)
        else:
            self._store(key, result)
            self._emit(resource, "MODIFIED", result)
        return result

    # --- fallback handlers (kmock calls them when no reaction answered) -------------------

    async def _serve_list(self, request: kmock.Request) -> Any:
        self._info(request.resource)
        assert request.resource is not None
        type_meta = self._type_meta(request.resource)
        return {
            "apiVersion": type_meta["apiVersion"],
            "kind": f"{type_meta['kind']}List",
            "metadata": {"resourceVersion": self.resource_version},
            "items": self._current(request),
        }

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        self._info(request.resource)
        assert request.resource is not None and request.name is not None
        if request.subresource not in (None, "status") or (
            request.subresource == "status" and not self._has_status(request.resource)
        ):
            raise self._not_found(request.resource, request.name)
        obj = self._stored((request.resource, request.namespace, request.name))
        if obj is None:
            raise self._not_found(request.resource, request.name)
        return obj

    async def _serve_create(self, request: kmock.Request) -> Any:
        self._info(request.resource)
        return self._create(request, request.data)

    async def _serve_update(self, request: kmock.Request) -> Any:
        self._info(request.resource)
        assert request.resource is not None and request.name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        key: _Key = (request.resource, request.namespace, request.name)
        old = self._stored(key)
        if old is None:
            if content_type == "application/apply-patch+yaml" and request.subresource is None:
                return self._create(request, merge_patch({"metadata": {"name": request.name}}, request.data))
            raise self._not_found(request.resource, request.name)
        if content_type == "application/json-patch+json":
            if not isinstance(request.data, list):
                raise api_error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                patched = jsonpatch.apply_patch(old, request.data)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise api_error(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ):
            if not isinstance(request.data, Mapping):
                raise api_error(400, "BadRequest", "a merge patch must be a JSON object")
            patched = merge_patch(old, request.data)
        else:
            raise api_error(
                415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
            )
        version = (patched.get("metadata") or {}).get("resourceVersion") if isinstance(patched, Mapping) else None
        self._check_precondition(version, old, request.resource)
        return self._update(request, old, patched)

    async def _serve_replace(self, request: kmock.Request) -> Any:
        if request.resource is None or request.name is None:
            raise kmock.KubernetesEndpointNotFoundError()
        self._info(request.resource)
        body = request.data
        if not isinstance(body, Mapping):
            raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise api_error(400, "BadRequest", "the name of the object does not match the name on the URL")
        old = self._stored((request.resource, request.namespace, request.name))
        if old is None:
            raise self._not_found(request.resource, request.name)
        if not meta.get("resourceVersion") and request.resource not in UNCONDITIONAL_UPDATE:
            raise api_error(
                422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        self._check_precondition(meta.get("resourceVersion"), old, request.resource)
        return self._update(request, old, body)

    async def _serve_delete(self, request: kmock.Request) -> Any:
        self._info(request.resource)
        assert request.resource is not None and request.name is not None
        key: _Key = (request.resource, request.namespace, request.name)
        old = self._stored(key)
        if old is None:
            raise self._not_found(request.resource, request.name)
        preconditions = (request.data or {}).get("preconditions") or {} if isinstance(request.data, Mapping) else {}
        self._check_precondition(preconditions.get("resourceVersion"), old, request.resource)
        meta = old["metadata"]
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = _now()
                meta["resourceVersion"] = self._bump()
                self._store(key, old)
                self._emit(request.resource, "MODIFIED", old)
            return old
        meta["resourceVersion"] = self._bump()
        self._objects[key].delete()
        self._emit(request.resource, "DELETED", old)
        return old

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        self._info(request.resource)
        assert request.resource is not None
        # kmock sends the headers with the first chunk; an empty one starts the stream at once.
        yield b""
        loop = asyncio.get_running_loop()
        timeout = request.params.get("timeoutSeconds")
        deadline = loop.time() + float(timeout) if timeout else None
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        since = request.params.get("resourceVersion")
        if since in (None, "", "0"):
            cursor = self._revision
            for obj in self._current(request):
                yield {"type": "ADDED", "object": obj}
        else:
            assert since is not None
            try:
                cursor = int(since)
            except ValueError:
                yield self._error_event(400, "BadRequest", f"invalid resourceVersion: {since!r}")
                return
            if cursor < self._compacted:
                yield self._error_event(410, "Expired", f"too old resource version: {cursor} ({self._compacted})")
                return
        while True:
            changed = self._changed
            # Take the batch before yielding: writes made while this generator is suspended
            # land after it in the log, and the next round picks them up from `cursor`.
            start = bisect.bisect_right(self._log_revisions, cursor)
            batch = self._log[start:]
            for event in batch:
                if event.resource == request.resource and self._matches(request, event.object):
                    yield {"type": event.type, "object": copy.deepcopy(event.object)}
            if batch:
                cursor = batch[-1].revision
            wait = self.bookmark_interval_s if bookmarks else None
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                wait = remaining if wait is None else min(wait, remaining)
            try:
                async with asyncio.timeout(wait):
                    await changed.wait()
            except TimeoutError:
                if bookmarks and changed is self._changed:
                    yield {
                        "type": "BOOKMARK",
                        "object": {**self._type_meta(request.resource), "metadata": {"resourceVersion": str(cursor)}},
                    }

    @staticmethod
    def _error_event(code: int, reason: str, message: str) -> dict[str, Any]:
        return {"type": "ERROR", "object": _failure(code, reason, message)}


@dataclass
class KubeEmulator:
    """A running emulator: the kmock handler (for reactions and assertions), its URL, clients."""

    emulator: ApiServerEmulator
    url: str
    _clients: list[lightkube.AsyncClient] = field(default_factory=list)

    def config(self, namespace: str = "default") -> KubeConfig:
        return KubeConfig.from_one(cluster=Cluster(server=self.url), user=User(), namespace=namespace)

    def client(self, namespace: str = "default", **kwargs: Any) -> lightkube.AsyncClient:
        """A lightkube AsyncClient for this emulator, defaulting to ``namespace``; closed on exit."""
        client = lightkube.AsyncClient(config=self.config(namespace), **kwargs)
        self._clients.append(client)
        return client

    async def _close(self) -> None:
        for client in self._clients:
            await client.close()


@contextlib.asynccontextmanager
async def kube_emulator(
    *, bookmark_interval_s: float = 1.0, configure: Callable[[ApiServerEmulator], None] | None = None
) -> AsyncIterator[KubeEmulator]:
    """Start an :class:`ApiServerEmulator` on 127.0.0.1 (a free port) with our kinds registered."""
    emulator = ApiServerEmulator(bookmark_interval_s=bookmark_interval_s)
    for resource, info in RESOURCES.items():
        emulator.resources[resource] = attrs.evolve(info, verbs=set(info.verbs), subresources=set(info.subresources))
    if configure is not None:
        configure(emulator)
    async with emulator, kmock.Server(emulator, host="127.0.0.1") as server:
        kube = KubeEmulator(emulator=emulator, url=str(server.url).rstrip("/"))
        try:
            yield kube
        finally:
            await kube._close()


@contextlib.contextmanager
def kube_emulator_in_thread(**kwargs: Any) -> Iterator[KubeEmulator]:
    """:func:`kube_emulator` on its own event loop in a daemon thread, for synchronous tests.

    Tests that run real processes wait with ``time.sleep``; the emulator must keep
    answering meanwhile. Use synchronous clients (``lightkube.Client(config=kube.config())``).
    """
    started: queue.Queue[KubeEmulator | BaseException] = queue.Queue()
    stop: asyncio.Future[None] | None = None
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        nonlocal stop
        stop = loop.create_future()
        try:
            async with kube_emulator(**kwargs) as kube:
                started.put(kube)
                await stop
        except BaseException as exc:  # reported to the test that waits for the start
            started.put(exc)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="kube-emulator", daemon=True)
    thread.start()
    kube = started.get(timeout=30)
    if isinstance(kube, BaseException):
        raise kube
    try:
        yield kube
    finally:
        loop.call_soon_threadsafe(lambda: stop is not None and not stop.done() and stop.set_result(None))
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


def kubeconfig_text(kube: KubeEmulator, namespace: str) -> str:
    """A kubeconfig file for ``kube``: what a control plane process gets as $KUBECONFIG."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": "test", "namespace": namespace}}
            ],
            "current-context": "emulator",
        }
    )


def status_of(obj: Any) -> dict[str, Any]:
    """The ``status`` of a lightkube object as a plain dict (generic resources keep it as one)."""
    raw = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return dict(raw.get("status") or {})


__all__ = [
    "ENDPOINTSLICES",
    "GATEWAYS",
    "LEASES",
    "MODELROUTES",
    "RESOURCES",
    "SERVICES",
    "ApiServerEmulator",
    "Gateway",
    "KubeEmulator",
    "ModelRoute",
    "api_error",
    "kube_emulator",
    "kube_emulator_in_thread",
    "kubeconfig_text",
    "merge_patch",
    "status_of",
]
