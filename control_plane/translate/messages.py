"""Small builders for protobuf values used by several resource modules."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message


def duration(millis: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


def pack(message: Message) -> any_pb2.Any:
    """``message`` in an ``Any``, serialised deterministically: map fields (gRPC field
    extraction's per-method table) otherwise come out in per-process hash order, and a
    restarted control plane would announce a new version of unchanged configuration."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )
