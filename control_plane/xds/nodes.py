"""What each connected Envoy has: ACKed versions, pending pushes, last NACK."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from control_plane.translate import TYPE_ORDER, short_type


@dataclass(slots=True)
class Nack:
    type_url: str
    version: str
    message: str
    at: float


@dataclass(slots=True)
class NodeStatus:
    node_id: str
    cluster: str
    mode: str  # "sotw" or "delta"
    stream_id: int
    connected_at: float = field(default_factory=time.time)
    connected: bool = True
    acked: dict[str, str] = field(default_factory=dict)  # type URL -> snapshot version
    pending: dict[str, str] = field(default_factory=dict)  # type URL -> snapshot version sent, not ACKed
    sent_at: dict[str, float] = field(default_factory=dict)
    last_nack: Nack | None = None
    # The snapshot this node runs completely (every subscribed type ACKed), if any.
    synced_snapshot: str | None = None
    synced_at: float | None = None
    # From the bootstrap's node metadata: where the control plane reads this Envoy's stats.
    admin_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "cluster": self.cluster,
            "mode": self.mode,
            "connected": self.connected,
            "connected_at": self.connected_at,
            "synced_snapshot": self.synced_snapshot,
            "synced_at": self.synced_at,
            "admin_url": self.admin_url,
            "acked": {short_type(t): self.acked[t] for t in TYPE_ORDER if t in self.acked},
            "pending": {short_type(t): self.pending[t] for t in TYPE_ORDER if t in self.pending},
            "last_nack": None
            if self.last_nack is None
            else {
                "type": short_type(self.last_nack.type_url),
                "version": self.last_nack.version,
                "error": self.last_nack.message,
                "at": self.last_nack.at,
            },
        }


class NodeEvents:
    """Hooks the ADS server calls on protocol events (metrics); these defaults do nothing."""

    def pushed(self, node: NodeStatus, type_url: str) -> None:
        return None

    def acked(self, node: NodeStatus, type_url: str) -> None:
        return None

    def nacked(self, node: NodeStatus, type_url: str) -> None:
        return None

    def synced(self, node: NodeStatus, version: str) -> None:
        return None


class NodeRegistry:
    """Latest status per node id (a reconnecting Envoy replaces its old stream's entry)."""

    def __init__(self, events: NodeEvents | None = None) -> None:
        self._nodes: dict[str, NodeStatus] = {}
        self.events = events or NodeEvents()

    def connect(self, status: NodeStatus) -> None:
        self._nodes[status.node_id] = status

    def disconnect(self, status: NodeStatus) -> None:
        if self._nodes.get(status.node_id) is status:
            status.connected = False

    def all(self) -> list[NodeStatus]:
        return sorted(self._nodes.values(), key=lambda n: n.node_id)

    def get(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)
