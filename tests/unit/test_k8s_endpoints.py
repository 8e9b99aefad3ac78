"""Which EndpointSlice endpoints a Service-backed version gets: ready, not terminating, on the named port."""

from __future__ import annotations

import asyncio
import contextlib

from lightkube.models.discovery_v1 import Endpoint, EndpointConditions, EndpointPort
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.discovery_v1 import EndpointSlice

from control_plane import ir
from control_plane.k8s.endpoints import SERVICE_LABEL, EndpointSliceCache, ready_endpoints
from control_plane.k8s.watch import Event, Informer
from tests.support.kube_emulator import kube_emulator


def slice_of(service: str, name: str, *endpoints: tuple[str, EndpointConditions | None]) -> EndpointSlice:
    return EndpointSlice(
        metadata=ObjectMeta(name=name, labels={SERVICE_LABEL: service}),
        addressType="IPv4",
        endpoints=[Endpoint(addresses=[address], conditions=conditions) for address, conditions in endpoints],
        ports=[EndpointPort(name="http", port=8000), EndpointPort(name="grpc", port=8001)],
    )


def hosts(endpoints: tuple[ir.Endpoint, ...]) -> list[str]:
    return [e.address for e in endpoints]


def test_only_ready_endpoints_that_are_not_terminating_count() -> None:
    slices = [
        slice_of(
            "v3",
            "v3-a",
            ("10.0.0.1", EndpointConditions(ready=True)),
            ("10.0.0.2", EndpointConditions(ready=False)),
            ("10.0.0.3", EndpointConditions(ready=None)),  # unknown reads as ready
            ("10.0.0.4", EndpointConditions(ready=False, serving=True, terminating=True)),
            ("10.0.0.5", None),
        )
    ]
    assert hosts(ready_endpoints(slices, "http")) == ["10.0.0.1:8000", "10.0.0.3:8000", "10.0.0.5:8000"]


def test_ports_match_by_name_or_by_target_number() -> None:
    slices = [slice_of("v3", "v3-a", ("10.0.0.1", EndpointConditions(ready=True)))]
    assert hosts(ready_endpoints(slices, "grpc")) == ["10.0.0.1:8001"]
    assert hosts(ready_endpoints(slices, 8000)) == ["10.0.0.1:8000"]
    assert ready_endpoints(slices, "metrics") == ()
    assert ready_endpoints(slices, 80) == ()  # a Service port is not a target port
    assert ready_endpoints(slices, None) == ()


def test_cache_groups_slices_by_service_and_follows_events() -> None:
    changes: list[int] = []
    cache = EndpointSliceCache(lambda: changes.append(1))
    ref = ir.ServiceRef("v3", "http", "grpc")

    async def scenario() -> None:
        await cache.replace_all(
            {
                "v3-a": slice_of("v3", "v3-a", ("10.0.0.1", EndpointConditions(ready=True))),
                "v3-b": slice_of("v3", "v3-b", ("10.0.0.2", EndpointConditions(ready=True))),
                "v4-a": slice_of("v4", "v4-a", ("10.0.0.9", EndpointConditions(ready=True))),
            }
        )
        assert [hosts(e) for e in cache.ready(ref)] == [
            ["10.0.0.1:8000", "10.0.0.2:8000"],
            ["10.0.0.1:8001", "10.0.0.2:8001"],
        ]
        not_ready = slice_of("v3", "v3-b", ("10.0.0.2", EndpointConditions(ready=False)))
        await cache.apply(Event("MODIFIED", "v3-b", not_ready))
        assert hosts(cache.ready(ref)[0]) == ["10.0.0.1:8000"]
        await cache.apply(Event("DELETED", "v3-a", None))
        assert cache.ready(ref) == ((), ())

    asyncio.run(scenario())
    assert len(changes) == 3


async def test_the_informer_follows_bookmarks_of_a_kind_with_required_fields() -> None:
    """A BOOKMARK carries only metadata; an EndpointSlice without addressType must not break the watch."""
    async with kube_emulator(bookmark_interval_s=0.05) as kube:
        client = kube.client("ml")
        await client.create(slice_of("v3", "v3-a", ("10.0.0.1", EndpointConditions(ready=True))), namespace="ml")
        changes: list[int] = []
        cache = EndpointSliceCache(lambda: changes.append(1))
        informer = Informer(client, EndpointSlice, "ml", cache)
        task = asyncio.create_task(informer.run())
        try:
            await asyncio.wait_for(informer.synced.wait(), 5)
            listed_at = informer.resource_version
            other = kube.client("elsewhere")  # moves the cluster's version on, with no event here
            await other.create(slice_of("x", "x-a"), namespace="elsewhere")
            for _ in range(100):
                if informer.resource_version != listed_at:
                    break
                await asyncio.sleep(0.05)
            assert informer.resource_version == kube.emulator.resource_version  # from a bookmark
            assert informer.lists == 1 and len(changes) == 1  # no failure, no relist, no change
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
