"""Aggregated Discovery Service: state-of-the-world and incremental (delta) ADS.

Each stream keeps, per resource type, what Envoy subscribed to, what was sent
and what Envoy ACKed. ``_Stream.pump`` decides what to send next:

* Types go out in make-before-break order (clusters, endpoints, listeners,
  routes). A type waits until every earlier type is ACKed at the version this
  node should have, so a route never points at a cluster Envoy does not yet
  have warm. The wait is bounded (``ORDER_WAIT_S``) so one stuck type cannot
  freeze the others.
* Clusters the node's currently ACKed routes still use are kept in its CDS
  until it ACKs routes that no longer use them: stale clusters go last.
* One response per type in flight; a NACKed version is recorded, reported to
  the cache (which stops serving it) and never sent again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER, short_type
from control_plane.xds.bootstrap import ADMIN_URL_KEY
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import Nack, NodeRegistry, NodeStatus
from control_plane.xds.snapshot import Entry, Snapshot

log = logging.getLogger(__name__)

ORDER_WAIT_S = 3.0
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
_stream_ids = itertools.count(1)

Req = TypeVar("Req", discovery_pb2.DiscoveryRequest, discovery_pb2.DeltaDiscoveryRequest)
Resp = TypeVar("Resp", discovery_pb2.DiscoveryResponse, discovery_pb2.DeltaDiscoveryResponse)


@dataclass(slots=True)
class _TypeState:
    subscribed: bool = False  # Envoy asked for this type at all
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    pending_nonce: str | None = None  # a response Envoy has not ACKed/NACKed yet
    pending_version: str = ""  # its version_info (SotW)
    pending: dict[str, str] = field(default_factory=dict)  # name -> version in that response
    pending_removed: set[str] = field(default_factory=set)
    pending_snapshot: Snapshot | None = None
    acked: dict[str, str] = field(default_factory=dict)  # name -> version Envoy accepted
    acked_version: str | None = None  # SotW version_info Envoy accepted
    nacked: set[str] = field(default_factory=set)  # versions (SotW) or name@version (delta)


class _Stream(ABC, Generic[Req, Resp]):
    mode = ""

    def __init__(self, cache: SnapshotCache, nodes: NodeRegistry) -> None:
        self.cache = cache
        self.nodes = nodes
        self.types: dict[str, _TypeState] = {t: _TypeState() for t in TYPE_ORDER}
        self.routes_snapshot: Snapshot | None = None  # snapshot of the routes Envoy runs now
        self.status: NodeStatus | None = None
        self.nonces = itertools.count(1)
        self.target_since = time.monotonic()
        self.target_version: str | None = None

    async def run(self, requests: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        inbox: asyncio.Queue[Req | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in requests:
                    await inbox.put(request)
            finally:
                await inbox.put(None)

        reader = asyncio.create_task(read())
        generation = self.cache.generation
        try:
            while True:
                get = asyncio.ensure_future(inbox.get())
                change = asyncio.ensure_future(self.cache.wait_for_change(generation))
                done, _ = await asyncio.wait({get, change}, return_when=asyncio.FIRST_COMPLETED, timeout=ORDER_WAIT_S)
                change.cancel()
                if get in done:
                    request = get.result()
                    if request is None:
                        return
                    self.receive(request)
                else:
                    get.cancel()
                    if get.done() and not get.cancelled():  # raced: keep the request
                        request = get.result()
                        if request is None:
                            return
                        self.receive(request)
                generation = self.cache.generation
                for response in self.pump():
                    yield response
        finally:
            reader.cancel()
            if self.status is not None:
                self.nodes.disconnect(self.status)

    # -- requests --------------------------------------------------------------------

    def register(self, node: Any) -> None:
        if self.status is None:
            self.status = NodeStatus(node.id, node.cluster, self.mode, next(_stream_ids))
            admin_url = node.metadata.fields.get(ADMIN_URL_KEY)
            if admin_url is not None and admin_url.string_value:
                self.status.admin_url = admin_url.string_value
            self.nodes.connect(self.status)
            log.info("envoy %s connected (%s)", node.id, self.mode)

    @abstractmethod
    def receive(self, request: Req) -> None: ...

    def ack(self, type_url: str, state: _TypeState) -> None:
        state.acked.update(state.pending)
        for name in state.pending_removed:
            state.acked.pop(name, None)
        if type_url == ROUTE and state.pending_snapshot is not None:
            self.routes_snapshot = state.pending_snapshot
        self._clear_pending(type_url, state, acked=True)

    def nack(self, type_url: str, state: _TypeState, message: str) -> None:
        snapshot = state.pending_snapshot
        assert self.status is not None
        version = snapshot.version if snapshot is not None else ""
        self.status.last_nack = Nack(type_url, version, message, time.time())
        log.warning("envoy %s rejected %s %s: %s", self.status.node_id, short_type(type_url), version, message)
        self.remember_nack(state)
        self.nodes.events.nacked(self.status, type_url)
        if snapshot is not None:
            self.cache.reject(snapshot.version, type_url, self.status.node_id, message)
        self._clear_pending(type_url, state, acked=False)

    @abstractmethod
    def remember_nack(self, state: _TypeState) -> None: ...

    def _clear_pending(self, type_url: str, state: _TypeState, *, acked: bool) -> None:
        assert self.status is not None
        if acked and state.pending_snapshot is not None:
            self.status.acked[type_url] = state.pending_snapshot.type_versions[type_url]
        if acked:
            self.nodes.events.acked(self.status, type_url)
        self.status.pending.pop(type_url, None)
        state.pending_nonce = None
        state.pending = {}
        state.pending_removed = set()
        state.pending_snapshot = None

    # -- responses -------------------------------------------------------------------

    def desired(self, type_url: str, snapshot: Snapshot) -> Mapping[str, Entry]:
        """Resources this node should have of ``type_url`` (before subscription filtering).

        The snapshot's own mapping when that is all of it (the common case): with a
        thousand streams, copying and re-hashing it per stream and pump was most of a
        push's CPU (bench/xds_scale.py), and ``Snapshot.version_for`` knows its version."""
        entries = snapshot.entries[type_url]
        if type_url not in (CLUSTER, ENDPOINT):
            return entries
        # Stale clusters leave only after the routes moved on: keep every cluster
        # used by the routes Envoy runs, or has been sent and may be applying now.
        stale: dict[str, Entry] = {}
        for holder in (self.routes_snapshot, self.types[ROUTE].pending_snapshot):
            if holder is None or holder is snapshot:
                continue
            for name in holder.route_clusters:
                if name not in entries and name in holder.entries[type_url]:
                    stale[name] = holder.entries[type_url][name]
        return {**entries, **stale} if stale else entries

    def visible(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Mapping[str, Entry]:
        entries = self.desired(type_url, snapshot)
        if state.wildcard:
            return entries
        if state.names.issuperset(entries):  # asked for everything there is: the usual case
            return entries
        return {n: e for n, e in entries.items() if n in state.names}

    def complete(self, type_url: str, snapshot: Snapshot) -> bool:
        """Envoy has ACKed everything of ``type_url`` it should have from ``snapshot``."""
        state = self.types[type_url]
        if state.pending_nonce is not None:
            return False
        if type_url == ENDPOINT:  # every EDS cluster must be ACKed, not just the ones asked for so far
            return all(state.acked.get(n) == e.version for n, e in self.desired(ENDPOINT, snapshot).items())
        if not state.subscribed:
            return not self.desired(type_url, snapshot)
        return self.in_sync(type_url, state, snapshot)

    @abstractmethod
    def in_sync(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> bool: ...

    def pump(self) -> list[Resp]:
        snapshot = self.cache.current
        if snapshot is None or self.status is None:
            return []
        if snapshot.version != self.target_version:
            self.target_version = snapshot.version
            self.target_since = time.monotonic()
        out: list[Resp] = []
        ordered_ok = True
        for type_url in TYPE_ORDER:
            state = self.types[type_url]
            if (
                state.subscribed
                and state.pending_nonce is None
                and (ordered_ok or time.monotonic() - self.target_since > ORDER_WAIT_S)
            ):
                response = self.respond(type_url, state, snapshot)
                if response is not None:
                    state.pending_snapshot = snapshot
                    self.status.pending[type_url] = snapshot.type_versions[type_url]
                    self.status.sent_at[type_url] = time.time()
                    self.nodes.events.pushed(self.status, type_url)
                    out.append(response)
            ordered_ok = ordered_ok and self.complete(type_url, snapshot)
        if ordered_ok and self.status.synced_snapshot != snapshot.version:
            self.status.synced_snapshot = snapshot.version
            self.status.synced_at = time.time()
            self.nodes.events.synced(self.status, snapshot.version)
        return out

    def next_nonce(self) -> str:
        return str(next(self.nonces))

    @abstractmethod
    def respond(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> Resp | None: ...


class _SotwStream(_Stream[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse]):
    mode = "sotw"

    def receive(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self.register(request.node)
        state = self.types.get(request.type_url)
        if state is None:
            return
        first = not state.subscribed
        state.subscribed = True
        state.wildcard = request.type_url in WILDCARD_TYPES and not request.resource_names
        state.names = set(request.resource_names)
        if first and not request.response_nonce and request.version_info:
            # Reconnect after a control-plane restart: Envoy already runs this version.
            state.acked_version = request.version_info
            return
        if not request.response_nonce or request.response_nonce != state.pending_nonce:
            return  # a fresh subscription, or about a response superseded since
        if request.HasField("error_detail"):
            self.nack(request.type_url, state, request.error_detail.message)
        else:
            state.acked_version = request.version_info
            self.ack(request.type_url, state)

    def remember_nack(self, state: _TypeState) -> None:
        state.nacked.add(state.pending_version)

    def in_sync(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> bool:
        return state.acked_version == snapshot.version_for(type_url, self.visible(type_url, state, snapshot))

    def respond(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> discovery_pb2.DiscoveryResponse | None:
        entries = self.visible(type_url, state, snapshot)
        version = snapshot.version_for(type_url, entries)
        if (version == state.acked_version and set(entries) == set(state.acked)) or version in state.nacked:
            return None
        if state.acked_version == version:  # restart case: nothing to send, remember contents
            state.acked = {n: e.version for n, e in entries.items()}
            return None
        nonce = self.next_nonce()
        state.pending_nonce = nonce
        state.pending_version = version
        state.pending = {n: e.version for n, e in entries.items()}
        state.pending_removed = set(state.acked) - set(entries)
        return discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=type_url,
            nonce=nonce,
            resources=[any_pb2.Any(type_url=type_url, value=entries[n].body) for n in sorted(entries)],
        )


class _DeltaStream(_Stream[discovery_pb2.DeltaDiscoveryRequest, discovery_pb2.DeltaDiscoveryResponse]):
    mode = "delta"

    def receive(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        self.register(request.node)
        state = self.types.get(request.type_url)
        if state is None:
            return
        if not state.subscribed:
            state.subscribed = True
            # Legacy wildcard: the first CDS/LDS request subscribes to nothing in particular.
            state.wildcard = request.type_url in WILDCARD_TYPES and not request.resource_names_subscribe
            # Reconnect: Envoy tells us what it has; unchanged resources are not re-sent.
            state.acked.update(request.initial_resource_versions)
        for name in request.resource_names_subscribe:
            if name == "*":
                state.wildcard = True
            else:
                state.names.add(name)
        for name in request.resource_names_unsubscribe:
            if name == "*":
                state.wildcard = False
            state.names.discard(name)
            state.acked.pop(name, None)
        if request.response_nonce and request.response_nonce == state.pending_nonce:
            if request.HasField("error_detail"):
                self.nack(request.type_url, state, request.error_detail.message)
            else:
                self.ack(request.type_url, state)

    def remember_nack(self, state: _TypeState) -> None:
        state.nacked.update(f"{n}@{v}" for n, v in state.pending.items())

    def in_sync(self, type_url: str, state: _TypeState, snapshot: Snapshot) -> bool:
        visible = self.visible(type_url, state, snapshot)
        return all(state.acked.get(n) == e.version for n, e in visible.items()) and all(
            n in visible for n in state.acked if state.wildcard or n in state.names
        )

    def respond(
        self, type_url: str, state: _TypeState, snapshot: Snapshot
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        entries = self.visible(type_url, state, snapshot)
        changed = {
            n: e
            for n, e in entries.items()
            if state.acked.get(n) != e.version and f"{n}@{e.version}" not in state.nacked
        }
        removed = {n for n in state.acked if n not in entries and (state.wildcard or n in state.names)}
        if not changed and not removed:
            return None
        nonce = self.next_nonce()
        state.pending_nonce = nonce
        state.pending = {n: e.version for n, e in changed.items()}
        state.pending_removed = removed
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snapshot.version,
            type_url=type_url,
            nonce=nonce,
            resources=[
                discovery_pb2.Resource(name=n, version=e.version, resource=any_pb2.Any(type_url=type_url, value=e.body))
                for n, e in sorted(changed.items())
            ],
            removed_resources=sorted(removed),
        )


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SnapshotCache, nodes: NodeRegistry) -> None:
        self.cache = cache
        self.nodes = nodes

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for response in _SotwStream(self.cache, self.nodes).run(request_iterator):
            yield response

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _DeltaStream(self.cache, self.nodes).run(request_iterator):
            yield response


def add_to_server(server: grpc.aio.Server, cache: SnapshotCache, nodes: NodeRegistry) -> None:
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(AggregatedDiscoveryService(cache, nodes), server)
