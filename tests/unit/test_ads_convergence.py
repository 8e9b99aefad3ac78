"""An ADS stream driven step by step (no network, no sleeps): whatever sequence of snapshots
the control plane publishes while Envoy is still answering the previous ones, an Envoy
that ACKs everything ends on the current snapshot and is reported synced to it."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER, translate
from control_plane.translate.names import ROUTE_CONFIG_NAME, cluster_name
from control_plane.xds import server as ads
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry
from control_plane.xds.snapshot import Snapshot

POLICY = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: m}
spec:
  health_check: {path: /ready}
  versions:
    v3: {endpoints: ["127.0.0.1:%d"]}
    v5: {endpoints: ["127.0.0.1:%d"]}
  traffic: {v3: 100}
  shadow: [{version: v5, percent: 100}]
"""


def snapshot(ports: tuple[int, int], unready: frozenset[str], previous: Snapshot | None) -> Snapshot:
    """An edit swaps the endpoints (ports); readiness flaps take v3 or v5 out (unready)."""
    intent = to_intent(load_texts({"p.yaml": POLICY % ports}))
    return Snapshot.build(translate(intent, unready), previous=previous)


class ScriptedEnvoy:
    """Answers every response the way Envoy does: ACK it, and (re)subscribe to EDS names as CDS changes."""

    def __init__(self, stream: Any, delta: bool) -> None:
        self.stream = stream
        self.delta = delta
        self.node = base_pb2.Node(id="scripted", cluster="test")
        self.eds_names: set[str] = set()
        self.last: dict[str, Any] = {}

    def request(self, type_url: str, response: Any = None, **fields: Any) -> None:
        if self.delta:
            message: Any = discovery_pb2.DeltaDiscoveryRequest(node=self.node, type_url=type_url, **fields)
            if response is not None:
                message.response_nonce = response.nonce
        else:
            message = discovery_pb2.DiscoveryRequest(node=self.node, type_url=type_url, **fields)
            if response is not None:
                message.response_nonce = response.nonce
                message.version_info = response.version_info
        self.stream.receive(message)

    def subscribe(self) -> None:
        for type_url in (CLUSTER, LISTENER):
            self.request(type_url)
        self.request(ROUTE, **self._names([ROUTE_CONFIG_NAME], []))

    def _names(self, add: list[str], remove: list[str]) -> dict[str, Any]:
        if self.delta:
            return {"resource_names_subscribe": add, "resource_names_unsubscribe": remove}
        return {}

    def answer(self, responses: list[Any]) -> None:
        for response in responses:
            type_url = response.type_url
            self.last[type_url] = response
            if type_url == ENDPOINT and not self.delta:
                self.request(ENDPOINT, response, resource_names=sorted(self.eds_names))
            elif type_url == ROUTE and not self.delta:
                self.request(ROUTE, response, resource_names=[ROUTE_CONFIG_NAME])
            else:
                self.request(type_url, response)
            if type_url == CLUSTER:
                self._clusters_changed(response)

    def _clusters_changed(self, response: Any) -> None:
        names = set(self.eds_names)
        for resource in response.resources:
            packed = resource.resource if self.delta else resource
            cluster = cluster_pb2.Cluster.FromString(packed.value)
            if cluster.type == cluster_pb2.Cluster.EDS:
                names.add(cluster.name)
        if self.delta:
            names -= set(response.removed_resources)
        else:
            names &= {cluster_pb2.Cluster.FromString(r.value).name for r in response.resources}
        if names == self.eds_names:
            return
        added, removed = sorted(names - self.eds_names), sorted(self.eds_names - names)
        self.eds_names = names
        if self.delta:
            self.request(ENDPOINT, **self._names(added, removed))
        else:
            last = self.last.get(ENDPOINT)
            fields: dict[str, Any] = {"resource_names": sorted(names)}
            if last is not None:
                fields.update(version_info=last.version_info, response_nonce=last.nonce)
            self.request(ENDPOINT, **fields)


def settle(stream: Any, envoy: ScriptedEnvoy, rounds: int = 50) -> None:
    for _ in range(rounds):
        responses = stream.pump()
        if not responses:
            return
        envoy.answer(responses)
    raise AssertionError("the stream never stopped sending")


@st.composite
def sequences(d: st.DrawFn) -> list[tuple[str, int, int]]:
    """Steps: an edit (which ports) or a readiness change (which unready set), then how many rounds Envoy answers."""
    return d(
        st.lists(
            st.tuples(st.sampled_from(["edit", "ready"]), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=8
        )
    )


PORTS = [(9001, 9005), (9101, 9105), (9001, 9105), (9101, 9005)]
UNREADY = [
    frozenset(),
    frozenset({cluster_name("m", "v3")}),
    frozenset({cluster_name("m", "v5")}),
    frozenset({cluster_name("m", "v3"), cluster_name("m", "v5")}),
]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@settings(max_examples=150, deadline=None)
@given(steps=sequences())
def test_envoy_ends_on_the_current_snapshot_after_edits_and_readiness_flaps(
    delta: bool, steps: list[tuple[str, int, int]]
) -> None:
    cache, nodes = SnapshotCache(), NodeRegistry()
    ports, unready = PORTS[0], UNREADY[0]
    cache.set(snapshot(ports, unready, None))
    stream = (ads._DeltaStream if delta else ads._SotwStream)(cache, nodes)
    envoy = ScriptedEnvoy(stream, delta)
    envoy.subscribe()
    settle(stream, envoy)
    assert stream.status.synced_snapshot == cache.current.version  # type: ignore[union-attr]
    for kind, index, answered in steps:
        if kind == "edit":
            ports = PORTS[index]
        else:
            unready = UNREADY[index]
        cache.set(snapshot(ports, unready, cache.current))
        for _ in range(answered):  # Envoy answers some of it before the next snapshot arrives
            envoy.answer(stream.pump())
    settle(stream, envoy)
    current = cache.current
    assert current is not None
    assert stream.status.synced_snapshot == current.version  # type: ignore[union-attr]
    for type_url in TYPE_ORDER:
        assert stream.complete(type_url, current), type_url
