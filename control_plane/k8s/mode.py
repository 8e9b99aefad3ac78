"""The Kubernetes mode's parts, created and connected in one place (as ``plane.build`` does for the rest).

``switchyard serve --kubernetes`` replaces the file source with resources and the
static endpoints of Service-backed versions with EndpointSlices, and adds a Lease
election and a status writer. Every replica watches and serves xDS: snapshot
versions are content hashes, so replicas that see the same resources serve the same
versions, and an Envoy that reconnects to another replica is sent nothing new. Only
the leader writes (spec changes and status); the others refuse a change, naming the
leader to send it to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig
from lightkube.resources.discovery_v1 import EndpointSlice

from control_plane.engine.controller import Controller
from control_plane.k8s.endpoints import EndpointSliceCache
from control_plane.k8s.lease import LeaderElection
from control_plane.k8s.source import KubernetesSource
from control_plane.k8s.status import StatusWriter
from control_plane.k8s.watch import Informer
from control_plane.policy.compile import LocalOverrides
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry

log = logging.getLogger(__name__)

SYNC_LOG_S = 10.0  # how often a start that waits for the API server says so


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    namespace: str
    identity: str  # this replica's name in the Lease: the Pod name
    lease_name: str = "switchyard-leader"
    config: KubeConfig | None = None  # None: in-cluster service account, else $KUBECONFIG
    lease_duration_s: float = 15.0  # client-go's defaults
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0
    status_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class KubernetesParts:
    options: KubernetesOptions
    client: AsyncClient
    source: KubernetesSource
    slices: EndpointSliceCache
    election: LeaderElection
    status: StatusWriter
    informers: tuple[Informer, ...]

    def loops(self) -> dict[str, Coroutine[Any, Any, None]]:
        """The background tasks to run for as long as the process does (none ends by itself)."""
        loops: dict[str, Coroutine[Any, Any, None]] = {
            f"watch-{getattr(i.resource, '__name__', 'objects').lower()}": i.run() for i in self.informers
        }
        loops["leader-election"] = self.election.run()
        loops["status-writer"] = self.status.run()
        return loops

    async def wait_synced(self) -> None:
        """Until every informer has listed once, so the first reload sees every resource."""
        pending = [asyncio.ensure_future(i.synced.wait()) for i in self.informers]
        while True:
            _, waiting = await asyncio.wait(pending, timeout=SYNC_LOG_S)
            if not waiting:
                return
            log.warning("still waiting for the first list from the Kubernetes API server")

    def leads(self) -> bool:
        """Leader, and has seen every resource: only then may it act on what it sees (rollouts)."""
        return self.election.is_leader and self.source.synced

    async def close(self) -> None:
        self.source.close()
        await self.client.close()


class StatusRolloutStore:
    """Rollout records in each ModelRoute's ``status.rollout``: any replica that becomes the leader resumes them."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source

    def load(self) -> dict[str, dict[str, Any]]:
        return self.source.rollouts()

    def save(self, model: str, record: dict[str, Any]) -> None:
        self.source.save_rollout(model, record)


def refusal(election: LeaderElection) -> str | None:
    """Why this replica may not write now (None: it is the leader)."""
    if election.is_leader:
        return None
    holder = election.leader
    lease = f"Lease {election.namespace}/{election.name}"
    if holder:
        return f"this replica ({election.identity}) is not the leader: {holder} holds {lease}; send changes there"
    return f"no replica holds {lease} yet (an election is under way); retry in a few seconds"


def kubernetes_parts(
    options: KubernetesOptions, cache: SnapshotCache, nodes: NodeRegistry, overrides: LocalOverrides | None
) -> tuple[Controller, KubernetesParts]:
    """The controller over resources, and the parts that keep it in step with the cluster."""
    client = AsyncClient(config=options.config, namespace=options.namespace, field_manager="switchyard")
    election = LeaderElection(
        client,
        options.namespace,
        options.lease_name,
        options.identity,
        lease_duration_s=options.lease_duration_s,
        renew_deadline_s=options.renew_deadline_s,
        retry_period_s=options.retry_period_s,
    )
    source = KubernetesSource(options.namespace, options.config, may_write=lambda: refusal(election))
    # Endpoints are state, not policy: a change re-translates what is accepted (an equal result pushes nothing).
    slices = EndpointSliceCache(lambda: controller.retranslate("an EndpointSlice change"))
    # Deleting the last ModelRoute is a deliberate act here, not an emptied directory.
    controller = Controller(source, cache, overrides, allow_empty=True, services=slices)
    status = StatusWriter(
        source,
        controller,
        nodes,
        client,
        is_leader=lambda: election.is_leader,
        interval_s=options.status_interval_s,
    )
    informers = (
        *source.informers_for(client),
        Informer(client, EndpointSlice, options.namespace, slices),
    )
    return controller, KubernetesParts(options, client, source, slices, election, status, informers)
