"""`switchyard serve --kubernetes` with a real Envoy, against the Kubernetes API emulator.

The control plane is the real process (the command the Deployment runs), its kubeconfig
points at the emulator, and Envoy routes real HTTP requests to upstreams whose addresses
come from EndpointSlices. What a real cluster adds (RBAC, admission, the API server's own
schema validation, kubelet-driven readiness) is not exercised here; the README says so.
"""

from __future__ import annotations

import collections
import copy
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lightkube
import pytest
import yaml
from lightkube.models.discovery_v1 import Endpoint, EndpointConditions, EndpointPort
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from control_plane.k8s.endpoints import SERVICE_LABEL
from control_plane.k8s.kinds import Gateway, ModelRoute
from tests.support.kube_emulator import (
    MODELROUTES,
    KubeEmulator,
    kube_emulator_in_thread,
    kubeconfig_text,
    status_of,
)
from tests.support.load import Load
from tests.support.procs import ControlPlane, Envoy, free_port, wait_for
from tests.support.upstream import VersionUpstream

NS = "ml"
VERSIONS = ("sentiment-v3", "sentiment-v4")
LEASE_S = "3"  # short, so failover is quick; the production default is 15 s


def kubernetes_args(identity: str) -> list[str]:
    return ["--kubernetes", "--namespace", NS, "--identity", identity, "--lease-duration-s", LEASE_S]


class Cluster:
    """The emulator, one upstream per version with its EndpointSlice, a control plane and an Envoy."""

    def __init__(self, kube: KubeEmulator, workdir: Path) -> None:
        self.kube = kube
        self.workdir = workdir
        self.api = lightkube.Client(config=kube.config(NS))
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(kubeconfig_text(kube, NS))
        self.upstreams = {v: VersionUpstream(v) for v in VERSIONS}
        self.listener_port = free_port()
        for version, upstream in self.upstreams.items():
            self.api.create(self.slice(version, upstream.port, ready=True))
        self.api.create(
            Gateway(
                metadata=ObjectMeta(name="edge", namespace=NS),
                spec={"address": "127.0.0.1", "port": self.listener_port},
            )
        )
        self.api.create(ModelRoute(metadata=ObjectMeta(name="sentiment", namespace=NS), spec=self.spec(50, 50)))
        self.planes: list[ControlPlane] = []
        # Two replicas, both in Envoy's bootstrap: it streams from either, and moves on when one dies.
        self.xds_ports = {"replica-a": free_port(), "replica-b": free_port()}
        self.envoy = Envoy(self.xds_ports["replica-a"], workdir)
        bootstrap = yaml.safe_load(self.envoy.config.read_text())
        (xds,) = bootstrap["static_resources"]["clusters"]
        endpoints = xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
        endpoints.append(copy.deepcopy(endpoints[0]))
        endpoints[1]["endpoint"]["address"]["socket_address"]["port_value"] = self.xds_ports["replica-b"]
        self.envoy.config.write_text(yaml.safe_dump(bootstrap))
        self.control_plane = self.start_control_plane("replica-a")
        self.envoy.start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.listener_port}", timeout=10)

    def start_control_plane(self, identity: str) -> ControlPlane:
        plane = ControlPlane(
            None,
            self.workdir,
            xds_port=self.xds_ports[identity],
            extra_args=[
                *kubernetes_args(identity),
                "--state-dir",
                str(self.workdir / identity),
                "--envoy-admin",  # whichever replica Envoy streams from, both read its statistics
                self.envoy.admin,
            ],
            env={"KUBECONFIG": str(self.kubeconfig)},
        ).start()
        self.planes.append(plane)
        return plane

    @staticmethod
    def slice(version: str, port: int, *, ready: bool) -> EndpointSlice:
        return EndpointSlice(
            metadata=ObjectMeta(name=f"{version}-abcde", namespace=NS, labels={SERVICE_LABEL: version}),
            addressType="IPv4",
            endpoints=[Endpoint(addresses=["127.0.0.1"], conditions=EndpointConditions(ready=ready))],
            ports=[EndpointPort(name="http", port=port)],
        )

    @staticmethod
    def spec(v3: int, v4: int) -> dict[str, Any]:
        return {
            "hosts": ["*"],
            "versions": {v: {"service": {"name": v, "port": "http"}} for v in VERSIONS},
            "traffic": {"sentiment-v3": v3, "sentiment-v4": v4},
        }

    def set_ready(self, version: str, ready: bool) -> None:
        self.api.replace(self.slice(version, self.upstreams[version].port, ready=ready))

    def send(self, n: int) -> collections.Counter[tuple[int, str | None]]:
        counts: collections.Counter[tuple[int, str | None]] = collections.Counter()
        for _ in range(n):
            response = self.client.post("/v1/predict", json={"text": "fine"})
            counts[(response.status_code, response.headers.get("x-model-version"))] += 1
        return counts

    def route(self) -> Any:
        return self.api.get(ModelRoute, "sentiment", namespace=NS)

    def condition(self, kind: str) -> dict[str, Any]:
        return next((c for c in status_of(self.route()).get("conditions", ()) if c["type"] == kind), {})

    def wait_synced(self) -> dict[str, Any]:
        def synced() -> dict[str, Any] | None:
            for plane in self.live_planes():
                status = plane.status()
                nodes = [n for n in status["envoys"] if n["connected"]]
                if nodes and nodes[0]["synced_snapshot"] == status["snapshot_version"] is not None:
                    return status
            return None

        return wait_for(synced, what="Envoy to ACK the current snapshot")

    def live_planes(self) -> list[ControlPlane]:
        return [p for p in self.planes if p.process is not None and p.process.alive()]

    def close(self) -> None:
        self.client.close()
        self.envoy.stop()
        for plane in self.planes:
            plane.stop()
        for upstream in self.upstreams.values():
            upstream.close()
        self.api.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with kube_emulator_in_thread() as kube:
        stack = Cluster(kube, tmp_path_factory.mktemp("kubernetes"))
        try:
            yield stack
        finally:
            stack.close()


def test_a_modelroute_becomes_routes_in_envoy_and_reports_programmed(cluster: Cluster) -> None:
    wait_for(lambda: cluster.send(1)[(200, "sentiment-v3")] or cluster.send(1)[(200, "sentiment-v4")], what="a route")
    cluster.wait_synced()
    counts = cluster.send(60)
    assert set(counts) == {(200, "sentiment-v3"), (200, "sentiment-v4")}, counts
    wait_for(lambda: cluster.condition("Programmed").get("status") == "True", what="Programmed=True")
    status = status_of(cluster.route())
    assert cluster.condition("Accepted")["status"] == "True"
    assert status["envoys"] == {"connected": 1, "current": 1}
    assert status["effectiveTraffic"] == {"sentiment-v3": 50, "sentiment-v4": 50}
    assert status["observedGeneration"] == cluster.route().metadata.generation
    gateway = status_of(cluster.api.get(Gateway, "edge", namespace=NS))
    assert [(c["type"], c["status"]) for c in gateway["conditions"]] == [("Accepted", "True"), ("Programmed", "True")]


def test_an_endpoint_that_is_not_ready_loses_its_share(cluster: Cluster) -> None:
    cluster.set_ready("sentiment-v4", False)
    try:
        wait_for(lambda: set(cluster.send(10)) == {(200, "sentiment-v3")}, what="v4's share to move to v3")
        assert set(cluster.send(40)) == {(200, "sentiment-v3")}
        wait_for(
            lambda: status_of(cluster.route()).get("effectiveTraffic") == {"sentiment-v3": 50},
            what="the status to show v3 alone",
        )
        models = httpx.get(f"{cluster.control_plane.url}/v1/models/sentiment").json()
        assert models["effective_traffic"] == {"sentiment-v3": 50}  # switchyard status agrees
    finally:
        cluster.set_ready("sentiment-v4", True)
    wait_for(lambda: (200, "sentiment-v4") in cluster.send(20), what="v4 to get traffic again")


def test_a_bad_spec_is_not_accepted_and_nothing_is_pushed(cluster: Cluster) -> None:
    before = cluster.wait_synced()["snapshot_version"]
    cluster.api.patch(
        ModelRoute,
        "sentiment",
        {"spec": {"traffic": {"sentiment-v3": 70, "sentiment-v4": 50}}},
        namespace=NS,
        patch_type=PatchType.MERGE,
    )
    wait_for(lambda: cluster.condition("Accepted").get("status") == "False", what="Accepted=False")
    accepted = cluster.condition("Accepted")
    assert accepted["reason"] == "Invalid"
    assert accepted["message"].startswith("spec.traffic: "), accepted["message"]
    assert accepted["observedGeneration"] == cluster.route().metadata.generation
    assert cluster.control_plane.status()["snapshot_version"] == before
    assert set(cluster.send(40)) == {(200, "sentiment-v3"), (200, "sentiment-v4")}
    # A change through the admin API is refused until the resource is fixed (409, saying why).
    refused = httpx.put(
        f"{cluster.control_plane.url}/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 100}}
    )
    assert refused.status_code == 409 and "was rejected: spec.traffic" in refused.text, refused.text
    cluster.api.patch(ModelRoute, "sentiment", {"spec": cluster.spec(50, 50)}, namespace=NS, patch_type=PatchType.MERGE)
    wait_for(lambda: cluster.condition("Accepted").get("status") == "True", what="Accepted=True again")


def test_a_change_through_the_admin_api_is_a_write_to_the_resource(cluster: Cluster) -> None:
    plane = cluster.control_plane
    wait_for(
        lambda: httpx.get(f"{plane.url}/v1/models/sentiment").json()["traffic"]["sentiment-v3"] == 50, what="50/50"
    )
    etag = httpx.get(f"{plane.url}/v1/models/sentiment").headers["etag"]
    changed = httpx.put(
        f"{plane.url}/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 100, "sentiment-v4": 0}},
        headers={"If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert cluster.route()["spec"]["traffic"] == {"sentiment-v3": 100, "sentiment-v4": 0}  # kubectl get agrees
    cluster.wait_synced()
    assert set(cluster.send(30)) == {(200, "sentiment-v3")}
    stale = httpx.put(
        f"{plane.url}/v1/models/sentiment/traffic",
        json={"weights": {"sentiment-v3": 50, "sentiment-v4": 50}},
        headers={"If-Match": etag},
    )
    assert stale.status_code == 412, stale.text


def test_deleting_the_modelroute_removes_its_routes(cluster: Cluster) -> None:
    cluster.api.delete(ModelRoute, "sentiment", namespace=NS)
    wait_for(lambda: cluster.send(1)[(404, None)], what="the route to go")
    assert httpx.get(f"{cluster.control_plane.url}/v1/models/sentiment").status_code == 404
    cluster.api.create(ModelRoute(metadata=ObjectMeta(name="sentiment", namespace=NS), spec=cluster.spec(50, 50)))
    wait_for(lambda: cluster.send(1)[(200, "sentiment-v3")] or cluster.send(1)[(200, "sentiment-v4")], what="back")


def test_the_standby_takes_over_a_rollout_when_the_leader_is_killed(cluster: Cluster) -> None:
    leader = cluster.control_plane
    canary = {
        "candidate": "sentiment-v4",
        "baseline": "sentiment-v3",
        "steps": [10, 20, 30, 40, 50],
        "interval": "1s",
        "min_requests": 3,
        "max_error_rate": 0.5,
    }
    spec = {**cluster.spec(100, 0), "canary": canary}
    cluster.api.patch(ModelRoute, "sentiment", {"spec": spec}, namespace=NS, patch_type=PatchType.MERGE)
    wait_for(
        lambda: cluster.condition("Accepted").get("observedGeneration") == cluster.route().metadata.generation,
        what="the canary spec to be accepted",
    )
    standby = cluster.start_control_plane("replica-b")
    assert wait_for(lambda: lease_holder(cluster), what="a leader") == "replica-a"
    wait_for(lambda: standby.status()["snapshot_version"] == leader.status()["snapshot_version"], what="same version")

    # The standby refuses changes, naming the leader.
    refused = httpx.put(f"{standby.url}/v1/models/sentiment/traffic", json={"weights": {"sentiment-v3": 100}})
    assert refused.status_code == 409, refused.text
    assert "not the leader: replica-a holds Lease ml/switchyard-leader" in refused.text

    with Load(f"http://127.0.0.1:{cluster.listener_port}"):
        start = f"{leader.url}/v1/models/sentiment/rollout/start"
        wait_for(lambda: httpx.post(start).status_code == 200, what="the rollout to start")
        wait_for(lambda: rollout_of(leader)["weight"] >= 20, timeout=60, what="the rollout's second step")
        assert leader.process is not None
        os.kill(leader.process.proc.pid, signal.SIGKILL)  # no release: the standby waits the lease out
        leader.process.proc.wait()
        wait_for(lambda: lease_holder(cluster) == "replica-b", timeout=30, what="replica-b to take the lease")
        done = wait_for(
            lambda: (r := rollout_of(standby))["phase"] != "progressing" and r, timeout=90, what="the rollout to end"
        )
    assert done["phase"] == "promoted", done
    assert cluster.route()["spec"]["traffic"] == {"sentiment-v4": 100}
    # Every step once, in order, across both leaders: the candidate's weight in each written spec.
    weights = [version["spec"]["traffic"].get("sentiment-v4", 0) for version in route_history(cluster)]
    steps = [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]]
    assert steps[steps.index(10) - 1 :] == [0, 10, 20, 30, 40, 50, 100], weights
    # The new leader writes status now; Envoy follows it (it streams from replica-b).
    wait_for(
        lambda: status_of(cluster.route()).get("effectiveTraffic") == {"sentiment-v4": 100},
        what="status from the new leader",
    )
    cluster.wait_synced()
    assert set(cluster.send(20)) == {(200, "sentiment-v4")}


def lease_holder(cluster: Cluster) -> str | None:
    spec = cluster.api.get(Lease, "switchyard-leader", namespace=NS).spec
    return spec.holderIdentity if spec else None


def rollout_of(plane: ControlPlane) -> dict[str, Any]:
    response = httpx.get(f"{plane.url}/v1/models/sentiment/rollout", timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def route_history(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.kube.emulator.history(MODELROUTES, NS, "sentiment")
