"""The same translation as ``translate()``, produced directly as serialised bytes.

The control plane re-translates on every edit and every readiness change, and
with thousands of models building protobuf messages in Python dominated
(about 250 µs per model, most of it the routes). This module:

* memoises per model (IR models are frozen and hashable), so an edit that
  touches one model of 1,000 re-translates one model;
* writes the protobuf wire format for the high-volume, simple messages (Route,
  ClusterLoadAssignment, the RouteConfiguration around them, and the prefix
  matcher of a shared virtual host with its RouteLists) by concatenation:
  a repeated or embedded field is just ``tag, length, bytes``, and encodings of
  a repeated field may be concatenated. Fields are emitted in field-number
  order, which is what deterministic serialisation does; irregular pieces
  (retry policy, mirrors, rule matchers, health checks) are still built as
  messages by the ``translate`` modules and serialised once per model.

``tests/unit/test_fast_path.py`` proves the bytes equal serialising
``translate()``'s messages with ``deterministic=True``; change both together.
"""

from __future__ import annotations

from collections.abc import Container, Hashable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from control_plane.ir import (
    HeaderCondition,
    HeaderMatchKind,
    HealthCheck,
    Mirror,
    Model,
    OutlierDetection,
    Retry,
    RoutingIntent,
    Split,
    Version,
)
from control_plane.translate import routes as _routes
from control_plane.translate.clusters import cluster
from control_plane.translate.listeners import listener
from control_plane.translate.names import BODY_PIN_FILTER, ROUTE_CONFIG_NAME, body_pin_key, cluster_name
from control_plane.translate.weights import effective_weights

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

K = TypeVar("K")
V = TypeVar("V")
_MEMO = 65_536  # models; enough for the largest fleets we benchmark, bounded for long runs


@dataclass(frozen=True, slots=True)
class SerializedResources:
    """Serialised Envoy resources plus the cross-references the consistency check needs."""

    by_type: dict[str, dict[str, bytes]]  # type URL -> name -> deterministic serialisation
    eds_clusters: frozenset[str]  # clusters that expect a ClusterLoadAssignment
    route_targets: frozenset[str]  # clusters the routes send (or mirror) traffic to
    rds_names: tuple[str, ...]  # route configurations the listeners use


_ONE_BYTE = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if value < 128:  # nearly every length and tag here; skip the loop
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire_type: int = 2) -> bytes:
    return _varint(number << 3 | wire_type)


def _field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(payload)
    return key + (_ONE_BYTE[size] if size < 128 else _varint(size)) + payload


def _text(key: bytes, value: str) -> bytes:
    return _field(key, value.encode())


# Field keys (number and wire type), named message_field. Numbers come from the
# descriptors so a renumbering would fail loudly rather than corrupt output.
def _num(message: type, field: str) -> int:
    number: int = message.DESCRIPTOR.fields_by_name[field].number  # type: ignore[attr-defined]
    return number


_ROUTE_MATCH = _key(_num(rc.Route, "match"))
_ROUTE_ACTION = _key(_num(rc.Route, "route"))
_ROUTE_DIRECT = _key(_num(rc.Route, "direct_response"))
_ROUTE_HEADERS_TO_ADD = _key(_num(rc.Route, "response_headers_to_add"))
_ROUTE_NAME = _key(_num(rc.Route, "name"))
_MATCH_PREFIX = _key(_num(rc.RouteMatch, "prefix"))
_MATCH_SEPARATED_PREFIX = _key(_num(rc.RouteMatch, "path_separated_prefix"))
_MATCH_HEADERS = _key(_num(rc.RouteMatch, "headers"))
_MATCH_METADATA = _key(_num(rc.RouteMatch, "dynamic_metadata"))
_ACTION_CLUSTER = _key(_num(rc.RouteAction, "cluster"))
_ACTION_WEIGHTED = _key(_num(rc.RouteAction, "weighted_clusters"))
_ACTION_MIRRORS = _key(_num(rc.RouteAction, "request_mirror_policies"))
_WEIGHTED_CLUSTERS = _key(_num(rc.WeightedCluster, "clusters"))
_CW_NAME = _key(_num(rc.WeightedCluster.ClusterWeight, "name"))
_CW_WEIGHT = _key(_num(rc.WeightedCluster.ClusterWeight, "weight"))
_UINT32_VALUE = _key(1, 0)  # google.protobuf.UInt32Value.value, a varint
_VHOST_NAME = _key(_num(rc.VirtualHost, "name"))
_VHOST_DOMAINS = _key(_num(rc.VirtualHost, "domains"))
_VHOST_ROUTES = _key(_num(rc.VirtualHost, "routes"))
_VHOST_MATCHER = _key(_num(rc.VirtualHost, "matcher"))
_MATCHER_TREE = _key(_num(matcher_pb2.Matcher, "matcher_tree"))
_TREE_INPUT = _key(_num(matcher_pb2.Matcher.MatcherTree, "input"))
_TREE_PREFIX_MAP = _key(_num(matcher_pb2.Matcher.MatcherTree, "prefix_match_map"))
_MATCH_MAP = _key(_num(matcher_pb2.Matcher.MatcherTree.MatchMap, "map"))
_MAP_KEY = _key(1)  # map entries are messages of key = 1, value = 2
_MAP_VALUE = _key(2)
_ON_MATCH_ACTION = _key(_num(matcher_pb2.Matcher.OnMatch, "action"))
_EXTENSION_NAME = _key(_num(extension_pb2.TypedExtensionConfig, "name"))
_EXTENSION_CONFIG = _key(_num(extension_pb2.TypedExtensionConfig, "typed_config"))
_ANY_TYPE_URL = _key(_num(any_pb2.Any, "type_url"))
_ANY_VALUE = _key(_num(any_pb2.Any, "value"))
_ROUTE_LIST_ROUTES = _key(_num(rc.RouteList, "routes"))
_RC_NAME = _key(1)  # RouteConfiguration.name
_RC_VHOSTS = _key(2)  # RouteConfiguration.virtual_hosts
_CLA_NAME = _key(1)  # ClusterLoadAssignment.cluster_name
_CLA_ENDPOINTS = _key(2)  # ClusterLoadAssignment.endpoints (LocalityLbEndpoints)
_LOCALITY_LB_ENDPOINTS = _key(2)  # LocalityLbEndpoints.lb_endpoints
_LB_ENDPOINT = _key(1)  # LbEndpoint.endpoint
_ENDPOINT_ADDRESS = _key(1)  # Endpoint.address
_ADDRESS_SOCKET = _key(1)  # Address.socket_address
_SOCKET_ADDRESS = _key(2)  # SocketAddress.address
_SOCKET_PORT = _key(3, 0)  # SocketAddress.port_value, in a oneof: written even when 0
_CLUSTER_NAME = _key(_num(cluster_pb2.Cluster, "name"))


def _check_layout() -> None:
    # Concatenation relies on these numbers; the ones written as literals above are checked here.
    from envoy.config.core.v3 import address_pb2
    from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.route.v3 import route_pb2

    expected = {
        (route_pb2.RouteConfiguration, "name"): 1,
        (route_pb2.RouteConfiguration, "virtual_hosts"): 2,
        (endpoint_pb2.ClusterLoadAssignment, "cluster_name"): 1,
        (endpoint_pb2.ClusterLoadAssignment, "endpoints"): 2,
        (ec.LocalityLbEndpoints, "lb_endpoints"): 2,
        (ec.LbEndpoint, "endpoint"): 1,
        (ec.Endpoint, "address"): 1,
        (address_pb2.Address, "socket_address"): 1,
        (address_pb2.SocketAddress, "address"): 2,
        (address_pb2.SocketAddress, "port_value"): 3,
        (cluster_pb2.Cluster, "name"): 1,  # first, so a cluster is its name + everything else
    }
    for (message, field), number in expected.items():
        if _num(message, field) != number:  # pragma: no cover - only if the protos change
            raise RuntimeError(f"{message.__name__}.{field} is not field {number}")


_check_layout()


def _ser(message: Message) -> bytes:
    body: bytes = message.SerializeToString(deterministic=True)
    return body


# Pieces shared by many models (same header name, same version names) are memoised across models.
@lru_cache(maxsize=4096)
def _header_bytes(cond: HeaderCondition) -> bytes:
    return _ser(_routes._header(cond))


@lru_cache(maxsize=4096)
def _pin_header_bytes(header: str, version: str | None) -> bytes:
    """The header pin matcher: exact version, or (``None``) present with any value."""
    kind: HeaderMatchKind = "present" if version is None else "exact"
    return _header_bytes(HeaderCondition(header, kind, version or ""))


@lru_cache(maxsize=4096)
def _metadata_bytes(key: str, exact: str | None) -> bytes:
    return _ser(_routes._metadata(key, exact))


@lru_cache(maxsize=4096)
def _base_bytes(timeout_ms: int, rewrite_prefix: str | None, retry: Retry | None) -> bytes:
    # RouteAction fields after the cluster choice (numbers 5, 8, 9): most models share them.
    return _ser(_routes.base_action(timeout_ms, rewrite_prefix, retry))


_JSON_CONTENT_TYPE = _field(
    _ROUTE_HEADERS_TO_ADD,
    _ser(base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="content-type", value="application/json"))),
)


# Route.typed_per_filter_config (field 13, between the headers to add and the name)
# that switches body pinning off for a route: a Route with only that field set is
# exactly the field's encoding.
_BODY_PIN_OFF = _ser(rc.Route(typed_per_filter_config={BODY_PIN_FILTER: _routes._FILTER_DISABLED}))


def _route(match: bytes, name: str, action: bytes = b"", direct: bytes = b"", per_filter: bytes = b"") -> bytes:
    """One Route's fields, not yet wrapped as a VirtualHost or RouteList element."""
    body = _field(_ROUTE_MATCH, match)
    if action:
        body += _field(_ROUTE_ACTION, action)
    if direct:
        body += _field(_ROUTE_DIRECT, direct) + _JSON_CONTENT_TYPE
    return body + per_filter + _text(_ROUTE_NAME, name)


class _ModelRoutes:
    """Builds one model's routes; mirrors ``routes.model_routes`` piece by piece."""

    def __init__(self, model: Model, unready_versions: frozenset[str]) -> None:
        self.model = model
        self.unready = unready_versions
        # RouteMatch fields go out in number order: prefix (1) before the header (6) and
        # metadata (13) conditions, path_separated_prefix (14) after them.
        if model.path_prefix == "/":
            self.lead, self.tail = _text(_MATCH_PREFIX, "/"), b""
        else:
            self.lead, self.tail = b"", _text(_MATCH_SEPARATED_PREFIX, model.path_prefix)
        self.base = _base_bytes(model.timeout_ms, model.rewrite_prefix, model.retry)
        pin = model.pinning
        self.per_filter = _BODY_PIN_OFF if pin is None or pin.body_field is None else b""
        self.targets: set[str] = set()
        self.direct: bytes | None = None

    def pinned(self, name: str, match: bytes, version: str) -> bytes:
        target = cluster_name(self.model.name, version)
        self.targets.add(target)
        action = _text(_ACTION_CLUSTER, target) + self.base
        return _route(match, f"{self.model.name}/{name}", action=action, per_filter=self.per_filter)

    def unknown(self, name: str, match: bytes) -> bytes:
        if self.direct is None:  # the same 404 for header and body pins; built as a message once
            template = _routes._unknown_version(self.model, name, rc.RouteMatch())
            self.direct = _ser(template.direct_response)
        direct = self.direct
        return _route(match, f"{self.model.name}/{name}", direct=direct, per_filter=self.per_filter)

    def action(self, split: Split, mirrors: Iterable[Mirror]) -> bytes:
        model = self.model
        weights = effective_weights(split, self.unready)
        if len(weights) == 1:
            target = cluster_name(model.name, weights[0][0])
            self.targets.add(target)
            out = _text(_ACTION_CLUSTER, target)
        elif weights:
            clusters = b""
            for version, weight in weights:
                target = cluster_name(model.name, version)
                self.targets.add(target)
                clusters += _field(
                    _WEIGHTED_CLUSTERS,
                    _text(_CW_NAME, target) + _field(_CW_WEIGHT, _UINT32_VALUE + _varint(weight)),
                )
            out = _field(_ACTION_WEIGHTED, clusters)
        else:  # unreachable for valid policies (weights sum to 100); mirrors translate()
            out = b""
        out += self.base
        mirror_list = tuple(mirrors)
        if mirror_list:
            # Rare and irregular: let protobuf encode the mirror policies.
            mirrored = _routes._action(model, Split(()), mirror_list, self.unready)
            for policy in mirrored.request_mirror_policies:
                self.targets.add(policy.cluster)
                out += _field(_ACTION_MIRRORS, policy.SerializeToString(deterministic=True))
        return out

    def match(self, conditions: bytes = b"") -> bytes:
        return self.lead + conditions + self.tail

    def build(self) -> list[bytes]:
        model, out = self.model, []
        pin = model.pinning
        if pin is not None and pin.header is not None:
            for version in model.versions:
                header = _pin_header_bytes(pin.header, version.name)
                match = self.match(_field(_MATCH_HEADERS, header))
                out.append(self.pinned(f"pin-header/{version.name}", match, version.name))
            present = _pin_header_bytes(pin.header, None)
            out.append(self.unknown("pin-header/unknown", self.match(_field(_MATCH_HEADERS, present))))
        if pin is not None and pin.body_field is not None:
            key = body_pin_key(pin.body_field)
            for version in model.versions:
                match = self.match(_field(_MATCH_METADATA, _metadata_bytes(key, version.name)))
                out.append(self.pinned(f"pin-body/{version.name}", match, version.name))
            absent = self.match(_field(_MATCH_METADATA, _metadata_bytes(key, None)))
            out.append(self.unknown("pin-body/unknown", absent))
        for rule in model.rules:
            conditions = b"".join(_field(_MATCH_HEADERS, _header_bytes(h)) for h in rule.headers)
            length = _routes.content_length_matcher(rule)
            if length is not None:
                conditions += _field(_MATCH_HEADERS, _ser(length))
            action = self.action(rule.split, rule.mirrors)
            name = f"{model.name}/rule/{rule.name}"
            out.append(_route(self.match(conditions), name, action=action, per_filter=self.per_filter))
        action = self.action(model.split, model.mirrors)
        out.append(_route(self.match(), f"{model.name}/default", action=action, per_filter=self.per_filter))
        return out


class _IdentityMemo(Generic[K, V]):
    """Results per object identity, holding the object so its id cannot be reused.

    IR models are immutable and the controller hands back the very same object
    while a document is unchanged, so identity is a sound key, and unlike
    ``lru_cache`` it does not re-hash the whole nested model on every lookup
    (a few µs each, which at 10,000 models was most of a no-op re-translation).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: dict[tuple[int, Hashable], tuple[K, V]] = {}

    def get(self, obj: K, extra: Hashable = None) -> V | None:
        hit = self._items.get((id(obj), extra))
        return hit[1] if hit is not None and hit[0] is obj else None

    def put(self, obj: K, extra: Hashable, value: V) -> V:
        if len(self._items) >= self._limit:  # drop the oldest half; cheap and rare
            for key in list(self._items)[: self._limit // 2]:
                del self._items[key]
        self._items[(id(obj), extra)] = (obj, value)
        return value

    def clear(self) -> None:
        self._items.clear()


class EncodedRoutes:
    """One model's routes, encoded for either place a route list lives, and the clusters they use."""

    __slots__ = ("_in_list", "_in_vhost", "bodies", "targets")

    def __init__(self, bodies: list[bytes], targets: frozenset[str]) -> None:
        self.bodies = bodies
        self.targets = targets
        self._in_vhost: bytes | None = None
        self._in_list: bytes | None = None

    def in_vhost(self) -> bytes:
        """As ``VirtualHost.routes`` fields (a model with a host of its own)."""
        if self._in_vhost is None:
            self._in_vhost = b"".join(_field(_VHOST_ROUTES, body) for body in self.bodies)
        return self._in_vhost

    def in_list(self) -> bytes:
        """As ``RouteList.routes`` fields (a model in a shared host's prefix matcher)."""
        if self._in_list is None:
            self._in_list = b"".join(_field(_ROUTE_LIST_ROUTES, body) for body in self.bodies)
        return self._in_list


_ROUTES: _IdentityMemo[Model, EncodedRoutes] = _IdentityMemo(2 * _MEMO)


def model_route_bytes(model: Model, unready_versions: frozenset[str]) -> EncodedRoutes:
    """One model's routes (memoised: an edit usually touches one model of many)."""
    found = _ROUTES.get(model, unready_versions)
    if found is not None:
        return found
    builder = _ModelRoutes(model, unready_versions)
    bodies = builder.build()
    return _ROUTES.put(model, unready_versions, EncodedRoutes(bodies, frozenset(builder.targets)))


@dataclass(frozen=True, slots=True)
class _ModelClusters:
    clusters: tuple[tuple[str, bytes], ...]
    endpoints: tuple[tuple[str, bytes], ...]  # only for EDS clusters


def _load_assignment(name: str, version: Version) -> bytes:
    lb_endpoints = b"".join(
        _field(
            _LOCALITY_LB_ENDPOINTS,
            _field(
                _LB_ENDPOINT,
                _field(
                    _ENDPOINT_ADDRESS,
                    _field(_ADDRESS_SOCKET, _text(_SOCKET_ADDRESS, e.host) + _SOCKET_PORT + _varint(e.port)),
                ),
            ),
        )
        for e in version.endpoints
    )
    return _text(_CLA_NAME, name) + _field(_CLA_ENDPOINTS, lb_endpoints)


_CLUSTERS: _IdentityMemo[Model, _ModelClusters] = _IdentityMemo(_MEMO)


_TemplateKey = tuple[int, int | None, HealthCheck | None, OutlierDetection | None]
_EDS_TEMPLATES: dict[_TemplateKey, cluster_pb2.Cluster] = {}


def _eds_rest(model: Model) -> bytes:
    """An EDS cluster of ``model`` without its name: shared settings from a template, plus the model name."""
    key = (model.connect_timeout_ms, model.slow_start_ms, model.health_check, model.outlier_detection)
    template = _EDS_TEMPLATES.get(key)
    if template is None:
        if len(_EDS_TEMPLATES) > 1024:  # settings combinations are few; bound it anyway
            _EDS_TEMPLATES.clear()
        eds_version = next(v for v in model.versions if all(e.is_ip for e in v.endpoints))
        template = _EDS_TEMPLATES[key] = cluster(model, eds_version)
        template.ClearField("name")
    message = cluster_pb2.Cluster()
    message.CopyFrom(template)
    if model.health_check is not None:  # the one model-specific field: probes send Host: <model>
        message.health_checks[0].http_health_check.host = model.name
    return _ser(message)


def model_cluster_bytes(model: Model) -> _ModelClusters:
    """Clusters and EDS assignments of one model (they do not depend on readiness)."""
    found = _CLUSTERS.get(model)
    if found is not None:
        return found
    clusters: list[tuple[str, bytes]] = []
    endpoints: list[tuple[str, bytes]] = []
    eds_rest: bytes | None = None
    for version in model.versions:
        name = cluster_name(model.name, version.name)
        if all(e.is_ip for e in version.endpoints):
            if eds_rest is None:
                # Every EDS cluster of a model is the same apart from its name, which is
                # field 1 and so comes first: serialise the rest once per model.
                eds_rest = _eds_rest(model)
            clusters.append((name, _text(_CLUSTER_NAME, name) + eds_rest))
            endpoints.append((name, _load_assignment(name, version)))
        else:  # DNS clusters embed their endpoints; rare, so built as a message
            clusters.append((name, _ser(cluster(model, version))))
    return _CLUSTERS.put(model, None, _ModelClusters(tuple(clusters), tuple(endpoints)))


def _unready_of(model: Model, unready: Container[str]) -> frozenset[str]:
    if not unready:
        return frozenset()
    return frozenset(v.name for v in model.versions if cluster_name(model.name, v.name) in unready)


def serialize(intent: RoutingIntent, unready: frozenset[str] = frozenset()) -> SerializedResources:
    """``translate(intent, unready)``, serialised; byte-identical to serialising its messages."""
    clusters: dict[str, bytes] = {}
    endpoints: dict[str, bytes] = {}
    for model in intent.models:
        built = model_cluster_bytes(model)
        clusters.update(built.clusters)
        endpoints.update(built.endpoints)
    routes, targets = _route_configuration(intent, unready)
    lis = listener(intent)
    return SerializedResources(
        by_type={
            CLUSTER: clusters,
            ENDPOINT: endpoints,
            LISTENER: {lis.name: lis.SerializeToString(deterministic=True)},
            ROUTE: {ROUTE_CONFIG_NAME: routes},
        },
        eds_clusters=frozenset(endpoints),
        route_targets=targets,
        rds_names=(ROUTE_CONFIG_NAME,),
    )


def _route_configuration(intent: RoutingIntent, unready: frozenset[str]) -> tuple[bytes, frozenset[str]]:
    # Same layout as routes.route_configuration: one virtual host per set of models sharing
    # domains; plain routes for one model, a path-prefix matcher for several.
    models_by_name = {m.name: m for m in intent.models}
    out = [_text(_RC_NAME, ROUTE_CONFIG_NAME)]
    targets: set[str] = set()

    def encoded(model: Model) -> EncodedRoutes:
        routes = model_route_bytes(model, _unready_of(model, unready))
        targets.update(routes.targets)
        return routes

    for names, domains in _routes.virtual_host_groups(intent.models).items():
        parts = [_text(_VHOST_NAME, "+".join(names))]
        parts.extend(_text(_VHOST_DOMAINS, d) for d in domains)
        models = [models_by_name[name] for name in names]
        if len(models) == 1:
            parts.append(encoded(models[0]).in_vhost())
        else:
            entries = []
            for key, model, fallback in sorted(_routes.prefix_map_entries(models), key=lambda e: _map_order(e[0])):
                route_list = encoded(model).in_list()
                if fallback is not None:
                    route_list += encoded(fallback).in_list()
                entries.append(
                    _field(_MATCH_MAP, _text(_MAP_KEY, key) + _field(_MAP_VALUE, _on_match(model, route_list)))
                )
            tree = _PATH_INPUT + _field(_TREE_PREFIX_MAP, b"".join(entries))
            parts.append(_field(_VHOST_MATCHER, _field(_MATCHER_TREE, tree)))
        out.append(_field(_RC_VHOSTS, b"".join(parts)))
    return b"".join(out), frozenset(targets)


def _map_order(key: str) -> bytes:
    """Where deterministic serialisation puts a string map key.

    upb compares the common length bytewise and, when one key is a prefix of
    the other, puts the longer first ("/a/b", "/aa", "/a", "/"): the same as
    comparing the UTF-8 with a 0xff byte (never in UTF-8) appended.
    ``_check_map_order`` verifies this against protobuf at import.
    """
    return key.encode() + b"\xff"


def _check_map_order() -> None:
    probe = ["/", "/a", "/a/b", "/aa", "/ab", "/b", "//", "/~", "/\u00e9", "/a-b"]
    entries = matcher_pb2.Matcher.MatcherTree.MatchMap(map={k: matcher_pb2.Matcher.OnMatch() for k in probe})
    encoded = _ser(entries)
    expected = b"".join(
        _field(_MATCH_MAP, _text(_MAP_KEY, k) + _field(_MAP_VALUE, b"")) for k in sorted(probe, key=_map_order)
    )
    if encoded != expected:  # pragma: no cover - only if protobuf changes how it orders map keys
        raise RuntimeError("protobuf's deterministic map order is not the one _map_order assumes")


_check_map_order()
_PATH_INPUT = _field(_TREE_INPUT, _ser(_routes.PATH_INPUT))
_ROUTE_LIST_TYPE_URL = _text(_ANY_TYPE_URL, _routes.ROUTE_LIST_TYPE)


def _on_match(model: Model, route_list: bytes) -> bytes:
    """An OnMatch whose action is the RouteList ``route_list`` (encoded RouteList.routes fields)."""
    packed = _ROUTE_LIST_TYPE_URL + _field(_ANY_VALUE, route_list)
    return _field(_ON_MATCH_ACTION, _text(_EXTENSION_NAME, model.name) + _field(_EXTENSION_CONFIG, packed))
