"""xDS at scale: one control plane, many simulated Envoys, one model's split changed.

``switchyard serve`` runs on N models (one policy file each, as in bench/convergence.py:
two EDS clusters and five routes per model). C simulated Envoys connect over ADS, each on
its own gRPC connection, as state-of-the-world or delta clients (the ``--delta-share``).
A simulated Envoy does what Envoy does on the wire and nothing else: it subscribes to
clusters and listeners (wildcard), then to the endpoints of every EDS cluster and the
route configurations its listeners name; it ACKs every response with its nonce (and, in
SotW, its version) and follows the names as they change. It does not validate the
resources' contents: that is Envoy's job, checked elsewhere (tests/unit/test_envoy_accepts.py).

Once every client is synced, the benchmark changes one model's split through the admin
API (``PUT /v1/models/<m>/traffic``) several times and measures, per change, when each
client ACKed the new route configuration (p50 / p99 / max over clients), the bytes the
clients received for it, and the control plane's CPU time. Before the clients connect and
after, it reads the control plane's RSS: the growth per connected client.

    .venv/bin/python -m bench.xds_scale                      # 1,000 clients x 100 models; SotW, delta, mixed
    .venv/bin/python -m bench.xds_scale --clients 200 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bench.common import ControlPlane, environment, percentile, rss_mib, write_results
from bench.convergence import gateway_doc, model_doc
from control_plane.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE
from control_plane.translate.listeners import rds_names

GOAL_P99_S = 1.0  # Istio's published figure: 500 sidecars in under 1 s


# -- a simulated Envoy ------------------------------------------------------------------------


def eds_names(clusters: Sequence[cluster_pb2.Cluster]) -> set[str]:
    return {c.name for c in clusters if c.type == cluster_pb2.Cluster.EDS}


def route_names(listeners: Sequence[listener_pb2.Listener]) -> set[str]:
    return {name for listener in listeners for name in rds_names(listener)}


@dataclass(frozen=True)
class Received:
    at: float  # monotonic time its ACK was queued
    type_url: str
    size: int  # bytes of the response message


class SimulatedEnvoy:
    """One ADS stream that subscribes, follows names and ACKs like Envoy."""

    def __init__(self, address: str, node_id: str, delta: bool) -> None:
        self.address, self.node, self.delta = address, base_pb2.Node(id=node_id, cluster="bench"), delta
        self.received: list[Received] = []
        self.synced = asyncio.Event()  # every type ACKed at least once
        self.acked: set[str] = set()
        self._channel: grpc.aio.Channel | None = None
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()

    async def run(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.address)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        call = (
            stub.DeltaAggregatedResources(self._requests())
            if self.delta
            else stub.StreamAggregatedResources(self._requests())
        )
        follow = self._follow_delta if self.delta else self._follow_sotw
        await follow(call)

    async def close(self) -> None:
        await self._outbox.put(None)
        if self._channel is not None:
            await self._channel.close(None)

    async def _requests(self) -> Any:
        while (request := await self._outbox.get()) is not None:
            yield request

    def _note(self, type_url: str, size: int) -> None:
        self.received.append(Received(time.monotonic(), type_url, size))
        self.acked.add(type_url)
        if {CLUSTER, ENDPOINT, LISTENER, ROUTE} <= self.acked:
            self.synced.set()

    async def _follow_sotw(self, call: Any) -> None:
        names: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set()}
        last: dict[str, discovery_pb2.DiscoveryResponse] = {}

        def request(type_url: str, resource_names: set[str]) -> discovery_pb2.DiscoveryRequest:
            previous = last.get(type_url)
            return discovery_pb2.DiscoveryRequest(
                node=self.node,
                type_url=type_url,
                resource_names=sorted(resource_names),
                version_info=previous.version_info if previous else "",
                response_nonce=previous.nonce if previous else "",
            )

        for wildcard in (CLUSTER, LISTENER):
            await self._outbox.put(request(wildcard, set()))
        async for response in call:
            type_url = response.type_url
            last[type_url] = response
            await self._outbox.put(request(type_url, names.get(type_url, set())))
            self._note(type_url, response.ByteSize())
            wanted = self._names_wanted(type_url, [r.value for r in response.resources])
            if wanted is not None and wanted[1] != names[wanted[0]]:
                names[wanted[0]] = wanted[1]
                await self._outbox.put(request(wanted[0], wanted[1]))

    async def _follow_delta(self, call: Any) -> None:
        names: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set()}
        held: dict[str, dict[str, bytes]] = {CLUSTER: {}, LISTENER: {}}
        for wildcard in (CLUSTER, LISTENER):
            await self._outbox.put(discovery_pb2.DeltaDiscoveryRequest(node=self.node, type_url=wildcard))
        async for response in call:
            type_url = response.type_url
            await self._outbox.put(
                discovery_pb2.DeltaDiscoveryRequest(node=self.node, type_url=type_url, response_nonce=response.nonce)
            )
            self._note(type_url, response.ByteSize())
            if type_url not in held:
                continue
            for resource in response.resources:
                held[type_url][resource.name] = resource.resource.value
            for name in response.removed_resources:
                held[type_url].pop(name, None)
            wanted = self._names_wanted(type_url, list(held[type_url].values()))
            if wanted is None or wanted[1] == names[wanted[0]]:
                continue
            target, now = wanted
            added, removed = now - names[target], names[target] - now
            names[target] = now
            await self._outbox.put(
                discovery_pb2.DeltaDiscoveryRequest(
                    node=self.node,
                    type_url=target,
                    resource_names_subscribe=sorted(added),
                    resource_names_unsubscribe=sorted(removed),
                )
            )

    @staticmethod
    def _names_wanted(type_url: str, payloads: Sequence[bytes]) -> tuple[str, set[str]] | None:
        """After clusters or listeners: the endpoint or route names they need."""
        if type_url == CLUSTER:
            return ENDPOINT, eds_names([cluster_pb2.Cluster.FromString(p) for p in payloads])
        if type_url == LISTENER:
            return ROUTE, route_names([listener_pb2.Listener.FromString(p) for p in payloads])
        return None


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Change:
    ack_p50_s: float
    ack_p99_s: float
    ack_max_s: float
    bytes_per_client_sotw: float | None
    bytes_per_client_delta: float | None
    control_plane_cpu_s: float
    clients_cpu_s: float  # this process (every simulated Envoy), on the same cores
    types_sent: list[str]  # resource types any client received for the change


@dataclass
class ArmResult:
    clients: int
    delta_clients: int
    models: int
    connect_s: float
    rss_before_mib: float
    rss_after_mib: float
    rss_per_client_kib: float
    changes: list[Change]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / 100.0  # USER_HZ


def write_policies(directory: Path, models: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.yaml").write_text(gateway_doc(10000))
    for i in range(models):
        # Endpoints that nobody serves: no data-plane traffic here, only configuration.
        (directory / f"m{i}.yaml").write_text(model_doc(i, 9, 10))


async def measure_arm(
    models: int,
    clients: int,
    delta_share: float,
    changes: int,
    work: Path,
    timeout_s: float,
    after: Callable[[str], None] | None = None,
) -> ArmResult:
    """One control plane, ``clients`` simulated Envoys, ``changes`` split changes; ``after``
    is called with the admin URL once the changes are done, while every client is still on."""
    policies = work / f"policies-{models}"
    write_policies(policies, models)
    plane = ControlPlane(policies, work).start(120)
    assert plane.process is not None
    pid = plane.process.proc.pid
    delta_clients = round(clients * delta_share)
    envoys = [
        SimulatedEnvoy(f"127.0.0.1:{plane.xds_port}", f"envoy-{i}", delta=i < delta_clients) for i in range(clients)
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.sleep(1.0)  # let start-up settle before the baseline
        rss_before = rss_mib(pid)
        started = time.monotonic()
        tasks = [asyncio.create_task(e.run()) for e in envoys]
        await asyncio.wait_for(asyncio.gather(*(e.synced.wait() for e in envoys)), timeout_s)
        connect_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        rss_after = rss_mib(pid)
        results = []
        async with httpx.AsyncClient(base_url=plane.url, timeout=30, trust_env=False) as api:
            for n in range(changes):
                results.append(await one_change(api, envoys, pid, f"m{models - 1}", n, timeout_s))
        if after is not None:
            await asyncio.to_thread(after, plane.url)
        return ArmResult(
            clients=clients,
            delta_clients=delta_clients,
            models=models,
            connect_s=connect_s,
            rss_before_mib=rss_before,
            rss_after_mib=rss_after,
            rss_per_client_kib=(rss_after - rss_before) * 1024 / clients,
            changes=results,
        )
    finally:
        for e in envoys:
            await e.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        plane.stop()


async def one_change(
    api: httpx.AsyncClient, envoys: list[SimulatedEnvoy], pid: int, model: str, n: int, timeout_s: float
) -> Change:
    target, other = ("b", "a") if n % 2 == 0 else ("a", "b")
    seen = {id(e): len(e.received) for e in envoys}

    def since(e: SimulatedEnvoy) -> list[Received]:
        return e.received[seen[id(e)] :]

    def routes_acked(e: SimulatedEnvoy) -> bool:
        return any(r.type_url == ROUTE for r in since(e))

    cpu_before, client_cpu_before = cpu_seconds(pid), time.process_time()
    t0 = time.monotonic()
    response = await api.put(f"/v1/models/{model}/traffic", json={"weights": {target: 100, other: 0}})
    response.raise_for_status()
    while not all(routes_acked(e) for e in envoys):
        if time.monotonic() > t0 + timeout_s:
            late = sum(1 for e in envoys if not routes_acked(e))
            raise TimeoutError(f"{late} of {len(envoys)} clients never ACKed change {n}")
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.5)  # anything else the change caused arrives too (it should be nothing)
    cpu, client_cpu = cpu_seconds(pid) - cpu_before, time.process_time() - client_cpu_before
    acks = [next(r.at for r in since(e) if r.type_url == ROUTE) - t0 for e in envoys]

    def per_client(delta: bool) -> float | None:
        sizes = [sum(r.size for r in since(e)) for e in envoys if e.delta is delta]
        return sum(sizes) / len(sizes) if sizes else None

    return Change(
        ack_p50_s=percentile(acks, 50),
        ack_p99_s=percentile(acks, 99),
        ack_max_s=max(acks),
        bytes_per_client_sotw=per_client(False),
        bytes_per_client_delta=per_client(True),
        control_plane_cpu_s=cpu,
        clients_cpu_s=client_cpu,
        types_sent=sorted({r.type_url.rsplit(".", 1)[-1] for e in envoys for r in since(e)}),
    )


def summary(name: str, arm: ArmResult) -> str:
    p99s = sorted(c.ack_p99_s for c in arm.changes)
    worst = max(c.ack_max_s for c in arm.changes)
    median_p99 = p99s[len(p99s) // 2]
    sotw = [c.bytes_per_client_sotw for c in arm.changes if c.bytes_per_client_sotw is not None]
    delta = [c.bytes_per_client_delta for c in arm.changes if c.bytes_per_client_delta is not None]
    cpu = sum(c.control_plane_cpu_s for c in arm.changes) / len(arm.changes)
    clients_cpu = sum(c.clients_cpu_s for c in arm.changes) / len(arm.changes)
    return (
        f"| {name} | {arm.clients} | {arm.connect_s:.1f} | "
        f"{1000 * percentile([c.ack_p50_s for c in arm.changes], 50):.0f} | {1000 * median_p99:.0f} | "
        f"{1000 * worst:.0f} | {'met' if median_p99 <= GOAL_P99_S else 'NOT met'} | "
        f"{sum(sotw) / len(sotw) if sotw else 0:.0f} | {sum(delta) / len(delta) if delta else 0:.0f} | "
        f"{cpu:.2f} | {clients_cpu:.2f} | {arm.rss_before_mib:.0f} → {arm.rss_after_mib:.0f} | "
        f"{arm.rss_per_client_kib:.0f} |"
    )


ARMS = {"sotw": 0.0, "delta": 1.0, "mixed": 0.5}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--changes", type=int, default=5)
    p.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    p.add_argument("--quick", action="store_true", help="3 changes per arm")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for all clients to sync or ACK")
    args = p.parse_args()
    changes = 3 if args.quick else args.changes
    env = environment()
    results: dict[str, Any] = {}
    print(
        "| arm | clients | connect s | ACK p50 ms | ACK p99 ms | ACK max ms | p99 ≤ 1 s | B/client SotW"
        " | B/client delta | control plane CPU s/change | clients' CPU s/change | RSS MiB before → after"
        " | KiB/client |"
    )
    print("|---|" + "---:|" * 12)
    with tempfile.TemporaryDirectory(prefix="xds-scale-") as tmp:
        for name in args.arms:
            arm = asyncio.run(measure_arm(args.models, args.clients, ARMS[name], changes, Path(tmp), args.timeout))
            results[name] = asdict(arm)
            print(summary(name, arm), flush=True)
    path = write_results(
        "xds_scale",
        {"benchmark": "xds_scale", "environment": env, "settings": vars(args), "results": results},
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
