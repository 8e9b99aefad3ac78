"""The Kubernetes mode without Envoy: resources in, policies and status out, writes conditional.

The wiring is ``plane.build``'s (the same parts ``switchyard serve --kubernetes`` runs); the
API server is the emulator, on its own thread because writes use a synchronous client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import lightkube
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.types import PatchType

from control_plane.k8s.kinds import Gateway, ModelRoute
from control_plane.k8s.mode import KubernetesOptions
from control_plane.k8s.source import KubernetesSource, merge_patch_from, render
from control_plane.operations.changes import Conflict, Stale
from control_plane.plane import ControlPlane, ServeOptions, build
from control_plane.policy.errors import PolicyErrors
from control_plane.policy.loader import load_texts
from tests.support.kube_emulator import (
    MODELROUTES,
    KubeEmulator,
    api_error,
    kube_emulator_in_thread,
    merge_patch,
    status_of,
)
from tests.support.policy_strategies import model_routes

NS = "ml"
WAIT_S = 10.0  # bound on every wait; passing tests take a fraction of it


def spec(traffic: dict[str, int], host: str = "sentiment.example") -> dict[str, Any]:
    return {
        "hosts": [host],
        "versions": {v: {"endpoints": [f"127.0.0.1:{8000 + i}"]} for i, v in enumerate(("v3", "v4"))},
        "traffic": traffic,
    }


def route(name: str, body: dict[str, Any]) -> Any:
    return ModelRoute(metadata=ObjectMeta(name=name, namespace=NS), spec=body)


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulator]:
    with kube_emulator_in_thread(bookmark_interval_s=60.0) as k:  # no bookmarks: 410s can be provoked
        yield k


@pytest.fixture
def api(kube: KubeEmulator) -> Iterator[lightkube.Client]:
    client = lightkube.Client(config=kube.config(NS))
    yield client
    for kind in (ModelRoute, Gateway):
        for obj in client.list(kind, namespace=NS):
            client.delete(kind, obj.metadata.name, namespace=NS)
    client.close()


@contextlib.asynccontextmanager
async def running(
    kube: KubeEmulator, tmp_path: Path, identity: str = "a", *, watch_timeout_s: int = 300
) -> AsyncIterator[ControlPlane]:
    """A control plane's Kubernetes loops (no servers), reloading on every resource change."""
    options = KubernetesOptions(
        NS, identity, config=kube.config(NS), lease_duration_s=1.0, renew_deadline_s=0.6, retry_period_s=0.1
    )
    plane = build(ServeOptions(policies=[], kubernetes=options, state_dir=tmp_path / identity))
    assert plane.kubernetes is not None
    k8s = plane.kubernetes

    async def reload() -> None:
        await plane.changes.reload_in_thread(who="kubernetes", action="resource-edit")

    k8s.source.on_change = reload
    for informer in k8s.informers:
        informer.watch_timeout_s = watch_timeout_s
    tasks = [asyncio.create_task(loop) for loop in k8s.loops().values()]
    try:
        await asyncio.wait_for(k8s.wait_synced(), WAIT_S)
        plane.changes.reload(action="startup")
        yield plane
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await k8s.close()


async def until(check: Callable[[], Any], what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def traffic_of(plane: ControlPlane, name: str) -> dict[str, int] | None:
    intent = plane.controller.intent
    model = next((m for m in intent.models if m.name == name), None) if intent else None
    return model.split.as_dict() if model else None


def condition(obj: Any, kind: str) -> dict[str, Any]:
    return next(c for c in status_of(obj).get("conditions", ()) if c["type"] == kind)


async def test_a_bad_resource_is_rejected_alone_with_its_field_path_in_status(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    api.create(route("a", spec({"v3": 90, "v4": 10}, "a.example")))
    api.create(route("b", spec({"v3": 50, "v4": 50}, "b.example")))
    async with running(kube, tmp_path) as plane:
        assert traffic_of(plane, "a") == {"v3": 90, "v4": 10}
        served = plane.cache.current
        api.patch(
            ModelRoute, "b", {"spec": {"traffic": {"v3": 70, "v4": 20}}}, namespace=NS, patch_type=PatchType.MERGE
        )

        def rejected() -> Any:
            obj = api.get(ModelRoute, "b", namespace=NS)
            return obj if status_of(obj) and condition(obj, "Accepted")["status"] == "False" else None

        obj = await until(rejected, "b's status to say Accepted=False")
        accepted = condition(obj, "Accepted")
        assert accepted["reason"] == "Invalid"
        assert accepted["message"].startswith("spec.traffic: ")
        assert accepted["observedGeneration"] == obj.metadata.generation == 2
        # Nothing changed in what is served; b keeps its last accepted split, a is untouched.
        assert plane.cache.current is served
        assert traffic_of(plane, "b") == {"v3": 50, "v4": 50}
        assert condition(api.get(ModelRoute, "a", namespace=NS), "Accepted")["status"] == "True"
        # Programmed: b's served (older) spec is in the snapshot, but no Envoy runs it.
        assert condition(obj, "Programmed")["reason"] == "Pending"
        assert status_of(obj)["effectiveTraffic"] == {"v3": 50, "v4": 50}

        # A change through the admin path is refused while the newest spec is rejected...
        with pytest.raises(Conflict, match=r"generation 2\) was rejected: spec\.traffic"):
            plane.changes.shift("b", {"v3": 100, "v4": 0}, who="test", if_match=None)
        # ...and fixing it is picked up.
        api.patch(
            ModelRoute, "b", {"spec": {"traffic": {"v3": 80, "v4": 20}}}, namespace=NS, patch_type=PatchType.MERGE
        )
        await until(lambda: traffic_of(plane, "b") == {"v3": 80, "v4": 20}, "the fixed spec to be served")
        await until(
            lambda: condition(api.get(ModelRoute, "b", namespace=NS), "Accepted")["status"] == "True",
            "Accepted=True again",
        )


async def test_a_conflict_between_resources_holds_back_the_newcomer_only(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    api.create(route("a", spec({"v3": 100, "v4": 0}, "same.example")))
    async with running(kube, tmp_path) as plane:
        api.create(route("b", spec({"v3": 100, "v4": 0}, "same.example")))
        source = plane.controller.source
        assert isinstance(source, KubernetesSource)
        tracked = await until(
            lambda: next((t for t in source.resources() if t.name == "b" and t.errors), None), "b to be held back"
        )
        assert "overlaps model 'a'" in tracked.problems[0]
        assert [m.name for m in plane.controller.intent.models] == ["a"]  # type: ignore[union-attr]
        api.delete(ModelRoute, "a", namespace=NS)  # the conflict is gone: b is retried and accepted
        await until(
            lambda: [m.name for m in plane.controller.intent.models] == ["b"],  # type: ignore[union-attr]
            "b to replace a",
        )


async def test_writes_go_to_the_resource_and_a_concurrent_edit_makes_them_stale(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    api.create(route("a", spec({"v3": 90, "v4": 10})))
    async with running(kube, tmp_path) as plane:
        await until(lambda: plane.kubernetes and plane.kubernetes.election.is_leader, "leadership")
        change = await asyncio.to_thread(plane.changes.shift, "a", {"v3": 50, "v4": 50}, who="test", if_match=None)
        assert change.changed and traffic_of(plane, "a") == {"v3": 50, "v4": 50}
        assert api.get(ModelRoute, "a", namespace=NS)["spec"]["traffic"] == {"v3": 50, "v4": 50}
        source = plane.controller.source
        assert isinstance(source, KubernetesSource)
        # kubectl edits the resource; this replica has not seen it yet (its watch is held back).
        read_at = next(t for t in source.resources() if t.name == "a").resource_version
        edited = api.get(ModelRoute, "a", namespace=NS)
        edited["spec"]["hosts"] = ["sentiment.example", "edited.example"]
        api.replace(edited)
        tracked = next(t for t in source.resources() if t.name == "a")
        assert tracked.resource_version == read_at  # no await since the edit: the watch cannot have run
        with pytest.raises(Stale, match="changed since it was read"):
            plane.changes.shift("a", {"v3": 10, "v4": 90}, who="test", if_match=None)
        # The edit survives: nothing was overwritten.
        assert api.get(ModelRoute, "a", namespace=NS)["spec"]["hosts"] == ["sentiment.example", "edited.example"]
        await until(lambda: "edited.example" in (source.read().get("modelroutes/ml/a") or ""), "the edit to arrive")
        # A change of status alone (the status writer's) since the read is not a conflict: retried.
        read_at = next(t for t in source.resources() if t.name == "a").resource_version
        api.patch(ModelRoute.Status, "a", {"status": {"note": "x"}}, namespace=NS, patch_type=PatchType.MERGE)
        change = plane.changes.shift("a", {"v3": 10, "v4": 90}, who="test", if_match=None)
        assert change.changed and next(t for t in source.resources() if t.name == "a").resource_version != read_at
        assert api.get(ModelRoute, "a", namespace=NS)["spec"]["traffic"] == {"v3": 10, "v4": 90}


async def test_only_the_leader_writes_and_the_others_name_it(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    api.create(route("a", spec({"v3": 90, "v4": 10})))
    async with running(kube, tmp_path, "first") as first:
        assert first.kubernetes is not None
        await until(lambda: first.kubernetes and first.kubernetes.election.is_leader, "the first to lead")
        async with running(kube, tmp_path, "second") as second:
            await until(lambda: second.kubernetes and second.kubernetes.election.leader == "first", "a known leader")
            with pytest.raises(Conflict, match="not the leader: first holds Lease ml/switchyard-leader"):
                await asyncio.to_thread(second.changes.shift, "a", {"v3": 0, "v4": 100}, who="t", if_match=None)
            # Both serve the same content: the same snapshot version.
            assert second.cache.current is not None and first.cache.current is not None
            assert second.cache.current.version == first.cache.current.version


async def test_a_watch_that_expired_relists_and_pushes_nothing(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    api.create(route("a", spec({"v3": 90, "v4": 10})))
    async with running(kube, tmp_path, watch_timeout_s=1) as plane:  # each watch resumes after 1 s
        k8s = plane.kubernetes
        assert k8s is not None
        informer = k8s.informers[0]
        before, reloads = plane.cache.current, len(plane.controller.reloads)
        # A write elsewhere moves the cluster's version on; compaction expires the informer's.
        other = lightkube.Client(config=kube.config("elsewhere"))
        other.create(ModelRoute(metadata=ObjectMeta(name="x", namespace="elsewhere"), spec={}))
        kube.emulator.compact()
        lists = informer.lists
        await until(lambda: informer.lists > lists, "a relist after 410 Gone")
        assert plane.cache.current is before
        assert len(plane.controller.reloads) == reloads  # nothing changed, so no reload at all
        other.delete(ModelRoute, "x", namespace="elsewhere")
        other.close()


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), _containers, max_leaves=12)
# What a merge patch can produce: objects without null members (null means "delete").
no_nulls = st.recursive(st.booleans() | st.integers() | st.text(max_size=5), _containers, max_leaves=12)


@given(
    old=st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    new=st.dictionaries(st.text(max_size=3), no_nulls, max_size=4),
)
def test_merge_patch_from_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert merge_patch(old, merge_patch_from(old, new)) == new
    assert merge_patch_from(new, new) == {}  # nothing to send when nothing differs


@given(st.data())
def test_a_resource_renders_as_the_policy_document_it_stands_for(data: st.DataObject) -> None:
    document = data.draw(model_routes())
    meta = document["metadata"]
    obj = {"metadata": {"name": meta["name"], "namespace": NS, "labels": meta.get("labels")}, "spec": document["spec"]}
    origin = f"modelroutes/{NS}/{document['metadata']['name']}"
    try:
        direct = load_texts({"direct.yaml": yaml.safe_dump(document)}).models[0].value
    except PolicyErrors:
        return  # the strategy also draws invalid documents; a resource with one is rejected alike
    rendered = load_texts({origin: render("ModelRoute", obj)}).models[0].value
    assert rendered == direct


async def test_an_api_server_outage_keeps_the_last_state_and_recovers(
    kube: KubeEmulator, api: lightkube.Client, tmp_path: Path
) -> None:
    """Lists and watches fail for a while (etcd down): nothing served changes, then the change arrives."""
    api.create(route("a", spec({"v3": 90, "v4": 10})))
    failing = False

    def maybe_fail(request: kmock.Request) -> Any:
        if failing and request.method == kmock.method.GET:  # lists and watches; the test's own writes pass
            raise api_error(500, "InternalError", "etcdserver: request timed out")
        raise NotImplementedError  # kmock: not answered here, the emulator serves it

    kube.emulator[kube.emulator.resource(MODELROUTES)] << maybe_fail
    async with running(kube, tmp_path, watch_timeout_s=1) as plane:
        served = plane.cache.current
        failing = True
        informer = plane.kubernetes.informers[0]  # type: ignore[union-attr]
        lists = informer.lists
        await asyncio.sleep(1.5)  # the open watch ends (1 s); every list and watch after it fails
        api.patch(
            ModelRoute, "a", {"spec": {"traffic": {"v3": 50, "v4": 50}}}, namespace=NS, patch_type=PatchType.MERGE
        )
        await asyncio.sleep(1.0)
        assert traffic_of(plane, "a") == {"v3": 90, "v4": 10}  # the last state keeps serving
        assert plane.cache.current is served and informer.lists == lists
        failing = False
        await until(lambda: traffic_of(plane, "a") == {"v3": 50, "v4": 50}, "the change after the outage")
        assert informer.lists > lists  # it came with a fresh list


def test_a_write_when_the_api_server_is_unreachable_is_a_refusal_with_a_reason(tmp_path: Path) -> None:
    """Not an exception the admin API would turn into a 500."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = KubeConfig.from_one(cluster=Cluster(server=f"http://127.0.0.1:{port}"), user=User(), namespace=NS)
    source = KubernetesSource(NS, config)
    obj = {"metadata": {"name": "a", "namespace": NS, "resourceVersion": "1"}, "spec": spec({"v3": 100, "v4": 0})}
    asyncio.run(source.update("ModelRoute", {"a": obj}, whole=True))
    origin = f"modelroutes/{NS}/a"
    text = source.read()[origin]
    with pytest.raises(OSError, match="cannot reach the API server"):
        source.write(origin, text)
    with pytest.raises(OSError, match="cannot reach the API server"):
        source.save_rollout("a", {"phase": "progressing"})
    source.close()
