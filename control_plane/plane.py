"""One wiring function: every part of a control plane, created and connected in one place.

``serve()`` and the tests both get their control plane from ``build``, so the
tests run the wiring production runs. The parts are plain objects; ``build``
decides who talks to whom, and nothing assigns collaborators afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from control_plane.admin.app import create_app
from control_plane.admin.auth import Authenticator, load_tokens
from control_plane.admin.context import AdminContext
from control_plane.admin.metrics import Metrics
from control_plane.engine.controller import Controller
from control_plane.engine.health import HealthProber
from control_plane.engine.tasks import BackgroundTasks
from control_plane.k8s.mode import KubernetesOptions, KubernetesParts, StatusRolloutStore, kubernetes_parts
from control_plane.operations.audit import AuditLog
from control_plane.operations.changes import PolicyChanges
from control_plane.operations.history import History, default_state_dir
from control_plane.policy.compile import LocalOverrides
from control_plane.rollout.metrics import EnvoyStats, envoy_admin_urls
from control_plane.rollout.runner import RolloutRunner
from control_plane.shadow.collector import ShadowCollector
from control_plane.sources import WriteBack
from control_plane.sources.files import FileSource
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.nodes import NodeRegistry


@dataclass(frozen=True, slots=True)
class ServeOptions:
    policies: list[Path]
    xds_address: str = "127.0.0.1"
    xds_port: int = 18000
    admin_address: str = "127.0.0.1"
    admin_port: int = 18001
    watch: bool = True
    tokens: Path | None = None  # admin API bearer tokens; None: unauthenticated, loopback only
    state_dir: Path | None = None  # history and audit log; None: <policies>/.switchyard
    overrides: LocalOverrides | None = None  # `switchyard up`: its listener and replicas
    # Envoy admin URLs to read canary statistics from, besides those connected Envoys
    # announce in their node metadata (an Envoy whose admin listens on 0.0.0.0 cannot).
    envoy_admin: tuple[str, ...] = ()
    shadow_inputs: bool = True  # keep the inputs of shadow disagreements in the report
    allow_empty: bool = False  # let a reload remove every model (see policy/removals.py)
    kubernetes: KubernetesOptions | None = None  # policies from resources, endpoints from EndpointSlices


@dataclass(frozen=True, slots=True)
class ControlPlane:
    options: ServeOptions
    state_dir: Path
    parts: AdminContext  # everything the admin API and the loops share
    app: FastAPI
    kubernetes: KubernetesParts | None = None

    @property
    def controller(self) -> Controller:
        return self.parts.controller

    @property
    def cache(self) -> SnapshotCache:
        return self.parts.cache

    @property
    def nodes(self) -> NodeRegistry:
        return self.parts.nodes

    @property
    def changes(self) -> PolicyChanges:
        return self.parts.changes

    @property
    def rollouts(self) -> RolloutRunner:
        return self.parts.rollouts


def build(options: ServeOptions, *, authenticator: Authenticator | None = None) -> ControlPlane:
    """The control plane ``options`` describe; raises ``TokenFileError`` for a bad tokens file.

    ``authenticator`` replaces ``options.tokens`` (tests give tokens directly).
    Nothing runs yet: ``serve`` loads the policies and starts the servers and loops.
    """
    if authenticator is None:
        authenticator = Authenticator(load_tokens(options.tokens) if options.tokens else None)
    state_dir = options.state_dir or default_state_dir(options.policies)
    cache = SnapshotCache()
    metrics = Metrics(cache)
    nodes = NodeRegistry(events=metrics)
    metrics.read_state_of(nodes)
    kubernetes: KubernetesParts | None = None
    source: WriteBack
    if options.kubernetes is not None:
        controller, kubernetes = kubernetes_parts(options.kubernetes, cache, nodes, options.overrides)
        source = kubernetes.source
    else:
        source = FileSource(options.policies)
        controller = Controller(source, cache, options.overrides, allow_empty=options.allow_empty)
    prober = HealthProber(controller.set_unready)
    changes = PolicyChanges(controller, prober, History(state_dir / "history.jsonl"), write_back=source)
    audit = AuditLog(state_dir / "audit.jsonl")
    stats = EnvoyStats(lambda: envoy_admin_urls(nodes, options.envoy_admin))
    parts = AdminContext(
        controller=controller,
        cache=cache,
        nodes=nodes,
        prober=prober,
        changes=changes,
        audit=audit,
        authenticator=authenticator,
        metrics=metrics,
        tasks=BackgroundTasks(),
        # Resumes the rollouts recorded in state_dir (Kubernetes: in each ModelRoute's status, on the leader).
        rollouts=RolloutRunner(
            changes,
            audit,
            stats,
            state_dir,
            store=StatusRolloutStore(kubernetes.source) if kubernetes else None,
            is_leader=kubernetes.leads if kubernetes else lambda: True,
        ),
        shadow=ShadowCollector(lambda: controller.intent, capture_inputs=options.shadow_inputs),
    )
    return ControlPlane(options, state_dir, parts, create_app(parts), kubernetes)
