"""The snapshot being served, the rejected ones, and change notification.

Contract: a single asyncio event loop owns the cache; nothing here is
thread-safe. ``set`` never publishes a version Envoy has rejected (NACKed),
and a NACK rolls the served snapshot back to the last one before it, so
Envoys that connect later get a configuration that works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
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
        # Called after a NACK made the cache fall back, with the rejection and
        # the snapshot now served (None if there was none before it).
        self.on_fallback: Callable[[Rejection, Snapshot | None], None] | None = None

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
        rejection = self._rejected.get(snapshot_version)
        if rejection is None:
            rejection = Rejection(snapshot_version, type_url, node_id, message, time.time())
            self._rejected[snapshot_version] = rejection
        if self._current is not None and self._current.version == snapshot_version:
            self._current, self._previous = self._previous, None
            self._notify()
            if self.on_fallback is not None:
                self.on_fallback(rejection, self._current)

    def is_rejected(self, snapshot_version: str) -> bool:
        return snapshot_version in self._rejected

    def rejection(self, snapshot_version: str) -> Rejection | None:
        return self._rejected.get(snapshot_version)

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
