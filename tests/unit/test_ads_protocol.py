"""The ADS protocol against a scripted Envoy: ordering, ACK/NACK, stale clusters, delta resume.

The stream's state machine is driven directly (a request in, ``pump()`` out), so "nothing
is sent" is a fact of one call, not a guess after a sleep; one test runs the same
handshake over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from control_plane.policy.compile import to_intent
from control_plane.policy.loader import load_texts
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, translate
from control_plane.xds import server as ads
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry
from control_plane.xds.snapshot import Snapshot

POLICY = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: m}
spec:
  versions:
%s
  traffic: {%s}
"""


def snapshot(weights: dict[str, int]) -> Snapshot:
    versions = "\n".join(f'    {v}: {{endpoints: ["127.0.0.1:{9000 + i}"]}}' for i, v in enumerate(weights))
    traffic = ", ".join(f"{v}: {w}" for v, w in weights.items())
    return Snapshot.build(translate(to_intent(load_texts({"p.yaml": POLICY % (versions, traffic)}))))


class Client:
    """A scripted Envoy on a stream: each request goes in, what the stream answers queues up."""

    def __init__(self, cache: SnapshotCache, nodes: NodeRegistry, *, delta: bool) -> None:
        self.delta = delta
        self.stream = (ads._DeltaStream if delta else ads._SotwStream)(cache, nodes)
        self.node = base_pb2.Node(id="unit-envoy", cluster="test")
        self.inbox: list[Any] = []

    def send(self, **fields: object) -> None:
        message = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        self.stream.receive(message(node=self.node, **fields))
        self.inbox += self.stream.pump()

    def published(self) -> None:
        """The cache changed: the stream's loop wakes up and pumps."""
        self.inbox += self.stream.pump()

    def recv(self) -> Any:
        assert self.inbox, "the stream sent nothing"
        return self.inbox.pop(0)

    def nothing(self) -> None:
        self.inbox += self.stream.pump()
        assert not self.inbox, self.inbox[0]


@pytest.fixture
def parts() -> tuple[SnapshotCache, NodeRegistry]:
    return SnapshotCache(), NodeRegistry()


def sotw_handshake(client: Any, cache: SnapshotCache) -> dict[str, discovery_pb2.DiscoveryResponse]:
    """Subscribe to everything like Envoy does and ACK each response; return the last of each type."""
    got = {}
    client.send(type_url=CLUSTER)
    got[CLUSTER] = client.recv()
    client.send(type_url=CLUSTER, version_info=got[CLUSTER].version_info, response_nonce=got[CLUSTER].nonce)
    names = list(cache.current.entries[ENDPOINT]) if cache.current else []
    client.send(type_url=ENDPOINT, resource_names=names)
    got[ENDPOINT] = client.recv()
    client.send(
        type_url=ENDPOINT,
        resource_names=names,
        version_info=got[ENDPOINT].version_info,
        response_nonce=got[ENDPOINT].nonce,
    )
    client.send(type_url=LISTENER)
    got[LISTENER] = client.recv()
    client.send(type_url=LISTENER, version_info=got[LISTENER].version_info, response_nonce=got[LISTENER].nonce)
    client.send(type_url=ROUTE, resource_names=["switchyard_routes"])
    got[ROUTE] = client.recv()
    client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=got[ROUTE].version_info,
        response_nonce=got[ROUTE].nonce,
    )
    return got


def test_sotw_serves_all_types_and_marks_node_synced(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 90, "v2": 10}))
    client = Client(cache, nodes, delta=False)
    got = sotw_handshake(client, cache)
    assert len(got[CLUSTER].resources) == 2
    assert len(got[ENDPOINT].resources) == 2
    client.nothing()
    status = nodes.get("unit-envoy")
    assert status is not None
    assert status.synced_snapshot == cache.current.version  # type: ignore[union-attr]


def test_sotw_change_sends_only_what_changed_and_in_order(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 90, "v2": 10}))
    client = Client(cache, nodes, delta=False)
    sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 50, "v2": 50}))  # weights only: routes change, nothing else
    client.published()
    response = client.recv()
    assert response.type_url == ROUTE
    client.nothing()


def test_new_cluster_goes_out_before_routes_that_use_it(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 100}))
    client = Client(cache, nodes, delta=False)
    sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 90, "v2": 10}))
    client.published()
    cds = client.recv()
    assert cds.type_url == CLUSTER
    client.nothing()  # routes wait until the clusters are ACKed
    client.send(type_url=CLUSTER, version_info=cds.version_info, response_nonce=cds.nonce)
    client.send(type_url=ENDPOINT, resource_names=["m/v1", "m/v2"])
    eds = client.recv()
    assert eds.type_url == ENDPOINT
    client.nothing()  # and until their endpoints are ACKed
    client.send(
        type_url=ENDPOINT,
        resource_names=["m/v1", "m/v2"],
        version_info=eds.version_info,
        response_nonce=eds.nonce,
    )
    rds = client.recv()
    assert rds.type_url == ROUTE


def test_stale_cluster_is_removed_only_after_routes_move_on(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 50, "v2": 50}))
    client = Client(cache, nodes, delta=False)
    sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 100}))  # v2 disappears
    client.published()
    rds = client.recv()
    assert rds.type_url == ROUTE  # routes first: the CDS Envoy has still holds v2, which they no longer use
    client.nothing()
    client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=rds.version_info,
        response_nonce=rds.nonce,
    )
    cds = client.recv()
    assert cds.type_url == CLUSTER
    assert len(cds.resources) == 1  # now v2 goes


def test_nack_is_recorded_never_resent_and_cache_falls_back(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    good = snapshot({"v1": 90, "v2": 10})
    cache.set(good)
    client = Client(cache, nodes, delta=False)
    got = sotw_handshake(client, cache)
    bad = snapshot({"v1": 20, "v2": 80})
    cache.set(bad)
    client.published()
    rds = client.recv()
    client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=got[ROUTE].version_info,  # Envoy keeps its last good version
        response_nonce=rds.nonce,
        error_detail=status_pb2.Status(code=3, message="route: invalid regex"),
    )
    status = nodes.get("unit-envoy")
    assert status is not None and status.last_nack is not None
    assert status.last_nack.message == "route: invalid regex"
    assert cache.current is good  # the served snapshot rolled back to the last good one
    assert cache.is_rejected(bad.version)
    assert not cache.set(bad)  # and it is never published again
    client.nothing()  # the node already runs the good routes: nothing to send


def test_delta_sends_changes_and_removals(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 50, "v2": 50}))
    client = Client(cache, nodes, delta=True)
    client.send(type_url=CLUSTER)
    cds = client.recv()
    assert sorted(r.name for r in cds.resources) == ["m/v1", "m/v2"]
    client.send(type_url=CLUSTER, response_nonce=cds.nonce)
    client.send(type_url=ENDPOINT, resource_names_subscribe=["m/v1", "m/v2"])
    eds = client.recv()
    client.send(type_url=ENDPOINT, response_nonce=eds.nonce)
    client.send(type_url=LISTENER)
    lds = client.recv()
    client.send(type_url=LISTENER, response_nonce=lds.nonce)
    client.send(type_url=ROUTE, resource_names_subscribe=["switchyard_routes"])
    rds = client.recv()
    client.send(type_url=ROUTE, response_nonce=rds.nonce)
    cache.set(snapshot({"v1": 100}))
    client.published()
    rds = client.recv()
    assert rds.type_url == ROUTE
    client.send(type_url=ROUTE, response_nonce=rds.nonce)
    cds = client.recv()
    assert cds.type_url == CLUSTER
    assert list(cds.removed_resources) == ["m/v2"]
    assert not cds.resources


def test_delta_reconnect_with_current_versions_gets_nothing(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    current = snapshot({"v1": 50, "v2": 50})
    cache.set(current)
    client = Client(cache, nodes, delta=True)
    versions = {name: entry.version for name, entry in current.entries[CLUSTER].items()}
    client.send(type_url=CLUSTER, initial_resource_versions=versions)
    client.nothing()


def test_sotw_reconnect_with_current_version_gets_nothing(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 50, "v2": 50}))
    first = Client(cache, nodes, delta=False)
    got = sotw_handshake(first, cache)
    assert first.stream.status is not None
    nodes.disconnect(first.stream.status)  # what the stream's loop does when Envoy goes away
    again = Client(cache, nodes, delta=False)
    again.send(type_url=CLUSTER, version_info=got[CLUSTER].version_info)
    again.nothing()


class GrpcClient:
    """The same scripted Envoy over a real gRPC connection to the ADS server."""

    def __init__(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()

        async def requests() -> AsyncIterator[object]:
            while (item := await self.queue.get()) is not None:
                yield item

        self.call = stub.StreamAggregatedResources(requests())
        self.node = base_pb2.Node(id="unit-envoy", cluster="test")

    def send(self, **fields: object) -> None:
        self.queue.put_nowait(discovery_pb2.DiscoveryRequest(node=self.node, **fields))

    async def recv(self) -> Any:
        return await asyncio.wait_for(self.call.read(), 5.0)


async def test_the_grpc_server_runs_the_same_stream(parts: tuple[SnapshotCache, NodeRegistry]) -> None:
    cache, nodes = parts
    cache.set(snapshot({"v1": 90, "v2": 10}))
    server = grpc.aio.server()
    ads.add_to_server(server, cache, nodes)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        client = GrpcClient(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
        for type_url, names in (
            (CLUSTER, []),
            (ENDPOINT, ["m/v1", "m/v2"]),
            (LISTENER, []),
            (ROUTE, ["switchyard_routes"]),
        ):
            client.send(type_url=type_url, resource_names=names)
            response = await client.recv()
            assert response.type_url == type_url and response.resources
            client.send(
                type_url=type_url,
                resource_names=names,
                version_info=response.version_info,
                response_nonce=response.nonce,
            )
        # The last ACK is in flight: poll for its effect (bounded), no guessed sleep.
        for _ in range(500):
            status = nodes.get("unit-envoy")
            if status is not None and status.synced_snapshot == cache.current.version:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the node never became synced over gRPC")
        client.queue.put_nowait(None)
        client.call.cancel()
    finally:
        await channel.close()
        await server.stop(None)
