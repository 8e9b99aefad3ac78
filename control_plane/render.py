"""Envoy resources as plain JSON-compatible data, for people (render, diffs, golden files)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from control_plane.translate import TYPE_ORDER, Resources
from control_plane.xds.nodes import short_type


def to_plain(message: Message) -> dict[str, Any]:
    # Via JSON text: MessageToDict returns OrderedDicts for Any fields, which YAML dumpers reject.
    plain: dict[str, Any] = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    return plain


def resources_by_type(resources: Resources) -> dict[str, list[dict[str, Any]]]:
    """``{"Cluster": [...], "ClusterLoadAssignment": [...], ...}`` in push order, sorted by name."""
    return {
        short_type(type_url): [to_plain(m) for _, m in sorted(resources.by_type.get(type_url, {}).items())]
        for type_url in TYPE_ORDER
    }
