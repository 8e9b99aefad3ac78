"""The listener's filters that let routes tell gRPC inference calls apart by model.

A gRPC call names its model inside the request message, not in the path or a
header. Envoy's gRPC field extraction reads ``model_name`` (``name`` for the
ModelReady and ModelMetadata calls) and the version out of the first message
into dynamic metadata, as a list of strings; route matchers cannot match inside
such a list, and that filter does not recompute the route. So a short Lua
filter copies both values into headers and clears the route cache, and the
routes match those headers (``routes.grpc_routes``).

A failed gRPC call is still HTTP 200, so cluster ``upstream_rq_5xx`` never counts
it; the gRPC statistics filter counts ModelInfer calls per status code, which the
rollout gate reads (``rollout/metrics.py``).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, grpc_method_list_pb2
from envoy.extensions.filters.http.grpc_field_extraction.v3 import config_pb2 as extraction
from envoy.extensions.filters.http.grpc_stats.v3 import config_pb2 as grpc_stats
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from control_plane.translate.messages import pack
from control_plane.translate.names import (
    GRPC_FIELDS_FILTER,
    GRPC_MODEL_HEADER,
    GRPC_ROUTING_FILTER,
    GRPC_STATS_FILTER,
    GRPC_VERSION_HEADER,
)
from model_services.protocol import SERVICE, descriptor_set

# method -> (model field, version field) of its request message
_FIELDS = {
    "ModelInfer": ("model_name", "model_version"),
    "ModelReady": ("name", "version"),
    "ModelMetadata": ("name", "version"),
}

# Headers a client sent under these names are dropped, so the route is always the
# one the call's own fields choose.
_ROUTING_SCRIPT = f"""
local MODEL, VERSION = "{GRPC_MODEL_HEADER}", "{GRPC_VERSION_HEADER}"
local function first(fields, name)
  local values = fields[name]
  if values ~= nil and values[1] ~= nil and values[1] ~= "" then return values[1] end
  return nil
end
function envoy_on_request(handle)
  local headers = handle:headers()
  local changed = headers:get(MODEL) ~= nil or headers:get(VERSION) ~= nil
  headers:remove(MODEL)
  headers:remove(VERSION)
  local fields = handle:streamInfo():dynamicMetadata():get("{GRPC_FIELDS_FILTER}")
  if fields ~= nil then
    local model = first(fields, "model_name") or first(fields, "name")
    local version = first(fields, "model_version") or first(fields, "version")
    if model ~= nil then headers:add(MODEL, model); changed = true end
    if version ~= nil then headers:add(VERSION, version); changed = true end
  end
  if changed then handle:clearRouteCache() end
end
"""


def grpc_routing_filters() -> list[hcm.HttpFilter]:
    """Field extraction, the Lua copy into headers, statistics; all let other traffic pass untouched."""
    extractions = extraction.GrpcFieldExtractionConfig(
        descriptor_set=base_pb2.DataSource(inline_bytes=descriptor_set())
    )
    for method, fields in _FIELDS.items():
        by_field = extractions.extractions_by_method[f"{SERVICE}.{method}"].request_field_extractions
        for name in fields:
            by_field[name].SetInParent()
    routing = lua_pb2.Lua(default_source_code=base_pb2.DataSource(inline_string=_ROUTING_SCRIPT))
    statistics = grpc_stats.FilterConfig(
        individual_method_stats_allowlist=grpc_method_list_pb2.GrpcMethodList(
            services=[grpc_method_list_pb2.GrpcMethodList.Service(name=SERVICE, method_names=["ModelInfer"])]
        )
    )
    return [
        hcm.HttpFilter(name=GRPC_FIELDS_FILTER, typed_config=pack(extractions)),
        hcm.HttpFilter(name=GRPC_ROUTING_FILTER, typed_config=pack(routing)),
        hcm.HttpFilter(name=GRPC_STATS_FILTER, typed_config=pack(statistics)),
    ]
