"""Immutable, consistency-checked sets of Envoy resources with content-hash versions.

Versions are hashes of the deterministic serialisation, so two control-plane
replicas, or one restarted, agree on every version and a restart pushes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf.message import Message

from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER, Resources
from control_plane.translate.routes import virtual_host_routes
from control_plane.translate.serialized import SerializedResources


class InconsistentSnapshot(ValueError):
    """The resources reference each other wrongly; publishing them would blackhole traffic."""


def content_hash(parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Entry:
    """One serialised resource and its version."""

    body: bytes
    version: str


def version_of(entries: Mapping[str, Entry]) -> str:
    """Version of a set of named resources (order-independent)."""
    return content_hash(f"{name}\0{entries[name].version}".encode() for name in sorted(entries))


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str
    entries: Mapping[str, Mapping[str, Entry]]  # type URL -> name -> entry
    type_versions: Mapping[str, str]
    route_clusters: frozenset[str]  # clusters the routes send traffic (or mirrors) to

    @classmethod
    def build(cls, resources: Resources) -> Snapshot:
        """Serialise, version and check ``resources``; raise ``InconsistentSnapshot``."""
        route_clusters = check_consistency(resources.by_type)
        entries: dict[str, dict[str, Entry]] = {}
        for type_url in TYPE_ORDER:
            typed: dict[str, Entry] = {}
            for name, message in resources.by_type.get(type_url, {}).items():
                body = message.SerializeToString(deterministic=True)
                typed[name] = Entry(body, content_hash((body,)))
            entries[type_url] = typed
        return cls._finish(entries, route_clusters)

    @classmethod
    def from_serialized(cls, resources: SerializedResources, previous: Snapshot | None = None) -> Snapshot:
        """Like ``build``, from already serialised resources (``translate.serialized``).

        Entries whose bytes equal those in ``previous`` keep its Entry, so an
        edit to one model of thousands hashes only what changed.
        """
        by_type = resources.by_type
        listener_names = list(by_type.get(LISTENER, {}))
        route_clusters = _check_names(
            clusters=by_type.get(CLUSTER, {}).keys(),
            eds_clusters=resources.eds_clusters,
            endpoints=by_type.get(ENDPOINT, {}).keys(),
            referenced=resources.route_targets,
            rds_uses=[(n, r) for n in listener_names for r in resources.rds_names],
            route_configs=by_type.get(ROUTE, {}).keys(),
        )
        entries: dict[str, dict[str, Entry]] = {}
        for type_url in TYPE_ORDER:
            old = previous.entries.get(type_url, {}) if previous is not None else {}
            typed: dict[str, Entry] = {}
            for name, body in by_type.get(type_url, {}).items():
                kept = old.get(name)
                typed[name] = kept if kept is not None and kept.body == body else Entry(body, content_hash((body,)))
            entries[type_url] = typed
        return cls._finish(entries, route_clusters)

    @classmethod
    def _finish(cls, entries: dict[str, dict[str, Entry]], route_clusters: frozenset[str]) -> Snapshot:
        type_versions = {t: version_of(e) for t, e in entries.items()}
        version = content_hash(type_versions[t].encode() for t in TYPE_ORDER)
        return cls(version, entries, type_versions, route_clusters)


def check_consistency(by_type: Mapping[str, Mapping[str, Message]]) -> frozenset[str]:
    """Every route target and EDS name exists in CDS; every RDS name a listener uses exists.

    Returns the clusters referenced by routes.
    """
    clusters = by_type.get(CLUSTER, {})
    eds: set[str] = set()
    for name, message in clusters.items():
        assert isinstance(message, cluster_pb2.Cluster)
        if message.type == cluster_pb2.Cluster.EDS:
            eds.add(name)
    referenced: set[str] = set()
    for config in by_type.get(ROUTE, {}).values():
        assert isinstance(config, route_pb2.RouteConfiguration)
        referenced.update(route_targets(config))
    rds_uses: list[tuple[str, str]] = []
    for listener in by_type.get(LISTENER, {}).values():
        assert isinstance(listener, listener_pb2.Listener)
        rds_uses.extend((listener.name, rds_name) for rds_name in _rds_names(listener))
    return _check_names(
        clusters=clusters.keys(),
        eds_clusters=eds,
        endpoints=by_type.get(ENDPOINT, {}).keys(),
        referenced=referenced,
        rds_uses=rds_uses,
        route_configs=by_type.get(ROUTE, {}).keys(),
    )


def _check_names(
    *,
    clusters: Collection[str],
    eds_clusters: Iterable[str],
    endpoints: Collection[str],
    referenced: AbstractSet[str],
    rds_uses: Iterable[tuple[str, str]],
    route_configs: Collection[str],
) -> frozenset[str]:
    """The consistency rules on names only, shared by both ways of building a snapshot."""
    problems: list[str] = []
    for name in clusters:
        if name in eds_clusters and name not in endpoints:
            problems.append(f"EDS cluster {name!r} has no ClusterLoadAssignment")
    for name in endpoints:
        if name not in clusters:
            problems.append(f"ClusterLoadAssignment {name!r} has no cluster")
    problems.extend(
        f"a route sends traffic to unknown cluster {n!r}" for n in sorted(n for n in referenced if n not in clusters)
    )
    for listener_name, rds_name in rds_uses:
        if rds_name not in route_configs:
            problems.append(f"listener {listener_name!r} uses unknown route configuration {rds_name!r}")
    if problems:
        raise InconsistentSnapshot("; ".join(problems))
    return frozenset(referenced)


def route_targets(config: route_pb2.RouteConfiguration) -> set[str]:
    names: set[str] = set()
    for vhost in config.virtual_hosts:
        for route in virtual_host_routes(vhost):
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            names.update(c.name for c in action.weighted_clusters.clusters)
            names.update(m.cluster for m in action.request_mirror_policies)
    return names


def _rds_names(listener: listener_pb2.Listener) -> list[str]:
    names = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                names.append(manager.rds.route_config_name)
    return names
