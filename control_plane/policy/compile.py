"""Validated policy documents -> routing intent (IR)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from control_plane import ir
from control_plane.policy.endpoints import parse_endpoint
from control_plane.policy.loader import PolicySet
from control_plane.policy.schema import CanarySpec, HeaderMatchSpec, ModelRoute, ShadowSpec


def to_intent(
    policies: PolicySet,
    overrides: LocalOverrides | None = None,
    compile_model: Callable[[ModelRoute], ir.Model] | None = None,
) -> ir.RoutingIntent:
    """The routing intent of a validated policy set, with `switchyard up`'s overrides applied.

    ``compile_model`` turns one document into its final IR, overrides included
    (default: ``overridden_model``); the controller passes a memoised one, so a
    model that did not change is the very same value before the translator's memo.
    """
    overrides = overrides or LocalOverrides()
    gateway = policies.gateway
    listener = ir.Listener(gateway.value.spec.address, gateway.value.spec.port) if gateway else ir.Listener()
    if compile_model is None:
        models = tuple(overridden_model(m.value, overrides) for m in policies.models)
    else:
        models = tuple(compile_model(m.value) for m in policies.models)
    return ir.RoutingIntent(overrides.listener or listener, models)


def overridden_model(route: ModelRoute, overrides: LocalOverrides) -> ir.Model:
    """One document's IR with the local endpoint overrides applied."""
    return with_endpoints(to_model(route), overrides)


def to_model(route: ModelRoute) -> ir.Model:
    spec = route.spec
    traffic = spec.traffic if spec.traffic is not None else {next(iter(spec.versions)): 100}
    pin = spec.pinning
    hc = spec.health_check
    od = spec.outlier_detection
    retries = spec.retries
    return ir.Model(
        name=route.metadata.name,
        hosts=tuple(spec.hosts),
        path_prefix=spec.path_prefix,
        rewrite_prefix=spec.rewrite_prefix,
        versions=tuple(
            ir.Version(
                name,
                _endpoints(v.endpoints or ()),
                _endpoints(v.grpc_endpoints or ()),
                ir.ServiceRef(v.service.name, v.service.port, v.service.grpc_port) if v.service else None,
            )
            for name, v in spec.versions.items()
        ),
        split=_split(traffic),
        mirrors=_mirrors(spec.shadow),
        rules=tuple(
            ir.Rule(
                name=rule.name,
                headers=tuple(_header(name, m) for name, m in rule.match.headers.items()),
                min_content_length=rule.match.min_content_length,
                max_content_length=rule.match.max_content_length,
                split=_split(rule.traffic),
                mirrors=_mirrors(rule.shadow if rule.shadow is not None else spec.shadow),
            )
            for rule in spec.rules
        ),
        pinning=ir.Pinning(pin.header, tuple(pin.body_field.split(".")) if pin.body_field else None) if pin else None,
        timeout_ms=spec.timeout,
        connect_timeout_ms=spec.connect_timeout,
        retry=ir.Retry(retries.attempts, tuple(retries.on), retries.per_try_timeout) if retries else None,
        health_check=ir.HealthCheck(hc.path, hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold)
        if hc
        else None,
        outlier_detection=ir.OutlierDetection(
            od.consecutive_5xx, od.interval, od.base_ejection_time, od.max_ejection_percent
        )
        if od
        else None,
        slow_start_ms=spec.slow_start.window if spec.slow_start else None,
        canary=_canary(spec.canary) if spec.canary else None,
    )


EndpointOverrides = Mapping[str, Mapping[str, Sequence[str]]]  # model -> version -> ["host:port"]


@dataclass(frozen=True, slots=True)
class LocalOverrides:
    """What `switchyard up` changes for a local run, leaving the policy files as they are."""

    listener: ir.Listener | None = None
    endpoints: EndpointOverrides = field(default_factory=dict)
    grpc_endpoints: EndpointOverrides = field(default_factory=dict)  # only for models that declare gRPC


def with_endpoints(model: ir.Model, overrides: LocalOverrides) -> ir.Model:
    """``model`` with the endpoints of overridden versions replaced.

    `switchyard up` runs replicas on ports it picks and points the policy's
    versions at them, while the policy file keeps the endpoints containers use.
    A model that declares no gRPC endpoints keeps serving none.
    """
    http = overrides.endpoints.get(model.name) or {}
    grpc = (overrides.grpc_endpoints.get(model.name) or {}) if model.grpc else {}
    if not http and not grpc:
        return model
    versions = tuple(
        replace(
            v,
            endpoints=_endpoints(http[v.name]) if v.name in http else v.endpoints,
            grpc_endpoints=_endpoints(grpc[v.name]) if v.name in grpc else v.grpc_endpoints,
        )
        for v in model.versions
    )
    return replace(model, versions=versions)


def _canary(c: CanarySpec) -> ir.Canary:
    return ir.Canary(
        candidate=c.candidate,
        baseline=c.baseline,
        weights=tuple(c.weights()),
        interval_ms=c.interval,
        max_error_rate=c.max_error_rate,
        max_p99_ms=c.max_p99_latency,
        max_p99_ratio=c.max_p99_ratio,
        min_requests=c.min_requests,
        failure_threshold=c.failure_threshold,
        progress_deadline_ms=c.progress_deadline,
        pause_deadline_ms=c.pause_deadline,
    )


def _endpoints(texts: Sequence[str]) -> tuple[ir.Endpoint, ...]:
    return tuple(_endpoint(text) for text in texts)


def _endpoint(text: str) -> ir.Endpoint:
    parsed = parse_endpoint(text)
    return ir.Endpoint(parsed.host, parsed.port, parsed.is_ip)


def _split(weights: Mapping[str, int]) -> ir.Split:
    return ir.Split(tuple(weights.items()))


def _mirrors(shadows: Sequence[ShadowSpec]) -> tuple[ir.Mirror, ...]:
    return tuple(ir.Mirror(s.version, s.percent) for s in shadows)


def _header(name: str, match: HeaderMatchSpec) -> ir.HeaderCondition:
    for kind in ("exact", "prefix", "regex"):
        value = getattr(match, kind)
        if value is not None:
            return ir.HeaderCondition(name, kind, value)
    return ir.HeaderCondition(name, "present" if match.present else "absent")
