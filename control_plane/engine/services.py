"""Versions that name a Kubernetes Service: their endpoints are runtime state, not policy.

A policy says ``service: {name: sentiment-v3, port: http}``; which Pods serve it
changes all the time (rollouts, evictions, readiness), so the IR keeps the
reference and the controller fills in the ready endpoints just before each
translation, from whatever watches the Service's EndpointSlices. A version
with no ready endpoint gets no weight, as one whose probes all fail does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Protocol

from control_plane import ir
from control_plane.policy.errors import PolicyError
from control_plane.policy.loader import PolicySet
from control_plane.translate.names import cluster_name


class ServiceEndpoints(Protocol):
    """Ready endpoints of a Service, as its EndpointSlices say now."""

    def ready(self, service: ir.ServiceRef) -> tuple[tuple[ir.Endpoint, ...], tuple[ir.Endpoint, ...]]:
        """``(http, grpc)`` endpoints: ready, not terminating, on ``service.port`` / ``service.grpc_port``."""
        ...


def resolve(intent: ir.RoutingIntent, services: ServiceEndpoints) -> ir.RoutingIntent:
    """``intent`` with every Service-backed version's endpoints filled in (others unchanged)."""
    if not any(v.service for m in intent.models for v in m.versions):
        return intent
    return replace(intent, models=tuple(_resolve_model(m, services) for m in intent.models))


def _resolve_model(model: ir.Model, services: ServiceEndpoints) -> ir.Model:
    if not any(v.service for v in model.versions):
        return model
    versions = []
    for version in model.versions:
        if version.service is None:
            versions.append(version)
            continue
        http, grpc = services.ready(version.service)
        versions.append(replace(version, endpoints=http, grpc_endpoints=grpc))
    return replace(model, versions=tuple(versions))


def without_endpoints(intent: ir.RoutingIntent) -> frozenset[str]:
    """Clusters of Service-backed versions that have no ready endpoint (to get no weight)."""
    return frozenset(
        cluster_name(m.name, v.name) for m in intent.models for v in m.versions if v.service and not v.endpoints
    )


def unresolvable(policies: PolicySet) -> Iterator[PolicyError]:
    """A located error for every version naming a Service, where nothing can resolve one (file mode)."""
    for located in policies.models:
        for name, version in located.value.spec.versions.items():
            if version.service is not None:
                yield PolicyError(
                    located.source.file,
                    located.source.line,
                    ("spec", "versions", name, "service"),
                    "a Service can only be resolved by the Kubernetes mode (switchyard serve --kubernetes);"
                    " list the version's endpoints here instead",
                )
