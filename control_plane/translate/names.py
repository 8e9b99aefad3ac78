"""Names shared by the translator, the snapshot checks and the bootstrap."""

from __future__ import annotations

LISTENER_NAME = "switchyard_http"
ROUTE_CONFIG_NAME = "switchyard_routes"
XDS_CLUSTER_NAME = "switchyard_xds"
BODY_PIN_FILTER = "envoy.filters.http.json_to_metadata"
DEFAULT_BODY_FIELD = ("model_version",)  # the design source's request field
METADATA_NAMESPACE = "switchyard"  # dynamic metadata written by json_to_metadata for body pinning
GRPC_FIELDS_FILTER = "envoy.filters.http.grpc_field_extraction"  # also its metadata namespace
GRPC_ROUTING_FILTER = "envoy.filters.http.lua"
GRPC_STATS_FILTER = "envoy.filters.http.grpc_stats"
# Headers the Lua filter sets from a gRPC call's fields, for the routes to match on
# (Envoy's routes cannot match a list-valued metadata entry, and the extraction filter
# does not recompute the route).
GRPC_MODEL_HEADER = "x-switchyard-model"
GRPC_VERSION_HEADER = "x-switchyard-model-version"


def cluster_name(model: str, version: str) -> str:
    # '/' cannot appear in model or version names (DNS-1123 labels) and, unlike '.',
    # keeps Envoy's stat-tag extraction from splitting the name.
    return f"{model}/{version}"


def grpc_cluster_name(model: str, version: str) -> str:
    """The cluster of a version's gRPC port: the same replicas, reached over HTTP/2."""
    return f"{cluster_name(model, version)}/grpc"


def body_pin_key(path: tuple[str, ...]) -> str:
    return "pin:" + ".".join(path)
