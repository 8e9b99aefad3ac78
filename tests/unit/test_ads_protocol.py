"""The ADS server against a scripted client: ordering, ACK/NACK, stale clusters, delta resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

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
    """A scripted Envoy: sends requests, reads responses in order."""

    def __init__(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub, *, delta: bool) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.delta = delta

        async def requests() -> AsyncIterator[object]:
            while True:
                item = await self.queue.get()
                if item is None:
                    return
                yield item

        method = stub.DeltaAggregatedResources if delta else stub.StreamAggregatedResources
        self.call = method(requests())
        self.node = base_pb2.Node(id="unit-envoy", cluster="test")
        # Cancelling a pending read() would cancel the whole RPC, so one task reads everything.
        self.inbox: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while (response := await self.call.read()) is not grpc.aio.EOF:
            await self.inbox.put(response)

    async def send(self, **fields: object) -> None:
        message = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        await self.queue.put(message(node=self.node, **fields))

    async def recv(self) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.inbox.get(), 5.0)

    async def nothing(self) -> None:
        await asyncio.sleep(0.3)
        assert self.inbox.empty(), self.inbox.get_nowait()

    async def close(self) -> None:
        await self.queue.put(None)
        self.call.cancel()
        self.reader.cancel()


@pytest.fixture
async def server() -> AsyncIterator[tuple[SnapshotCache, NodeRegistry, ads_pb2_grpc.AggregatedDiscoveryServiceStub]]:
    cache, nodes = SnapshotCache(), NodeRegistry()
    grpc_server = grpc.aio.server()
    ads.add_to_server(grpc_server, cache, nodes)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield cache, nodes, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    finally:
        await channel.close()
        await grpc_server.stop(None)


async def sotw_handshake(client: Client, cache: SnapshotCache) -> dict[str, discovery_pb2.DiscoveryResponse]:
    """Subscribe to everything like Envoy does and ACK each response; return the last of each type."""
    got = {}
    await client.send(type_url=CLUSTER)
    got[CLUSTER] = await client.recv()
    await client.send(type_url=CLUSTER, version_info=got[CLUSTER].version_info, response_nonce=got[CLUSTER].nonce)
    names = list(cache.current.entries[ENDPOINT]) if cache.current else []
    await client.send(type_url=ENDPOINT, resource_names=names)
    got[ENDPOINT] = await client.recv()
    await client.send(
        type_url=ENDPOINT,
        resource_names=names,
        version_info=got[ENDPOINT].version_info,
        response_nonce=got[ENDPOINT].nonce,
    )
    await client.send(type_url=LISTENER)
    got[LISTENER] = await client.recv()
    await client.send(type_url=LISTENER, version_info=got[LISTENER].version_info, response_nonce=got[LISTENER].nonce)
    await client.send(type_url=ROUTE, resource_names=["switchyard_routes"])
    got[ROUTE] = await client.recv()
    await client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=got[ROUTE].version_info,
        response_nonce=got[ROUTE].nonce,
    )
    return got


async def test_sotw_serves_all_types_and_marks_node_synced(server) -> None:  # type: ignore[no-untyped-def]
    cache, nodes, stub = server
    cache.set(snapshot({"v1": 90, "v2": 10}))
    client = Client(stub, delta=False)
    got = await sotw_handshake(client, cache)
    assert len(got[CLUSTER].resources) == 2
    assert len(got[ENDPOINT].resources) == 2
    await client.nothing()
    status = nodes.get("unit-envoy")
    assert status is not None
    assert status.synced_snapshot == cache.current.version  # type: ignore[union-attr]
    await client.close()


async def test_sotw_change_sends_only_what_changed_and_in_order(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    cache.set(snapshot({"v1": 90, "v2": 10}))
    client = Client(stub, delta=False)
    await sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 50, "v2": 50}))  # weights only: routes change, nothing else
    response = await client.recv()
    assert response.type_url == ROUTE
    await client.nothing()
    await client.close()


async def test_new_cluster_goes_out_before_routes_that_use_it(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    cache.set(snapshot({"v1": 100}))
    client = Client(stub, delta=False)
    await sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 90, "v2": 10}))
    cds = await client.recv()
    assert cds.type_url == CLUSTER
    await client.nothing()  # routes wait until the clusters are ACKed
    await client.send(type_url=CLUSTER, version_info=cds.version_info, response_nonce=cds.nonce)
    await client.send(type_url=ENDPOINT, resource_names=["m/v1", "m/v2"])
    eds = await client.recv()
    assert eds.type_url == ENDPOINT
    await client.nothing()  # and until their endpoints are ACKed
    await client.send(
        type_url=ENDPOINT,
        resource_names=["m/v1", "m/v2"],
        version_info=eds.version_info,
        response_nonce=eds.nonce,
    )
    rds = await client.recv()
    assert rds.type_url == ROUTE
    await client.close()


async def test_stale_cluster_is_removed_only_after_routes_move_on(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    cache.set(snapshot({"v1": 50, "v2": 50}))
    client = Client(stub, delta=False)
    await sotw_handshake(client, cache)
    cache.set(snapshot({"v1": 100}))  # v2 disappears
    rds = await client.recv()
    assert rds.type_url == ROUTE  # routes first: the CDS Envoy has still holds v2, which they no longer use
    await client.nothing()
    await client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=rds.version_info,
        response_nonce=rds.nonce,
    )
    cds = await client.recv()
    assert cds.type_url == CLUSTER
    assert len(cds.resources) == 1  # now v2 goes
    await client.close()


async def test_nack_is_recorded_never_resent_and_cache_falls_back(server) -> None:  # type: ignore[no-untyped-def]
    cache, nodes, stub = server
    good = snapshot({"v1": 90, "v2": 10})
    cache.set(good)
    client = Client(stub, delta=False)
    got = await sotw_handshake(client, cache)
    bad = snapshot({"v1": 20, "v2": 80})
    cache.set(bad)
    rds = await client.recv()
    await client.send(
        type_url=ROUTE,
        resource_names=["switchyard_routes"],
        version_info=got[ROUTE].version_info,  # Envoy keeps its last good version
        response_nonce=rds.nonce,
        error_detail=status_pb2.Status(code=3, message="route: invalid regex"),
    )
    await asyncio.sleep(0.2)
    status = nodes.get("unit-envoy")
    assert status is not None and status.last_nack is not None
    assert status.last_nack.message == "route: invalid regex"
    assert cache.current is good  # the served snapshot rolled back to the last good one
    assert cache.is_rejected(bad.version)
    assert not cache.set(bad)  # and it is never published again
    await client.nothing()  # the node already runs the good routes: nothing to send
    await client.close()


async def test_delta_sends_changes_and_removals(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    cache.set(snapshot({"v1": 50, "v2": 50}))
    client = Client(stub, delta=True)
    await client.send(type_url=CLUSTER)
    cds = await client.recv()
    assert sorted(r.name for r in cds.resources) == ["m/v1", "m/v2"]
    await client.send(type_url=CLUSTER, response_nonce=cds.nonce)
    await client.send(type_url=ENDPOINT, resource_names_subscribe=["m/v1", "m/v2"])
    eds = await client.recv()
    await client.send(type_url=ENDPOINT, response_nonce=eds.nonce)
    await client.send(type_url=LISTENER)
    lds = await client.recv()
    await client.send(type_url=LISTENER, response_nonce=lds.nonce)
    await client.send(type_url=ROUTE, resource_names_subscribe=["switchyard_routes"])
    rds = await client.recv()
    await client.send(type_url=ROUTE, response_nonce=rds.nonce)
    cache.set(snapshot({"v1": 100}))
    rds = await client.recv()
    assert rds.type_url == ROUTE
    await client.send(type_url=ROUTE, response_nonce=rds.nonce)
    cds = await client.recv()
    assert cds.type_url == CLUSTER
    assert list(cds.removed_resources) == ["m/v2"]
    assert not cds.resources
    await client.close()


async def test_delta_reconnect_with_current_versions_gets_nothing(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    current = snapshot({"v1": 50, "v2": 50})
    cache.set(current)
    client = Client(stub, delta=True)
    versions = {name: entry.version for name, entry in current.entries[CLUSTER].items()}
    await client.send(type_url=CLUSTER, initial_resource_versions=versions)
    await client.nothing()
    await client.close()


async def test_sotw_reconnect_with_current_version_gets_nothing(server) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = server
    cache.set(snapshot({"v1": 50, "v2": 50}))
    first = Client(stub, delta=False)
    got = await sotw_handshake(first, cache)
    await first.close()
    again = Client(stub, delta=False)
    await again.send(type_url=CLUSTER, version_info=got[CLUSTER].version_info)
    await again.nothing()
    await again.close()
