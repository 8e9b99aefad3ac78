"""Envoy bootstrap that connects to the Switchyard control plane over ADS."""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from control_plane.translate.names import XDS_CLUSTER_NAME

ADMIN_URL_KEY = "switchyard.admin_url"
_HTTP_OPTIONS_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def bootstrap(
    xds_host: str,
    xds_port: int,
    *,
    admin_port: int = 9901,
    admin_address: str = "127.0.0.1",
    node_id: str = "switchyard-envoy",
    node_cluster: str = "switchyard",
    delta: bool = False,
    admin_url: str | None = None,
) -> dict[str, Any]:
    """The bootstrap; ``admin_url`` is how the control plane reaches this Envoy's admin
    endpoint for canary statistics (default: derived from ``admin_address`` unless that
    is a wildcard, which says nothing about how others reach it)."""
    ads: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
    try:
        ipaddress.ip_address(xds_host)
        discovery = "STATIC"
    except ValueError:
        discovery = "STRICT_DNS"  # e.g. "control-plane" in docker-compose
    if admin_url is None and not _wildcard(admin_address):
        host = f"[{admin_address}]" if ":" in admin_address else admin_address
        admin_url = f"http://{host}:{admin_port}"
    node: dict[str, Any] = {"id": node_id, "cluster": node_cluster}
    if admin_url is not None:
        # Sent to the control plane on the ADS stream: the rollout runner reads each
        # connected Envoy's per-cluster statistics from here (control_plane/rollout/metrics.py).
        node["metadata"] = {ADMIN_URL_KEY: admin_url}
    return {
        "node": node,
        # Merge histograms when the admin endpoint is read, not only every 5 s: canary
        # checks compute p99 from cumulative bucket deltas at each interval's end.
        "stats_flush_on_admin": True,
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER_NAME,
                            # Reconnect quickly after a control-plane restart (default max is 30s).
                            "retry_policy": {"retry_back_off": {"base_interval": "0.25s", "max_interval": "2s"}},
                        }
                    }
                ],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER_NAME,
                    "type": discovery,
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": _HTTP_OPTIONS_TYPE,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER_NAME,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": xds_host,
                                                    "port_value": xds_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
        # The admin layer lets operators override mirror fractions at runtime if they must.
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {}}, {"name": "admin", "admin_layer": {}}]},
    }


def _wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False  # a host name: reachable as given


def bootstrap_yaml(xds_host: str, xds_port: int, **options: Any) -> str:
    return yaml.safe_dump(bootstrap(xds_host, xds_port, **options), sort_keys=False)
