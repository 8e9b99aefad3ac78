"""The snapshot being served, the rejected ones, and change notification.

Contract: a single asyncio event loop owns the cache; nothing here is
thread-safe. ``set`` never publishes a version Envoy has rejected (NACKed),
and a NACK rolls the served snapshot back to the last one before it, so
Envoys that connect later get a configuration that works.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from control_plane.xds.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Rejection:
    snapshot_version: str
    type_url: str
    node_id: str
    message: str
    at: float


class SnapshotCache:
    def __init__(self) -> None:
        self._current: Snapshot | None = None
        self._previous: Snapshot | None = None
        self._rejected: dict[str, Rejection] = {}
        self._changed = asyncio.Event()
        self.generation = 0
        self.published_at: float | None = None

    @property
    def current(self) -> Snapshot | None:
        return self._current

    @property
    def rejections(self) -> list[Rejection]:
        return sorted(self._rejected.values(), key=lambda r: r.at, reverse=True)

    def set(self, snapshot: Snapshot) -> bool:
        """Publish ``snapshot``; False if it is unchanged or was rejected before."""
        if snapshot.version in self._rejected:
            return False
        if self._current is not None and snapshot.version == self._current.version:
            return False
        self._previous, self._current = self._current, snapshot
        self._notify()
        return True

    def reject(self, snapshot_version: str, type_url: str, node_id: str, message: str) -> None:
        """Envoy NACKed ``snapshot_version``: never serve it again; fall back if it is current."""
        if snapshot_version not in self._rejected:
            self._rejected[snapshot_version] = Rejection(snapshot_version, type_url, node_id, message, time.time())
        if self._current is not None and self._current.version == snapshot_version:
            self._current, self._previous = self._previous, None
            self._notify()

    def is_rejected(self, snapshot_version: str) -> bool:
        return snapshot_version in self._rejected

    async def wait_for_change(self, generation: int) -> int:
        """Return once the published generation differs from ``generation``."""
        while self.generation == generation:
            await self._changed.wait()
        return self.generation

    def _notify(self) -> None:
        self.generation += 1
        self.published_at = time.time()
        event, self._changed = self._changed, asyncio.Event()
        event.set()
