"""IR model version -> Envoy ClusterLoadAssignment."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from control_plane.ir import Model, Version
from control_plane.translate.names import cluster_name


def load_assignment(model: Model, version: Version) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster_name(model.name, version.name),
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(address=e.host, port_value=e.port)
                            )
                        )
                    )
                    for e in version.endpoints
                ]
            )
        ],
    )
