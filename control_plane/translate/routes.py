"""IR -> the Envoy RouteConfiguration.

Per model, HTTP routes are tried in this order (first match wins):

1. header pin to a declared version; header pin to anything else -> 404
2. body-field pin (dynamic metadata from json_to_metadata), same two routes
3. the Open Inference Protocol's versioned paths
   (``/v2/models/<model>/versions/<version>/...``): to that version, or 404
4. the model's rules, in the order written
5. the default split

gRPC inference calls (``/inference.GRPCInferenceService/...``) are matched first,
on the model and version the call names (headers set by ``grpc_filters``):
header pin, the call's version, rules, default split, each to the versions'
gRPC clusters; a call naming no model (server health and metadata) goes to the
host's first gRPC model.

Models are grouped into virtual hosts by domain, so the host lookup (a hash
map in Envoy) picks the model. Envoy scans a virtual host's ``routes``
linearly, so a host shared by several models (told apart by path prefix) gets a
``matcher`` instead: a longest-prefix map on ``:path`` that picks one model's
route list directly, making the last of 1,000 models as cheap as the first.
A model's prefix matches on path-segment boundaries (``/a`` matches ``/a``,
``/a/x`` and ``/a?q``, never ``/ab``); see ``prefix_map_entries`` for how a
non-boundary hit still reaches the right model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import http_inputs_pb2, metadata_pb2, regex_pb2, string_pb2, value_pb2
from envoy.type.v3 import percent_pb2, range_pb2
from google.protobuf import any_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2

from control_plane.ir import HeaderCondition, Mirror, Model, RoutingIntent, Rule, Split
from control_plane.translate.fragments import EmbeddedField, serialized
from control_plane.translate.messages import duration, pack
from control_plane.translate.names import (
    BODY_PIN_FILTER,
    GRPC_MODEL_HEADER,
    GRPC_VERSION_HEADER,
    METADATA_NAMESPACE,
    ROUTE_CONFIG_NAME,
    body_pin_key,
    cluster_name,
    grpc_cluster_name,
)
from control_plane.translate.weights import effective_weights
from model_services.protocol import MIRROR_HEADER
from model_services.protocol import PATH_PREFIX as GRPC_PATH_PREFIX

_INT64_MAX = 2**63 - 1
_FILTER_DISABLED = pack(rc.FilterConfig(disabled=True))
# There is no dedicated HTTP path input in Envoy 1.40 (PathMatchInput is generic_proxy's);
# the :path header includes the query string, which a prefix match does not mind.
PATH_INPUT = extension_pb2.TypedExtensionConfig(
    name="request-path", typed_config=pack(http_inputs_pb2.HttpRequestHeaderMatchInput(header_name=":path"))
)
ROUTE_LIST_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteList"
# Each is the highest-numbered field set in its message, so appending it to the
# serialised rest gives exactly protobuf's own deterministic encoding.
_VHOST_ROUTES = EmbeddedField.of(rc.VirtualHost, "routes")
_CONFIG_VHOSTS = EmbeddedField.of(route_pb2.RouteConfiguration, "virtual_hosts")
_LIST_ROUTES = EmbeddedField.of(rc.RouteList, "routes")


@dataclass(slots=True)
class ModelRoutes:
    """One model's routes, serialised, and the clusters they send (or mirror) traffic to."""

    routes: tuple[bytes, ...]
    targets: frozenset[str]
    grpc: tuple[bytes, ...] = ()  # gRPC calls that name this model
    grpc_server: bytes = b""  # gRPC calls that name no model (server health, metadata), if this model answers them
    _alone: dict[tuple[str, ...], bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, model: Model, unready_versions: frozenset[str]) -> ModelRoutes:
        built = model_routes(model, unready_versions)
        if not model.grpc:
            return cls(tuple(serialized(r) for r in built), frozenset(_targets(built)))
        grpc = grpc_routes(model, unready_versions)
        server = grpc_server_route(model, unready_versions)
        return cls(
            tuple(serialized(r) for r in built),
            frozenset(_targets((*grpc, *built))),
            tuple(serialized(r) for r in grpc),
            serialized(server),
        )

    def in_virtual_host(self, name: str, domains: tuple[str, ...]) -> bytes:
        """A virtual host of its own: the common case, so kept per domain list (they rarely change)."""
        found = self._alone.get(domains)
        if found is None:
            header = serialized(rc.VirtualHost(name=name, domains=domains))
            routes = (*self.grpc, self.grpc_server, *self.routes) if self.grpc else self.routes
            found = self._alone[domains] = header + b"".join(_VHOST_ROUTES.wrap(r) for r in routes)
        return found

    def in_route_list(self) -> bytes:
        """The fields of a ``RouteList`` (for a shared virtual host's prefix matcher)."""
        return b"".join(_LIST_ROUTES.wrap(r) for r in self.routes)

    def grpc_in_route_list(self) -> bytes:
        """The routes of gRPC calls naming this model, as ``RouteList`` fields."""
        return b"".join(_LIST_ROUTES.wrap(r) for r in self.grpc)


RoutesOf = Callable[[Model, frozenset[str]], ModelRoutes]


def route_configuration(
    intent: RoutingIntent, unready: frozenset[str], routes_of: RoutesOf = ModelRoutes.of
) -> tuple[bytes, frozenset[str]]:
    """The serialised RouteConfiguration and every cluster its routes use.

    ``routes_of`` builds one model's routes; the translator passes a memoised one.
    """
    models_by_name = {m.name: m for m in intent.models}
    parts = [serialized(route_pb2.RouteConfiguration(name=ROUTE_CONFIG_NAME))]
    targets: set[str] = set()

    def routes(model: Model) -> ModelRoutes:
        built = routes_of(model, unready_versions(model, unready))
        targets.update(built.targets)
        return built

    for model_names, domains in virtual_host_groups(intent.models).items():
        name = "+".join(model_names)
        models = [models_by_name[model_name] for model_name in model_names]
        if len(models) == 1:
            vhost = routes(models[0]).in_virtual_host(name, tuple(domains))
        else:
            shared = rc.VirtualHost(name=name, domains=domains)
            tree = shared.matcher.matcher_tree
            tree.input.CopyFrom(PATH_INPUT)
            for key, model, fallback in prefix_map_entries(models):
                route_list = routes(model).in_route_list()
                if fallback is not None:
                    route_list += routes(fallback).in_route_list()
                _route_list_entry(tree, key, model.name, route_list)
            grpc_models = [m for m in models if m.grpc]
            if grpc_models:  # one list for every gRPC call; the first such model answers server calls
                grpc_list = b"".join(routes(m).grpc_in_route_list() for m in grpc_models)
                grpc_list += _LIST_ROUTES.wrap(routes(grpc_models[0]).grpc_server)
                _route_list_entry(tree, GRPC_PATH_PREFIX, "grpc", grpc_list)
            vhost = serialized(shared)
        parts.append(_CONFIG_VHOSTS.wrap(vhost))
    return b"".join(parts), frozenset(targets)


def _route_list_entry(tree: Any, key: str, name: str, route_list: bytes) -> None:
    action = tree.prefix_match_map.map[key].action
    action.name = name
    action.typed_config.CopyFrom(any_pb2.Any(type_url=ROUTE_LIST_TYPE, value=route_list))


def unready_versions(model: Model, unready: Container[str]) -> frozenset[str]:
    """The versions of ``model`` whose clusters are in ``unready``."""
    if not unready:
        return frozenset()
    return frozenset(v.name for v in model.versions if cluster_name(model.name, v.name) in unready)


def _targets(routes: Iterable[rc.Route]) -> Iterable[str]:
    for route in routes:
        if route.HasField("route"):
            action = route.route
            if action.cluster:
                yield action.cluster
            yield from (c.name for c in action.weighted_clusters.clusters)
            yield from (m.cluster for m in action.request_mirror_policies)


def virtual_host_groups(models: Iterable[Model]) -> dict[tuple[str, ...], list[str]]:
    """Model names (longest path prefix first) -> the domains they serve together."""
    by_domain: dict[str, list[Model]] = {}
    for model in models:
        for host in model.hosts:
            by_domain.setdefault(host, []).append(model)
    # Domains served by the same models share one virtual host.
    groups: dict[tuple[str, ...], list[str]] = {}
    for domain, served in by_domain.items():
        ordered = sorted(served, key=lambda m: -len(m.path_prefix))
        groups.setdefault(tuple(m.name for m in ordered), []).append(domain)
    return groups


def prefix_map_entries(models: Sequence[Model]) -> list[tuple[str, Model, Model | None]]:
    """``(key, model, fallback)`` per model of a shared virtual host, in key order.

    ``prefix_match_map`` is a raw string match and, once it has picked the
    longest key, never tries a shorter one, even when no route of the picked
    list matches. So ``/ab`` picks the ``/a`` model's list, whose
    ``path_separated_prefix: /a`` routes all miss. The right model for such a
    request is the longest model prefix that ``/a`` lies under on a segment
    boundary (``/`` here, or ``/x`` for ``/x/a``): its routes follow the
    model's own in the list. One level is enough, because that model's default
    route matches every path under it.
    """
    by_prefix: dict[str, Model] = {}
    for model in models:  # longest first; an exact duplicate (the loader forbids it) is shadowed, as in a scan
        by_prefix.setdefault(model.path_prefix, model)
    out: list[tuple[str, Model, Model | None]] = []
    for prefix, model in sorted(by_prefix.items()):
        out.append((prefix, model, None if prefix == "/" else _enclosing(prefix, by_prefix)))
    return out


def _enclosing(prefix: str, by_prefix: dict[str, Model]) -> Model | None:
    cut = prefix.rfind("/")
    while cut > 0:
        found = by_prefix.get(prefix[:cut])
        if found is not None:
            return found
        cut = prefix.rfind("/", 0, cut)
    return by_prefix.get("/")


def model_routes(model: Model, unready_versions: frozenset[str]) -> tuple[rc.Route, ...]:
    """All routes of one model, as messages."""
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
    # The protocol names the version in the path; a router in front of versions honours it.
    for version in model.versions:
        path = versioned_path(model, version.name)
        route = _pinned(model, f"pin-path/{version.name}", rc.RouteMatch(path_separated_prefix=path), version.name)
        if model.rewrite_prefix is not None:  # the rewrite maps the model's prefix, so this longer one too
            route.route.ClearField("regex_rewrite")
            route.route.prefix_rewrite = model.rewrite_prefix.rstrip("/") + path.removeprefix(_base(model))
        routes.append(route)
    any_version = rc.RouteMatch(prefix=versioned_path(model, ""))
    routes.append(_unknown_version(model, "pin-path/unknown", any_version))
    for rule in model.rules:
        headers = _rule_headers(rule)
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


def grpc_routes(model: Model, unready_versions: frozenset[str]) -> tuple[rc.Route, ...]:
    """The routes of gRPC calls naming ``model``, in the order of the HTTP ones (no path or body pin)."""
    routes: list[rc.Route] = []
    pin = model.pinning
    pins = [(pin.header, "pin-header")] if pin is not None and pin.header is not None else []
    pins.append((GRPC_VERSION_HEADER, "pin-version"))  # the call's own model_version field
    for header, kind in pins:
        for version in model.versions:
            match = _grpc_match(model, _header(HeaderCondition(header, "exact", version.name)))
            routes.append(_pinned(model, f"grpc/{kind}/{version.name}", match, version.name, grpc=True))
        match = _grpc_match(model, _header(HeaderCondition(header, "present")))
        routes.append(_grpc_unknown_version(model, f"grpc/{kind}/unknown", match))
    for rule in model.rules:
        headers = _rule_headers(rule)
        route = rc.Route(name=f"{model.name}/grpc/rule/{rule.name}", match=_grpc_match(model, *headers))
        route.route.CopyFrom(_action(model, rule.split, rule.mirrors, unready_versions, grpc=True))
        routes.append(route)
    default = rc.Route(name=f"{model.name}/grpc/default", match=_grpc_match(model))
    default.route.CopyFrom(_action(model, model.split, model.mirrors, unready_versions, grpc=True))
    routes.append(default)
    for route in routes:
        route.typed_per_filter_config[BODY_PIN_FILTER].CopyFrom(_FILTER_DISABLED)
    return tuple(routes)


def grpc_server_route(model: Model, unready_versions: frozenset[str]) -> rc.Route:
    """gRPC calls that name no model (ServerLive, ServerReady, ServerMetadata): ``model``'s split."""
    route = rc.Route(name=f"{model.name}/grpc/server", match=rc.RouteMatch(prefix=GRPC_PATH_PREFIX))
    route.route.CopyFrom(_action(model, model.split, (), unready_versions, grpc=True))
    route.typed_per_filter_config[BODY_PIN_FILTER].CopyFrom(_FILTER_DISABLED)
    return route


def _grpc_match(model: Model, *headers: rc.HeaderMatcher) -> rc.RouteMatch:
    named = _header(HeaderCondition(GRPC_MODEL_HEADER, "exact", model.name))
    return rc.RouteMatch(prefix=GRPC_PATH_PREFIX, headers=[named, *headers])


def _grpc_unknown_version(model: Model, name: str, match: rc.RouteMatch) -> rc.Route:
    """A trailers-only gRPC answer, NOT_FOUND, naming the known versions."""
    message = _unknown_version_message(model)
    # grpc-message is percent-encoded outside printable ASCII and for '%' itself; names are
    # DNS labels, so the text needs no escape (and '%' would start an Envoy format command).
    headers = {"content-type": "application/grpc", "grpc-status": "5", "grpc-message": message}
    return rc.Route(
        name=f"{model.name}/{name}",
        match=match,
        direct_response=rc.DirectResponseAction(status=200),
        response_headers_to_add=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))
            for key, value in headers.items()
        ],
    )


def versioned_path(model: Model, version: str) -> str:
    """The Open Inference Protocol's path of one version of ``model``, under its prefix.

    Matched as a path-separated prefix: the version's metadata, ``/ready`` and
    ``/infer``, with or without a query. No regex: Envoy limits each RE2 program's
    size, and names up to 63 characters would approach that limit.
    """
    return f"{_base(model)}/v2/models/{model.name}/versions/{version}"


def _base(model: Model) -> str:
    return "" if model.path_prefix == "/" else model.path_prefix


def _rule_headers(rule: Rule) -> list[rc.HeaderMatcher]:
    headers = [_header(h) for h in rule.headers]
    length = content_length_matcher(rule)
    if length is not None:
        headers.append(length)
    return headers


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
    if model.path_prefix == "/":  # path_separated_prefix cannot be "/" (it must not end in one)
        return rc.RouteMatch(prefix="/", headers=headers, dynamic_metadata=metadata)
    # Segment boundaries: "/sentiment" matches "/sentiment", "/sentiment/..." and "/sentiment?...",
    # never "/sentimentfoo". How the prefix is then rewritten: ``_base_action``.
    return rc.RouteMatch(path_separated_prefix=model.path_prefix, headers=headers, dynamic_metadata=metadata)


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


def _action(
    model: Model,
    split: Split,
    mirrors: Sequence[Mirror],
    unready_versions: frozenset[str],
    *,
    grpc: bool = False,
) -> rc.RouteAction:
    cluster_of = grpc_cluster_name if grpc else cluster_name
    action = _grpc_action(model) if grpc else _base_action(model)
    weights = effective_weights(split, unready_versions)
    if len(weights) == 1:
        action.cluster = cluster_of(model.name, weights[0][0])
    else:
        for version, weight in weights:
            action.weighted_clusters.clusters.add(
                name=cluster_of(model.name, version), weight=wrappers_pb2.UInt32Value(value=weight)
            )
    for mirror in mirrors:
        policy = action.request_mirror_policies.add(
            cluster=cluster_of(model.name, mirror.version),
            runtime_fraction=base_pb2.RuntimeFractionalPercent(
                default_value=percent_pb2.FractionalPercent(
                    numerator=round(mirror.percent * 10_000),
                    denominator=percent_pb2.FractionalPercent.MILLION,
                ),
                runtime_key=f"switchyard.mirror.{model.name}.{mirror.version}",
            ),
        )
        if grpc:  # the service cannot see the "-shadow" authority; it reads this header instead
            policy.request_headers_mutations.add().append.header.CopyFrom(
                base_pb2.HeaderValue(key=MIRROR_HEADER, value="1")
            )
    return action


def _base_action(model: Model) -> rc.RouteAction:
    """The fields every HTTP route of a model shares: ``_grpc_action``'s and the path rewrite."""
    action = _grpc_action(model)
    rewrite = model.rewrite_prefix
    if rewrite is None:
        return action
    # The prefix is replaced path element by path element (Gateway API's ReplacePrefixMatch):
    # "/p/x" -> "<rewrite>/x", never "<rewrite>x" or "//x".
    if model.path_prefix == "/":
        action.prefix_rewrite = rewrite.rstrip("/") + "/"
    elif rewrite.endswith("/"):  # prefix_rewrite keeps the "/" after the match (envoyproxy/envoy#26055)
        action.regex_rewrite.pattern.regex = "^" + re2.escape(model.path_prefix) + "/*"
        action.regex_rewrite.substitution = rewrite
    else:
        action.prefix_rewrite = rewrite
    return action


def _grpc_action(model: Model) -> rc.RouteAction:
    """The route-action fields every route of a model shares (timeout, retries); gRPC paths are never rewritten."""
    action = rc.RouteAction(timeout=duration(model.timeout_ms))
    retry = model.retry
    if retry is not None:
        action.retry_policy.retry_on = ",".join(retry.on)
        action.retry_policy.num_retries.value = retry.attempts
        if retry.per_try_timeout_ms is not None:
            action.retry_policy.per_try_timeout.CopyFrom(duration(retry.per_try_timeout_ms))
    return action


def _pinned(model: Model, name: str, match: rc.RouteMatch, version: str, *, grpc: bool = False) -> rc.Route:
    route = rc.Route(name=f"{model.name}/{name}", match=match)
    route.route.CopyFrom(_grpc_action(model) if grpc else _base_action(model))
    route.route.cluster = (grpc_cluster_name if grpc else cluster_name)(model.name, version)
    return route


def _unknown_version_message(model: Model) -> str:
    known = ", ".join(v.name for v in model.versions)
    return f"unknown model version for model {model.name!r}; known versions: {known}"


def _unknown_version(model: Model, name: str, match: rc.RouteMatch) -> rc.Route:
    body = json.dumps({"error": _unknown_version_message(model)})
    return rc.Route(
        name=f"{model.name}/{name}",
        match=match,
        direct_response=rc.DirectResponseAction(status=404, body=base_pb2.DataSource(inline_string=body)),
        response_headers_to_add=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="content-type", value="application/json"))
        ],
    )
