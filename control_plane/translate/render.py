"""Envoy resources as plain JSON-compatible data, for people (render, diffs, golden files)."""

from __future__ import annotations

import json
from typing import Any, cast

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from control_plane.translate.resources import TYPE_ORDER, Resources, short_type


def to_plain(message: Message) -> dict[str, Any]:
    # Via JSON text: MessageToDict returns OrderedDicts for Any fields, which YAML dumpers reject.
    plain: dict[str, Any] = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    _sort_maps(cast(Descriptor, message.DESCRIPTOR), plain)  # the upb descriptor type is not in the stubs
    return plain


def _sort_maps(descriptor: Descriptor, plain: dict[str, Any]) -> None:
    """Sort protobuf map fields by key, recursively (through ``Any`` too).

    upb iterates a map in hash order, which differs from process to process, so
    without this the same resources (e.g. a virtual host's prefix matcher)
    would render, and diff, differently on every run.
    """
    for field in descriptor.fields:
        value = plain.get(field.name)
        if value is None or field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            plain[field.name] = dict(sorted(value.items()))
            inner = field.message_type.fields_by_name["value"].message_type
            if inner is not None:
                for item in plain[field.name].values():
                    _visit(inner, item)
        else:
            for item in value if isinstance(value, list) else [value]:
                _visit(field.message_type, item)


def _visit(descriptor: Descriptor, plain: Any) -> None:
    if not isinstance(plain, dict):  # well-known types render as strings, numbers, lists
        return
    if descriptor.full_name == "google.protobuf.Any":
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(plain["@type"].rsplit("/", 1)[-1])
        except (KeyError, AttributeError):
            return
    if not descriptor.full_name.startswith("google.protobuf."):  # Struct and friends are JSON already
        _sort_maps(descriptor, plain)


def resources_by_type(resources: Resources) -> dict[str, list[dict[str, Any]]]:
    """``{"Cluster": [...], "ClusterLoadAssignment": [...], ...}`` in push order, sorted by name."""
    messages = resources.messages()
    return {
        short_type(type_url): [to_plain(m) for _, m in sorted(messages.get(type_url, {}).items())]
        for type_url in TYPE_ORDER
    }
