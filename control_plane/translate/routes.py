"""IR -> the Envoy RouteConfiguration.

Per model, routes are tried in this order (Envoy matches linearly within a
virtual host, first match wins):

1. header pin to a declared version; header pin to anything else -> 404
2. body-field pin (dynamic metadata from json_to_metadata), same two routes
3. the model's rules, in the order written
4. the default split

Models are grouped into virtual hosts by domain, so the host lookup (a hash
map in Envoy) picks the model and only that model's routes are scanned.
Models sharing a domain are ordered longest path prefix first.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Sequence
from functools import lru_cache

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, string_pb2, value_pb2
from envoy.type.v3 import percent_pb2, range_pb2
from google.protobuf import wrappers_pb2

from control_plane.ir import HeaderCondition, Mirror, Model, Retry, RoutingIntent, Rule, Split
from control_plane.translate.messages import duration, pack
from control_plane.translate.names import (
    BODY_PIN_FILTER,
    METADATA_NAMESPACE,
    ROUTE_CONFIG_NAME,
    body_pin_key,
    cluster_name,
)
from control_plane.translate.weights import effective_weights

_INT64_MAX = 2**63 - 1
_FILTER_DISABLED = pack(rc.FilterConfig(disabled=True))


def route_configuration(intent: RoutingIntent, unready: frozenset[str]) -> route_pb2.RouteConfiguration:
    by_domain: dict[str, list[Model]] = {}
    for model in intent.models:
        for host in model.hosts:
            by_domain.setdefault(host, []).append(model)
    # Domains served by the same models share one virtual host.
    groups: dict[tuple[str, ...], list[str]] = {}
    for domain, models in by_domain.items():
        ordered = sorted(models, key=lambda m: -len(m.path_prefix))
        groups.setdefault(tuple(m.name for m in ordered), []).append(domain)
    models_by_name = {m.name: m for m in intent.models}
    config = route_pb2.RouteConfiguration(name=ROUTE_CONFIG_NAME)
    for model_names, domains in groups.items():
        vhost = config.virtual_hosts.add(name="+".join(model_names), domains=domains)
        for name in model_names:
            model = models_by_name[name]
            vhost.routes.extend(model_routes(model, _unready_of(model, unready)))
    return config


def _unready_of(model: Model, unready: Container[str]) -> frozenset[str]:
    return frozenset(v.name for v in model.versions if cluster_name(model.name, v.name) in unready)


@lru_cache(maxsize=65_536)
def model_routes(model: Model, unready_versions: frozenset[str]) -> tuple[rc.Route, ...]:
    """All routes of one model; memoised because an edit usually touches one model of many."""
    routes: list[rc.Route] = []
    pin = model.pinning
    if pin is not None and pin.header is not None:
        for version in model.versions:
            match = _match(model, headers=[_header(HeaderCondition(pin.header, "exact", version.name))])
            routes.append(_pinned(model, f"pin-header/{version.name}", match, version.name))
        match = _match(model, headers=[_header(HeaderCondition(pin.header, "present"))])
        routes.append(_unknown_version(model, "pin-header/unknown", match))
    if pin is not None and pin.body_field is not None:
        key = body_pin_key(pin.body_field)
        for version in model.versions:
            match = _match(model, metadata=[_metadata(key, version.name)])
            routes.append(_pinned(model, f"pin-body/{version.name}", match, version.name))
        routes.append(_unknown_version(model, "pin-body/unknown", _match(model, metadata=[_metadata(key)])))
    for rule in model.rules:
        headers = [_header(h) for h in rule.headers]
        length = content_length_matcher(rule)
        if length is not None:
            headers.append(length)
        route = rc.Route(name=f"{model.name}/rule/{rule.name}", match=_match(model, headers=headers))
        route.route.CopyFrom(_action(model, rule.split, rule.mirrors, unready_versions))
        routes.append(route)
    default = rc.Route(name=f"{model.name}/default", match=_match(model))
    default.route.CopyFrom(_action(model, model.split, model.mirrors, unready_versions))
    routes.append(default)
    if pin is None or pin.body_field is None:
        for route in routes:  # no body pinning: do not buffer and parse this model's request bodies
            route.typed_per_filter_config[BODY_PIN_FILTER].CopyFrom(_FILTER_DISABLED)
    return tuple(routes)


def content_length_matcher(rule: Rule) -> rc.HeaderMatcher | None:
    if rule.min_content_length is None and rule.max_content_length is None:
        return None
    start = rule.min_content_length or 0
    end = _INT64_MAX if rule.max_content_length is None else rule.max_content_length + 1
    return rc.HeaderMatcher(name="content-length", range_match=range_pb2.Int64Range(start=start, end=end))


def _match(
    model: Model,
    headers: Iterable[rc.HeaderMatcher] = (),
    metadata: Iterable[metadata_pb2.MetadataMatcher] = (),
) -> rc.RouteMatch:
    return rc.RouteMatch(prefix=model.path_prefix, headers=headers, dynamic_metadata=metadata)


def _header(cond: HeaderCondition) -> rc.HeaderMatcher:
    if cond.kind == "exact":
        return rc.HeaderMatcher(name=cond.name, string_match=string_pb2.StringMatcher(exact=cond.value))
    if cond.kind == "prefix":
        return rc.HeaderMatcher(name=cond.name, string_match=string_pb2.StringMatcher(prefix=cond.value))
    if cond.kind == "regex":
        return rc.HeaderMatcher(
            name=cond.name,
            string_match=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=cond.value)),
        )
    return rc.HeaderMatcher(name=cond.name, present_match=cond.kind == "present")


def _metadata(key: str, exact: str | None = None) -> metadata_pb2.MetadataMatcher:
    value = (
        value_pb2.ValueMatcher(present_match=True)
        if exact is None
        else value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(exact=exact))
    )
    return metadata_pb2.MetadataMatcher(
        filter=METADATA_NAMESPACE, path=[metadata_pb2.MetadataMatcher.PathSegment(key=key)], value=value
    )


def _action(model: Model, split: Split, mirrors: Sequence[Mirror], unready_versions: frozenset[str]) -> rc.RouteAction:
    action = _base_action(model)
    weights = effective_weights(split, unready_versions)
    if len(weights) == 1:
        action.cluster = cluster_name(model.name, weights[0][0])
    else:
        for version, weight in weights:
            action.weighted_clusters.clusters.add(
                name=cluster_name(model.name, version), weight=wrappers_pb2.UInt32Value(value=weight)
            )
    for mirror in mirrors:
        action.request_mirror_policies.add(
            cluster=cluster_name(model.name, mirror.version),
            runtime_fraction=base_pb2.RuntimeFractionalPercent(
                default_value=percent_pb2.FractionalPercent(
                    numerator=round(mirror.percent * 10_000),
                    denominator=percent_pb2.FractionalPercent.MILLION,
                ),
                runtime_key=f"switchyard.mirror.{model.name}.{mirror.version}",
            ),
        )
    return action


def _base_action(model: Model) -> rc.RouteAction:
    return base_action(model.timeout_ms, model.rewrite_prefix, model.retry)


def base_action(timeout_ms: int, rewrite_prefix: str | None, retry: Retry | None) -> rc.RouteAction:
    """The route-action fields every route of a model shares (timeout, rewrite, retries)."""
    action = rc.RouteAction(timeout=duration(timeout_ms))
    if rewrite_prefix is not None:
        action.prefix_rewrite = rewrite_prefix
    if retry is not None:
        action.retry_policy.retry_on = ",".join(retry.on)
        action.retry_policy.num_retries.value = retry.attempts
        if retry.per_try_timeout_ms is not None:
            action.retry_policy.per_try_timeout.CopyFrom(duration(retry.per_try_timeout_ms))
    return action


def _pinned(model: Model, name: str, match: rc.RouteMatch, version: str) -> rc.Route:
    route = rc.Route(name=f"{model.name}/{name}", match=match)
    route.route.CopyFrom(_base_action(model))
    route.route.cluster = cluster_name(model.name, version)
    return route


def _unknown_version(model: Model, name: str, match: rc.RouteMatch) -> rc.Route:
    known = [v.name for v in model.versions]
    body = json.dumps({"error": f"unknown model version for model {model.name!r}; known versions: {', '.join(known)}"})
    return rc.Route(
        name=f"{model.name}/{name}",
        match=match,
        direct_response=rc.DirectResponseAction(status=404, body=base_pb2.DataSource(inline_string=body)),
        response_headers_to_add=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="content-type", value="application/json"))
        ],
    )
