"""IR -> the Envoy Listener: one HTTP listener, routes via RDS over ADS."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.json_to_metadata.v3 import json_to_metadata_pb2 as j2m
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from envoy.type.matcher.v3 import regex_pb2

from control_plane.ir import RoutingIntent
from control_plane.translate.grpc_filters import grpc_routing_filters
from control_plane.translate.messages import ads_source, pack
from control_plane.translate.names import (
    BODY_PIN_FILTER,
    DEFAULT_BODY_FIELD,
    LISTENER_NAME,
    METADATA_NAMESPACE,
    ROUTE_CONFIG_NAME,
    body_pin_key,
)


def listener(intent: RoutingIntent) -> listener_pb2.Listener:
    manager = hcm.HttpConnectionManager(
        stat_prefix="switchyard",
        rds=hcm.Rds(config_source=ads_source(), route_config_name=ROUTE_CONFIG_NAME),
    )
    # The body-pinning filter is always installed, with the design source's field
    # among its rules, so switching pinning on or off changes routes only: a
    # listener change would leave open client connections on the old filter chain
    # until they drain. Routes of models that do not pin by body disable it.
    body_fields = sorted(
        {DEFAULT_BODY_FIELD} | {m.pinning.body_field for m in intent.models if m.pinning and m.pinning.body_field}
    )
    rules = [
        j2m.JsonToMetadata.Rule(
            selectors=[j2m.JsonToMetadata.Selector(key=part) for part in path],
            on_present=j2m.JsonToMetadata.KeyValuePair(
                metadata_namespace=METADATA_NAMESPACE,
                key=body_pin_key(path),
                type=j2m.JsonToMetadata.STRING,
            ),
        )
        for path in body_fields
    ]
    manager.http_filters.add(
        name=BODY_PIN_FILTER,
        typed_config=pack(
            j2m.JsonToMetadata(
                # Clients send JSON under any Content-Type or none (tritonclient sends none,
                # curl -d a form type); the model services parse it as JSON all the same,
                # so a body pin must hold for all of them, not only application/json.
                request_rules=j2m.JsonToMetadata.MatchRules(
                    rules=rules,
                    allow_empty_content_type=True,
                    allow_content_types_regex=regex_pb2.RegexMatcher(regex=".*"),
                )
            )
        ),
    )
    # Always installed too, for the same reason; they pass everything but gRPC inference calls.
    manager.http_filters.extend(grpc_routing_filters())
    manager.http_filters.add(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    return listener_pb2.Listener(
        name=LISTENER_NAME,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=intent.listener.address, port_value=intent.listener.port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=pack(manager)
                    )
                ]
            )
        ],
    )


def rds_names(built: listener_pb2.Listener) -> tuple[str, ...]:
    """The route configurations a listener asks for over RDS."""
    names: list[str] = []
    for chain in built.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager) and manager.HasField("rds"):
                names.append(manager.rds.route_config_name)
    return tuple(names)
