"""Names shared by the translator, the snapshot checks and the bootstrap."""

from __future__ import annotations

LISTENER_NAME = "switchyard_http"
ROUTE_CONFIG_NAME = "switchyard_routes"
XDS_CLUSTER_NAME = "switchyard_xds"
BODY_PIN_FILTER = "envoy.filters.http.json_to_metadata"
DEFAULT_BODY_FIELD = ("model_version",)  # the design source's request field
METADATA_NAMESPACE = "switchyard"  # dynamic metadata written by json_to_metadata for body pinning


def cluster_name(model: str, version: str) -> str:
    # '/' cannot appear in model or version names (DNS-1123 labels) and, unlike '.',
    # keeps Envoy's stat-tag extraction from splitting the name.
    return f"{model}/{version}"


def body_pin_key(path: tuple[str, ...]) -> str:
    return "pin:" + ".".join(path)
