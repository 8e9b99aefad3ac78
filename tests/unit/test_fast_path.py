"""The serialised fast path must produce exactly the bytes of serialising translate()'s messages."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from control_plane.ir import RoutingIntent
from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, translate
from control_plane.translate.names import cluster_name
from control_plane.translate.serialized import serialize
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot

RICH = """
apiVersion: switchyard/v1
kind: Gateway
metadata: {name: gw}
spec: {address: 127.0.0.1, port: 18080}
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: sentiment}
spec:
  hosts: ["*", "api.example.com"]
  path_prefix: /v1/sentiment
  rewrite_prefix: /v1/predict
  versions:
    sentiment-v3: {endpoints: ["127.0.0.1:8101", "127.0.0.1:8102"]}
    sentiment-v4: {endpoints: ["[::1]:8201"]}
    sentiment-v4-large: {endpoints: ["model-large.internal:8301"]}
    sentiment-v5: {endpoints: ["127.0.0.1:8401"]}
  traffic: {sentiment-v3: 90, sentiment-v4: 10, sentiment-v4-large: 0}
  shadow: [{version: sentiment-v5, percent: 12.5}]
  rules:
    - name: premium
      match: {headers: {x-user-tier: premium, x-region: {prefix: eu-}}}
      traffic: {sentiment-v4-large: 100}
    - name: long-inputs
      match: {min_content_length: 4096, headers: {x-debug: {absent: true}}}
      traffic: {sentiment-v4-large: 70, sentiment-v3: 30}
      shadow: [{version: sentiment-v5, percent: 100}, {version: sentiment-v4, percent: 1}]
    - name: small
      match: {max_content_length: 10, headers: {x-trace: {present: true}, ua: {regex: "^curl/.*"}}}
      traffic: {sentiment-v3: 100}
  pinning: {header: x-model-version, body_field: request.model_version}
  timeout: 5s
  retries: {attempts: 2, on: [connect-failure, reset], per_try_timeout: 1500ms}
  health_check: {path: /v2/health/ready, interval: 2s}
  outlier_detection: {consecutive_5xx: 5}
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: summarise}
spec:
  hosts: ["*"]
  path_prefix: /v1/summarise
  versions:
    s1: {endpoints: ["summarise.internal:80"]}
    s2: {endpoints: ["10.0.0.2:80"]}
  traffic: {s1: 50, s2: 50}
  pinning: {header: x-model-version}
  slow_start: null
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: embed}
spec:
  hosts: ["*", "embed.example.com"]
  versions:
    e1: {endpoints: ["10.0.0.3:80"]}
  pinning: {body_field: model_version}
"""


def _model(name: str, prefix: str, hosts: str = '["*"]', extra: str = "") -> str:
    return (
        f"apiVersion: switchyard/v1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n"
        f"  hosts: {hosts}\n  path_prefix: {prefix}\n"
        '  versions: {a: {endpoints: ["10.0.0.1:80"]}, b: {endpoints: ["10.0.0.2:80"]}, s: {endpoints: ["10.0.0.3:80"]}}\n'
        "  traffic: {a: 50, b: 50}\n"
        "  rules: [{name: r, match: {headers: {x-r: '1'}}, traffic: {b: 100}}]\n"
        f"{extra}"
    )


# Many models on one host by path prefix: a "/" catch-all, nesting ("/a", "/a/b",
# "/a/b/c" without "/a/b/c"'s parent's parent in between), raw-prefix neighbours
# ("/ab", "/a-b", "/aa") and keys whose map order differs from plain sorting.
# "/x" and "/x/y" share "other.example.com" without a catch-all.
SHARED_PREFIXES = ["/", "/a", "/ab", "/a-b", "/aa", "/a/b", "/a/b/c/d", "/b", "/\u00e9t\u00e9", "/~"]
SHARED = "---\n".join(
    [
        *(
            _model(
                f"m{i}",
                prefix,
                extra="  pinning: {header: x-v, body_field: v}\n  shadow: [{version: s, percent: 5}]\n"
                if i % 3 == 0
                else "  rewrite_prefix: /v1\n",
            )
            for i, prefix in enumerate(SHARED_PREFIXES)
        ),
        _model("x", "/x", hosts='["other.example.com"]'),
        _model("xy", "/x/y", hosts='["other.example.com", "*.example.org"]'),
        _model("solo", "/solo", hosts='["solo.example.com"]'),
    ]
)


def _intent(text: str = RICH) -> RoutingIntent:
    return to_intent(load_texts({"rich.yaml": text}))


UNREADY = [
    frozenset(),
    frozenset({cluster_name("sentiment", "sentiment-v4")}),
    frozenset({cluster_name("sentiment", "sentiment-v3"), cluster_name("summarise", "s1")}),
]


SHARED_UNREADY = [frozenset(), frozenset({cluster_name("m0", "a"), cluster_name("m5", "b")})]


@pytest.mark.parametrize(
    ("text", "unready"),
    [
        pytest.param(RICH, u, id=f"rich-{i}")
        for i, u in zip(["all-ready", "one-unready", "two-unready"], UNREADY, strict=True)
    ]
    + [pytest.param(SHARED, u, id=f"shared-host-{i}") for i, u in enumerate(SHARED_UNREADY)],
)
def test_serialized_bytes_equal_translate(text: str, unready: frozenset[str]) -> None:
    intent = _intent(text)
    slow = translate(intent, unready).by_type
    fast = serialize(intent, unready).by_type
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        expected = {n: m.SerializeToString(deterministic=True) for n, m in slow[type_url].items()}
        assert list(fast[type_url]) == list(expected), type_url
        for name, body in expected.items():
            assert fast[type_url][name] == body, (type_url, name)


@pytest.mark.parametrize(("text", "unreadies"), [(RICH, UNREADY), (SHARED, SHARED_UNREADY)], ids=["rich", "shared"])
def test_serialized_snapshot_equals_built_snapshot(text: str, unreadies: list[frozenset[str]]) -> None:
    intent = _intent(text)
    for unready in unreadies:
        built = Snapshot.build(translate(intent, unready))
        fast = Snapshot.from_serialized(serialize(intent, unready))
        assert fast.version == built.version
        assert fast.type_versions == built.type_versions
        assert fast.route_clusters == built.route_clusters
        assert fast.entries == built.entries


def test_previous_snapshot_entries_are_reused_when_unchanged() -> None:
    intent = _intent()
    first = Snapshot.from_serialized(serialize(intent))
    again = Snapshot.from_serialized(serialize(intent), previous=first)
    assert again.version == first.version
    for type_url, entries in again.entries.items():
        for name, entry in entries.items():
            assert entry is first.entries[type_url][name]


def test_serialized_consistency_check_still_rejects() -> None:
    resources = serialize(_intent())
    broken = type(resources)(
        by_type={**resources.by_type, CLUSTER: {}},
        eds_clusters=resources.eds_clusters,
        route_targets=resources.route_targets,
        rds_names=resources.rds_names,
    )
    with pytest.raises(InconsistentSnapshot, match="unknown cluster"):
        Snapshot.from_serialized(broken)


def _path_matches(match: rc.RouteMatch, path: str) -> bool:
    if match.HasField("path_separated_prefix"):  # Envoy ignores the query string here
        bare = path.split("?", 1)[0]
        return bare == match.path_separated_prefix or bare.startswith(match.path_separated_prefix + "/")
    return path.startswith(match.prefix)


def _envoy_pick(vhost: rc.VirtualHost, path: str) -> str | None:
    """The route a plain request (no pins, no rule headers) gets, following Envoy's rules:
    a linear scan of ``routes``, or the longest matching key of the prefix map (and never a
    shorter one) followed by a linear scan of that key's RouteList."""
    routes = list(vhost.routes)
    if vhost.HasField("matcher"):
        keys = [k for k in vhost.matcher.matcher_tree.prefix_match_map.map if path.startswith(k)]
        if not keys:
            return None
        route_list = rc.RouteList()
        assert vhost.matcher.matcher_tree.prefix_match_map.map[max(keys, key=len)].action.typed_config.Unpack(
            route_list
        )
        routes = list(route_list.routes)
    for route in routes:
        if _path_matches(route.match, path) and not route.match.headers and not route.match.dynamic_metadata:
            return route.name
    return None


def test_prefix_matcher_picks_the_longest_prefix_on_a_segment_boundary() -> None:
    intent = _intent(SHARED)
    config = translate(intent).by_type[ROUTE]["switchyard_routes"]
    assert isinstance(config, route_pb2.RouteConfiguration)
    vhosts = {tuple(v.domains): v for v in config.virtual_hosts}
    assert not vhosts[("*",)].routes and not vhosts[("solo.example.com",)].HasField("matcher")
    hosts = {("*",): SHARED_PREFIXES, ("other.example.com",): ["/x", "/x/y"], ("*.example.org",): ["/x/y"]}
    suffixes = ["", "/", "/z", "z", "?q=1", "?q=/a", "/?q", "-b", "/b", "/bz", "/b/c", "/b/c/d/e", "/~x"]
    by_prefix = {m.path_prefix: m.name for m in intent.models if "*" in m.hosts}
    for domains, prefixes in hosts.items():
        owner = {m.path_prefix: m.name for m in intent.models if domains[0] in m.hosts}
        for path in sorted({p + s for p in [*prefixes, "/zzz"] for s in suffixes}):
            bare = path.split("?", 1)[0]
            under = [p for p in owner if p == "/" or bare == p or bare.startswith(p + "/")]
            want = f"{owner[max(under, key=len)]}/default" if under else None
            assert _envoy_pick(vhosts[domains], path) == want, (domains, path)
    assert _envoy_pick(vhosts[("*",)], "/ab") == f"{by_prefix['/ab']}/default"
    assert _envoy_pick(vhosts[("*",)], "/abc") == f"{by_prefix['/']}/default"
    assert _envoy_pick(vhosts[("*",)], "/a/b/c") == f"{by_prefix['/a/b']}/default"
    assert _envoy_pick(vhosts[("*",)], "/a/b/c/dz") == f"{by_prefix['/a/b']}/default"
