"""The emulator harness behaves like an API server where our code depends on it, seen through lightkube."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Service
from lightkube.types import PatchType

from tests.support.kube_emulator import (
    LEASES,
    MODELROUTES,
    KubeEmulator,
    ModelRoute,
    api_error,
    kube_emulator,
    merge_patch,
    status_of,
)

WATCH_S = 5.0  # generous bound on any wait for watch events; tests never wait this long when passing


@pytest.fixture
async def kube() -> AsyncIterator[KubeEmulator]:
    async with kube_emulator(bookmark_interval_s=0.1) as k:
        yield k


@pytest.fixture
def client(kube: KubeEmulator) -> AsyncClient:
    return kube.client("ml")


def route(name: str, **spec: Any) -> Any:
    return ModelRoute(metadata=ObjectMeta(name=name), spec=spec or {"model": "m"})


def raw(obj: Any) -> dict[str, Any]:
    return dict(obj.to_dict())


async def take(events: Any, n: int) -> list[tuple[str, Any]]:
    """The first n events of a lightkube watch, closing the stream after them."""
    out: list[tuple[str, Any]] = []
    async with contextlib.aclosing(events) as stream, asyncio.timeout(WATCH_S):
        async for kind, obj in stream:
            out.append((kind, obj))
            if len(out) == n:
                break
    return out


async def quiet(events: Any, seconds: float) -> list[tuple[str, Any]]:
    """Every event a watch delivers within ``seconds`` (to check that nothing else comes)."""
    out: list[tuple[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with contextlib.aclosing(events) as stream, asyncio.timeout(seconds):
            async for kind, obj in stream:
                out.append((kind, obj))
    return out


def watch_raw(client: AsyncClient, res: Any, **params: Any) -> Any:
    """A watch with parameters lightkube's watch() does not take (allowWatchBookmarks)."""
    inner = client._client
    request = inner.prepare_request("list", res=res, namespace="ml", watch=True, params=params)
    return inner.watch(request)


# --- create / get / list ---------------------------------------------------------------


async def test_create_sets_server_owned_metadata(client: AsyncClient) -> None:
    created = await client.create(
        ModelRoute(metadata=ObjectMeta(name="a"), spec={"model": "m"}, status={"phase": "Ready"})
    )
    meta = created.metadata
    assert meta is not None
    assert meta.namespace == "ml"
    assert meta.uid and meta.creationTimestamp is not None
    assert meta.resourceVersion == "1"
    assert meta.generation == 1
    assert status_of(created) == {}, "a create cannot set status when the kind has a status subresource"
    fetched = await client.get(ModelRoute, "a")
    assert raw(fetched) == raw(created)


async def test_resource_versions_increase_across_kinds(client: AsyncClient) -> None:
    first = await client.create(route("a"))
    lease = await client.create(Lease(metadata=ObjectMeta(name="l"), spec=LeaseSpec(holderIdentity="x")))
    second = await client.create(route("b"))
    versions = [int(o.metadata.resourceVersion) for o in (first, lease, second)]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_create_existing_is_already_exists(client: AsyncClient) -> None:
    await client.create(route("a"))
    with pytest.raises(ApiError) as caught:
        await client.create(route("a"))
    assert (caught.value.status.code, caught.value.status.reason) == (409, "AlreadyExists")


async def test_get_missing_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(ApiError) as caught:
        await client.get(ModelRoute, "nope")
    assert (caught.value.status.code, caught.value.status.reason) == (404, "NotFound")


async def test_generate_name(client: AsyncClient) -> None:
    created = await client.create(ModelRoute(metadata=ObjectMeta(generateName="r-"), spec={}))
    assert created.metadata.name.startswith("r-") and len(created.metadata.name) > 2


async def test_list_has_collection_version_namespace_and_label_filters(kube: KubeEmulator, client: AsyncClient) -> None:
    other = kube.client("other")
    await client.create(ModelRoute(metadata=ObjectMeta(name="a", labels={"tier": "gold"}), spec={}))
    await client.create(ModelRoute(metadata=ObjectMeta(name="b", labels={"tier": "tin"}), spec={}))
    last = await other.create(route("c"))

    listed = client.list(ModelRoute)
    assert sorted([o.metadata.name async for o in listed]) == ["a", "b"]
    assert listed.resourceVersion == last.metadata.resourceVersion

    everywhere = client.list(ModelRoute, namespace="*")
    assert sorted([o.metadata.name async for o in everywhere]) == ["a", "b", "c"]
    assert [o.metadata.name async for o in client.list(ModelRoute, labels={"tier": "gold"})] == ["a"]

    empty = kube.client("empty").list(ModelRoute)
    assert [o async for o in empty] == []
    assert empty.resourceVersion == last.metadata.resourceVersion


# --- patch / replace / optimistic concurrency -----------------------------------------


async def test_merge_patch_is_rfc7386(client: AsyncClient) -> None:
    await client.create(route("a", model="m", weights=[1, 2], extra={"k": "v", "j": 1}))
    patched = await client.patch(
        ModelRoute, "a", {"spec": {"weights": [3], "extra": {"k": None}}}, patch_type=PatchType.MERGE
    )
    assert patched.spec == {"model": "m", "weights": [3], "extra": {"j": 1}}


async def test_json_patch(client: AsyncClient) -> None:
    await client.create(route("a", model="m"))
    patched = await client.patch(
        ModelRoute, "a", [{"op": "replace", "path": "/spec/model", "value": "n"}], patch_type=PatchType.JSON
    )
    assert patched.spec == {"model": "n"}


async def test_generation_follows_spec_only(client: AsyncClient) -> None:
    created = await client.create(route("a", model="m"))
    assert created.metadata.generation == 1
    spec = await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)
    assert spec.metadata.generation == 2
    labels = await client.patch(ModelRoute, "a", {"metadata": {"labels": {"x": "y"}}}, patch_type=PatchType.MERGE)
    assert labels.metadata.generation == 2
    assert int(labels.metadata.resourceVersion) > int(spec.metadata.resourceVersion)
    status = await client.patch(ModelRoute.Status, "a", {"status": {"phase": "Ready"}}, patch_type=PatchType.MERGE)
    assert status.metadata.generation == 2
    assert int(status.metadata.resourceVersion) > int(labels.metadata.resourceVersion)


async def test_noop_patch_keeps_the_version(client: AsyncClient) -> None:
    created = await client.create(route("a", model="m"))
    same = await client.patch(ModelRoute, "a", {"spec": {"model": "m"}}, patch_type=PatchType.MERGE)
    assert same.metadata.resourceVersion == created.metadata.resourceVersion


async def test_status_subresource_is_separate(client: AsyncClient) -> None:
    await client.create(route("a", model="m"))
    status = await client.patch(
        ModelRoute.Status,
        "a",
        {"spec": {"model": "IGNORED"}, "status": {"phase": "Ready"}},
        patch_type=PatchType.MERGE,
    )
    assert status.spec == {"model": "m"}
    assert status_of(status) == {"phase": "Ready"}
    main = await client.patch(
        ModelRoute, "a", {"spec": {"model": "n"}, "status": {"phase": "IGNORED"}}, patch_type=PatchType.MERGE
    )
    assert main.spec == {"model": "n"}
    assert status_of(main) == {"phase": "Ready"}
    assert status_of(await client.get(ModelRoute.Status, "a")) == {"phase": "Ready"}


async def test_status_of_a_kind_without_the_subresource_is_not_found(kube: KubeEmulator, client: AsyncClient) -> None:
    await client.create(Lease(metadata=ObjectMeta(name="l"), spec=LeaseSpec(holderIdentity="x")))
    # lightkube has no Lease.Status; the raw request shows what the server answers.
    response = await kube.emulator.patch(
        "/apis/coordination.k8s.io/v1/namespaces/ml/leases/l/status",
        json={"status": {}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response.status == 404


async def test_stale_resource_version_is_a_conflict(client: AsyncClient) -> None:
    created = await client.create(route("a", model="m"))
    stale = created.metadata.resourceVersion
    await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError) as caught:
        await client.patch(
            ModelRoute,
            "a",
            {"metadata": {"resourceVersion": stale}, "spec": {"model": "o"}},
            patch_type=PatchType.MERGE,
        )
    assert (caught.value.status.code, caught.value.status.reason) == (409, "Conflict")
    assert (await client.get(ModelRoute, "a")).spec == {"model": "n"}, "a refused write changes nothing"


async def test_current_resource_version_is_accepted(client: AsyncClient) -> None:
    created = await client.create(route("a", model="m"))
    patched = await client.patch(
        ModelRoute,
        "a",
        {"metadata": {"resourceVersion": created.metadata.resourceVersion}, "spec": {"model": "n"}},
        patch_type=PatchType.MERGE,
    )
    assert patched.spec == {"model": "n"}


async def test_status_patch_with_stale_version_is_a_conflict(client: AsyncClient) -> None:
    created = await client.create(route("a"))
    await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError) as caught:
        await client.patch(
            ModelRoute.Status,
            "a",
            {"metadata": {"resourceVersion": created.metadata.resourceVersion}, "status": {"phase": "x"}},
            patch_type=PatchType.MERGE,
        )
    assert caught.value.status.code == 409


async def test_replace_is_optimistic(client: AsyncClient) -> None:
    lease = await client.create(Lease(metadata=ObjectMeta(name="l"), spec=LeaseSpec(holderIdentity="a")))
    assert lease.spec is not None
    lease.spec.holderIdentity = "b"
    replaced = await client.replace(lease)
    assert replaced.spec is not None and replaced.spec.holderIdentity == "b"
    assert int(replaced.metadata.resourceVersion) > int(lease.metadata.resourceVersion)
    lease.spec.holderIdentity = "c"  # still carries the version it was read at
    with pytest.raises(ApiError) as caught:
        await client.replace(lease)
    assert (caught.value.status.code, caught.value.status.reason) == (409, "Conflict")
    lease.metadata.resourceVersion = None
    with pytest.raises(ApiError) as caught:
        await client.replace(lease)
    assert caught.value.status.code == 422, "Leases refuse unconditional updates"


async def test_replace_missing_is_not_found(client: AsyncClient) -> None:
    with pytest.raises(ApiError) as caught:
        await client.replace(Lease(metadata=ObjectMeta(name="l", resourceVersion="1"), spec=LeaseSpec()))
    assert caught.value.status.code == 404


async def test_services_allow_unconditional_replace(client: AsyncClient) -> None:
    svc = await client.create(Service(metadata=ObjectMeta(name="s")))
    svc.metadata.resourceVersion = None
    svc.metadata.labels = {"a": "b"}
    replaced = await client.replace(svc)
    assert replaced.metadata.labels == {"a": "b"}


async def test_delete_and_finalizers(client: AsyncClient) -> None:
    await client.create(ModelRoute(metadata=ObjectMeta(name="a", finalizers=["switchyard.dev/x"]), spec={}))
    await client.delete(ModelRoute, "a")
    pending = await client.get(ModelRoute, "a")
    assert pending.metadata.deletionTimestamp is not None
    await client.patch(ModelRoute, "a", {"metadata": {"finalizers": None}}, patch_type=PatchType.MERGE)
    with pytest.raises(ApiError) as caught:
        await client.get(ModelRoute, "a")
    assert caught.value.status.code == 404
    await client.create(route("a"))  # the name is free again


# --- watch -----------------------------------------------------------------------------


async def test_watch_without_version_lists_then_follows(client: AsyncClient) -> None:
    await client.create(route("a"))
    events = client.watch(ModelRoute, namespace="ml")
    got: list[tuple[str, str]] = []
    async with contextlib.aclosing(events) as stream, asyncio.timeout(WATCH_S):
        async for kind, obj in stream:
            got.append((kind, obj.metadata.name))
            if len(got) == 1:
                await client.create(route("b"))
            if len(got) == 2:
                break
    assert got == [("ADDED", "a"), ("ADDED", "b")]


async def test_watch_from_version_sends_only_later_events(client: AsyncClient) -> None:
    await client.create(route("a"))
    mark = (await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)).metadata
    await client.create(route("b"))
    await client.patch(ModelRoute.Status, "a", {"status": {"phase": "Ready"}}, patch_type=PatchType.MERGE)
    await client.delete(ModelRoute, "b")
    got = await take(client.watch(ModelRoute, resource_version=mark.resourceVersion), 3)
    assert [(kind, obj.metadata.name) for kind, obj in got] == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    versions = [int(obj.metadata.resourceVersion) for _, obj in got]
    assert versions == sorted(versions) and versions[0] > int(mark.resourceVersion)
    # Nothing else is pending: no replay of objects as ADDED.
    assert await quiet(client.watch(ModelRoute, resource_version=str(versions[-1])), 0.3) == []


async def test_watch_filters_by_namespace_and_kind(kube: KubeEmulator, client: AsyncClient) -> None:
    start = (await client.create(route("first"))).metadata.resourceVersion
    await kube.client("other").create(route("elsewhere"))
    await client.create(Lease(metadata=ObjectMeta(name="l"), spec=LeaseSpec()))
    await client.create(route("here"))
    got = await take(client.watch(ModelRoute, namespace="ml", resource_version=start), 1)
    assert [obj.metadata.name for _, obj in got] == ["here"]


async def test_watch_bookmarks(client: AsyncClient) -> None:
    created = await client.create(route("a"))
    got = await take(
        watch_raw(client, ModelRoute, resourceVersion=created.metadata.resourceVersion, allowWatchBookmarks="true"), 1
    )
    assert got[0][0] == "BOOKMARK"
    assert got[0][1].metadata.resourceVersion == created.metadata.resourceVersion


async def test_no_bookmarks_unless_asked(client: AsyncClient) -> None:
    created = await client.create(route("a"))
    assert await quiet(client.watch(ModelRoute, resource_version=created.metadata.resourceVersion), 0.3) == []


async def test_watch_timeout_ends_the_stream(kube: KubeEmulator, client: AsyncClient) -> None:
    created = await client.create(route("a"))
    # lightkube reconnects when the server ends a watch; count the requests to see it end.
    events = watch_raw(client, ModelRoute, resourceVersion=created.metadata.resourceVersion, timeoutSeconds="1")
    async with contextlib.aclosing(events) as stream, asyncio.timeout(WATCH_S):
        reconnected = asyncio.create_task(anext(stream))
        await asyncio.sleep(1.5)
        await client.create(route("b"))
        kind, obj = await reconnected
    assert (kind, obj.metadata.name) == ("ADDED", "b")
    watches = [r for r in kube.emulator if r.action == kmock.action.WATCH]
    assert len(watches) >= 2, "the server ended the first watch after timeoutSeconds"


async def test_compaction_expires_old_versions(kube: KubeEmulator, client: AsyncClient) -> None:
    old = (await client.create(route("a"))).metadata.resourceVersion
    current = (await client.create(route("b"))).metadata.resourceVersion
    kube.emulator.compact()
    with pytest.raises(ApiError) as caught:
        await take(client.watch(ModelRoute, resource_version=old), 1)
    assert (caught.value.status.code, caught.value.status.reason) == (410, "Expired")
    # The current version is still valid, and a fresh list gives one.
    assert await quiet(client.watch(ModelRoute, resource_version=current), 0.2) == []
    listed = client.list(ModelRoute)
    assert len([o async for o in listed]) == 2
    assert listed.resourceVersion == current


async def test_running_watch_survives_compaction(kube: KubeEmulator, client: AsyncClient) -> None:
    start = (await client.create(route("a"))).metadata.resourceVersion
    events = client.watch(ModelRoute, resource_version=start)
    async with contextlib.aclosing(events) as stream, asyncio.timeout(WATCH_S):
        pending = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.1)
        await client.create(route("b"))
        kube.emulator.compact()
        kind, obj = await pending
    assert (kind, obj.metadata.name) == ("ADDED", "b")


# --- reactions: failure injection --------------------------------------------------------


async def test_injected_errors_reach_the_client_as_api_errors(kube: KubeEmulator, client: AsyncClient) -> None:
    await client.create(route("a"))
    k = kube.emulator
    k["patch", k.resource(MODELROUTES)][:2] << api_error(500, "InternalError", "etcd is down")
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)
        assert caught.value.status.code == 500
    assert (await client.get(ModelRoute, "a")).spec == {"model": "m"}, "a failed write changes nothing"
    patched = await client.patch(ModelRoute, "a", {"spec": {"model": "n"}}, patch_type=PatchType.MERGE)
    assert patched.spec == {"model": "n"}


async def test_injected_watch_error(kube: KubeEmulator, client: AsyncClient) -> None:
    k = kube.emulator
    k["watch", k.resource(LEASES), k.params(resourceVersion="7")] << (
        {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired"}},
    )
    with pytest.raises(ApiError) as caught:
        await take(client.watch(Lease, resource_version="7"), 1)
    assert caught.value.status.code == 410


# --- merge patch: RFC 7386, Appendix A ------------------------------------------------

RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC7386)
def test_merge_patch_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected
