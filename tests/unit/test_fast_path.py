"""The serialised fast path must produce exactly the bytes of serialising translate()'s messages."""

from __future__ import annotations

import pytest

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


def _intent() -> RoutingIntent:
    return to_intent(load_texts({"rich.yaml": RICH}))


UNREADY = [
    frozenset(),
    frozenset({cluster_name("sentiment", "sentiment-v4")}),
    frozenset({cluster_name("sentiment", "sentiment-v3"), cluster_name("summarise", "s1")}),
]


@pytest.mark.parametrize("unready", UNREADY, ids=["all-ready", "one-unready", "two-unready"])
def test_serialized_bytes_equal_translate(unready: frozenset[str]) -> None:
    intent = _intent()
    slow = translate(intent, unready).by_type
    fast = serialize(intent, unready).by_type
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        expected = {n: m.SerializeToString(deterministic=True) for n, m in slow[type_url].items()}
        assert list(fast[type_url]) == list(expected), type_url
        for name, body in expected.items():
            assert fast[type_url][name] == body, (type_url, name)


def test_serialized_snapshot_equals_built_snapshot() -> None:
    intent = _intent()
    for unready in UNREADY:
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
