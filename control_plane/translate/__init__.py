"""Pure translation of the routing intent into Envoy resources (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf.message import Message

from control_plane.ir import RoutingIntent
from control_plane.translate.clusters import cluster
from control_plane.translate.endpoints import load_assignment
from control_plane.translate.listeners import listener
from control_plane.translate.names import cluster_name
from control_plane.translate.routes import route_configuration

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# Make-before-break: clusters, then their endpoints, then listeners, then routes.
TYPE_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


@dataclass(frozen=True, slots=True)
class Resources:
    """Envoy resources by type URL, then by resource name."""

    by_type: dict[str, dict[str, Message]]


def translate(intent: RoutingIntent, unready: frozenset[str] = frozenset()) -> Resources:
    """The whole Envoy configuration for ``intent``.

    ``unready`` holds cluster names of versions with no ready endpoint; their
    share of each split goes to the other versions.
    """
    clusters: dict[str, Message] = {}
    endpoints: dict[str, Message] = {}
    for model in intent.models:
        for version in model.versions:
            built = cluster(model, version)
            clusters[built.name] = built
            if built.type == cluster_pb2.Cluster.EDS:
                endpoints[built.name] = load_assignment(model, version)
    routes = route_configuration(intent, unready)
    lis = listener(intent)
    return Resources(
        {
            CLUSTER: clusters,
            ENDPOINT: endpoints,
            LISTENER: {lis.name: lis},
            ROUTE: {routes.name: routes},
        }
    )


__all__ = ["CLUSTER", "ENDPOINT", "LISTENER", "ROUTE", "TYPE_ORDER", "Resources", "cluster_name", "translate"]
