"""IR model version -> Envoy Clusters (one per version, and one more for its gRPC port)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from control_plane.ir import Endpoint, Model, Version
from control_plane.translate.endpoints import load_assignment
from control_plane.translate.fragments import serialized
from control_plane.translate.messages import ads_source, duration, pack
from control_plane.translate.names import cluster_name, grpc_cluster_name

_HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def cluster(model: Model, version: Version) -> cluster_pb2.Cluster:
    """The cluster of a version's HTTP port, actively health-checked when the model says so."""
    out = _cluster(model, cluster_name(model.name, version.name), version.endpoints)
    hc = model.health_check
    if hc is not None:
        interval = duration(hc.interval_ms)
        out.health_checks.append(
            health_check_pb2.HealthCheck(
                timeout=duration(hc.timeout_ms),
                interval=interval,
                # Without this Envoy probes idle clusters (shadows, 0% canaries) only once a minute.
                no_traffic_interval=interval,
                healthy_threshold=wrappers_pb2.UInt32Value(value=hc.healthy_threshold),
                unhealthy_threshold=wrappers_pb2.UInt32Value(value=hc.unhealthy_threshold),
                http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(path=hc.path, host=model.name),
            )
        )
    return out


def grpc_cluster(model: Model, version: Version) -> cluster_pb2.Cluster:
    """The cluster of a version's gRPC port, reached over HTTP/2.

    No active check of its own: the replicas are the ones the HTTP cluster checks,
    and the control plane's readiness (which moves weight) covers both.
    """
    out = _cluster(model, grpc_cluster_name(model.name, version.name), version.grpc_endpoints)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.SetInParent()
    out.typed_extension_protocol_options[_HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    return out


def _cluster(model: Model, name: str, endpoints: tuple[Endpoint, ...]) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(
        name=name,
        connect_timeout=duration(model.connect_timeout_ms),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        # Like Istio: never spray requests at hosts known to be down. The control
        # plane already takes weight away from versions with no ready endpoint.
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(
            healthy_panic_threshold=percent_pb2.Percent(value=0.0),
            # Apply health changes to the load balancer at once. With the default 1 s
            # merge window a host that passed its check still gets no traffic for up to
            # a second, while the control plane has already given its version weight back.
            update_merge_window=duration(0),
        ),
    )
    if all(e.is_ip for e in endpoints):
        out.type = cluster_pb2.Cluster.EDS
        out.eds_cluster_config.eds_config.CopyFrom(ads_source())
    else:
        # EDS carries addresses only; DNS names need Envoy's own resolver.
        out.type = cluster_pb2.Cluster.STRICT_DNS
        out.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        out.load_assignment.CopyFrom(load_assignment(name, endpoints))
    if model.slow_start_ms:
        out.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(duration(model.slow_start_ms))
    od = model.outlier_detection
    if od is not None:
        out.outlier_detection.CopyFrom(
            outlier_detection_pb2.OutlierDetection(
                consecutive_5xx=wrappers_pb2.UInt32Value(value=od.consecutive_5xx),
                interval=duration(od.interval_ms),
                base_ejection_time=duration(od.base_ejection_ms),
                max_ejection_percent=wrappers_pb2.UInt32Value(value=od.max_ejection_percent),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class ModelClusters:
    """One model's clusters and EDS assignments, serialised; they do not depend on readiness."""

    clusters: tuple[tuple[str, bytes], ...]
    endpoints: tuple[tuple[str, bytes], ...]  # only for EDS clusters

    @classmethod
    def of(cls, model: Model) -> ModelClusters:
        clusters: list[tuple[str, bytes]] = []
        endpoints: list[tuple[str, bytes]] = []
        for version in model.versions:
            built_clusters = [(cluster(model, version), version.endpoints)]
            if model.grpc:
                built_clusters.append((grpc_cluster(model, version), version.grpc_endpoints))
            for built, version_endpoints in built_clusters:
                clusters.append((built.name, serialized(built)))
                if built.type == cluster_pb2.Cluster.EDS:
                    endpoints.append((built.name, serialized(load_assignment(built.name, version_endpoints))))
        return cls(tuple(clusters), tuple(endpoints))
