"""Immutable, consistency-checked sets of Envoy resources with content-hash versions.

Versions are hashes of the deterministic serialisation, so two control-plane
replicas, or one restarted, agree on every version and a restart pushes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER, Resources


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

    def version_for(self, type_url: str, entries: Mapping[str, Entry]) -> str:
        """The version of ``entries``, some of this snapshot's ``type_url`` resources: known
        already when they are the whole type (the mapping itself), hashed otherwise."""
        if entries is self.entries[type_url]:
            return self.type_versions[type_url]
        return version_of(entries)

    @classmethod
    def build(cls, resources: Resources, previous: Snapshot | None = None) -> Snapshot:
        """Version and check ``resources``; raise ``InconsistentSnapshot``.

        Entries whose bytes equal those in ``previous`` keep its Entry, so an
        edit to one model of thousands hashes only what changed.
        """
        by_type = resources.by_type
        route_clusters = _check_names(
            clusters=by_type.get(CLUSTER, {}).keys(),
            eds_clusters=resources.eds_clusters,
            endpoints=by_type.get(ENDPOINT, {}).keys(),
            referenced=resources.route_targets,
            rds_uses=[(n, r) for n in by_type.get(LISTENER, {}) for r in resources.rds_names],
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
        type_versions = {t: version_of(e) for t, e in entries.items()}
        version = content_hash(type_versions[t].encode() for t in TYPE_ORDER)
        return cls(version, entries, type_versions, route_clusters)


def _check_names(
    *,
    clusters: Collection[str],
    eds_clusters: Iterable[str],
    endpoints: Collection[str],
    referenced: AbstractSet[str],
    rds_uses: Iterable[tuple[str, str]],
    route_configs: Collection[str],
) -> frozenset[str]:
    """Every route target and EDS name exists in CDS; every RDS name a listener uses exists."""
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
