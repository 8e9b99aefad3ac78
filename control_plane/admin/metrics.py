"""``GET /metrics``: Prometheus metrics for pushes, ACKs, NACKs, Envoys and convergence.

Each app has its own registry (no process-global state), so tests and several
apps in one process do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from control_plane.translate import short_type
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeEvents, NodeRegistry, NodeStatus

router = APIRouter(tags=["metrics"])

# From one ADS round trip on loopback up to "an Envoy that is stuck".
_CONVERGENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics(NodeEvents):
    """Counts xDS events (as the registry's event hook) and admin changes."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self.registry = CollectorRegistry(auto_describe=True)
        self.pushes = Counter("switchyard_xds_pushes", "xDS responses sent to Envoys", ["type"], registry=self.registry)
        self.acks = Counter("switchyard_xds_acks", "xDS responses Envoys ACKed", ["type"], registry=self.registry)
        self.nacks = Counter(
            "switchyard_xds_nacks", "xDS responses Envoys rejected (NACK)", ["type"], registry=self.registry
        )
        self.convergence = Histogram(
            "switchyard_convergence_seconds",
            "From publishing a snapshot to an already-connected Envoy ACKing all of it",
            buckets=_CONVERGENCE_BUCKETS,
            registry=self.registry,
        )
        self.changes = Counter(
            "switchyard_admin_changes",
            "Mutating admin API calls by action and result",
            ["action", "result"],
            registry=self.registry,
        )
        # Counted, not audited: anyone who can reach the port can send them, and one
        # audit line each would let them grow the audit log without bound.
        self.unauthorized = Counter(
            "switchyard_admin_unauthorized",
            "Admin API calls refused for a missing or invalid bearer token (401)",
            registry=self.registry,
        )

    def read_state_of(self, nodes: NodeRegistry) -> None:
        """Also export, at scrape time, what ``nodes`` (the registry these events come from) holds."""
        self.registry.register(_StateCollector(self.cache, nodes))

    # NodeEvents: called by the ADS server on the event loop.
    def pushed(self, node: NodeStatus, type_url: str) -> None:
        self.pushes.labels(short_type(type_url)).inc()

    def acked(self, node: NodeStatus, type_url: str) -> None:
        self.acks.labels(short_type(type_url)).inc()

    def nacked(self, node: NodeStatus, type_url: str) -> None:
        self.nacks.labels(short_type(type_url)).inc()

    def synced(self, node: NodeStatus, version: str) -> None:
        published = self.cache.published_at
        current = self.cache.current
        # An Envoy that connected after the publish measures its connection, not convergence.
        if published is None or current is None or current.version != version or node.connected_at > published:
            return
        self.convergence.observe(max(0.0, time.time() - published))


class _StateCollector(Collector):
    """Values read at scrape time from the cache and the node registry."""

    def __init__(self, cache: SnapshotCache, nodes: NodeRegistry) -> None:
        self.cache = cache
        self.nodes = nodes

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        nodes = self.nodes.all()
        current = self.cache.current
        connected = GaugeMetricFamily("switchyard_envoys_connected", "Envoys with an open ADS stream")
        connected.add_metric([], sum(1 for n in nodes if n.connected))
        yield connected
        synced = GaugeMetricFamily(
            "switchyard_envoys_synced", "Connected Envoys running the current snapshot completely"
        )
        synced.add_metric([], sum(1 for n in nodes if n.connected and current and n.synced_snapshot == current.version))
        yield synced
        published = CounterMetricFamily("switchyard_snapshots_published", "Snapshots published to the cache")
        published.add_metric([], self.cache.generation)
        yield published


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    # Not through admin.context's dependency: that module builds on this one (Metrics).
    collector: Metrics = request.app.state.admin.metrics
    return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)
