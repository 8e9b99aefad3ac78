"""Pure translation of the routing intent into Envoy resources (no I/O, no global state)."""

from __future__ import annotations

from control_plane.translate.names import cluster_name
from control_plane.translate.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    MESSAGE_TYPES,
    ROUTE,
    TYPE_ORDER,
    Resources,
    short_type,
)
from control_plane.translate.translator import Translator, translate

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "MESSAGE_TYPES",
    "ROUTE",
    "TYPE_ORDER",
    "Resources",
    "Translator",
    "cluster_name",
    "short_type",
    "translate",
]
