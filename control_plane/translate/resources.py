"""A translated configuration: serialised Envoy resources by type and name."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# Make-before-break: clusters, then their endpoints, then listeners, then routes.
TYPE_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def short_type(type_url: str) -> str:
    """``Cluster`` for the Cluster type URL: how people (metrics, messages) name a type."""
    return type_url.rsplit(".", 1)[-1]


MESSAGE_TYPES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
}


@dataclass(frozen=True, slots=True)
class Resources:
    """Deterministically serialised resources, plus the cross-references the consistency check needs."""

    by_type: dict[str, dict[str, bytes]]  # type URL -> name -> bytes pushed to Envoy
    eds_clusters: frozenset[str]  # clusters that expect a ClusterLoadAssignment
    route_targets: frozenset[str]  # clusters the routes send (or mirror) traffic to
    rds_names: tuple[str, ...]  # route configurations the listeners use

    def messages(self) -> dict[str, dict[str, Message]]:
        """The resources decoded again, for people and tests (render, diffs, golden files)."""
        return {type_url: decode(type_url, by_name) for type_url, by_name in self.by_type.items()}


def decode(type_url: str, by_name: dict[str, bytes]) -> dict[str, Message]:
    message_type = MESSAGE_TYPES[type_url]
    return {name: message_type.FromString(body) for name, body in by_name.items()}
