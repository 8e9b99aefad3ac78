"""Endpoint readiness as the control plane sees it, from its own probes.

Envoy health-checks endpoints too, but only the control plane can take weight
away from a version: Envoy answers ``503 no healthy upstream`` for the share of
a split sent to a cluster with no healthy host.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from control_plane.ir import Endpoint, Model, RoutingIntent
from control_plane.translate.names import cluster_name

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EndpointHealth:
    healthy: bool
    successes: int = 0
    failures: int = 0
    last_error: str | None = None
    checked_at: float | None = None


class HealthProber:
    """Probes every endpoint of every version that declares a health check.

    ``on_change`` is called with the new set of unready cluster names whenever
    it changes. Versions without a ``health_check`` are always ready.
    """

    def __init__(self, on_change: Callable[[frozenset[str]], None], tick_s: float = 0.25) -> None:
        self._on_change = on_change
        self._tick_s = tick_s
        self._intent: RoutingIntent | None = None
        self._health: dict[tuple[str, int, str], EndpointHealth] = {}
        self._due: dict[tuple[str, int, str], float] = {}
        self.unready: frozenset[str] = frozenset()
        self._client = httpx.AsyncClient(timeout=1.0, trust_env=False)

    def endpoint_health(self, model: Model, endpoint: Endpoint) -> EndpointHealth | None:
        if model.health_check is None:
            return None
        return self._health.get((endpoint.host, endpoint.port, model.health_check.path))

    def set_intent(self, intent: RoutingIntent) -> None:
        self._intent = intent

    async def probe_all(self) -> None:
        """One round over every endpoint, regardless of intervals (used at start-up)."""
        await self._probe(due_only=False)

    async def run(self) -> None:
        try:
            while True:
                await self._probe(due_only=True)
                await asyncio.sleep(self._tick_s)
        finally:
            await self._client.aclose()

    async def _probe(self, *, due_only: bool) -> None:
        intent = self._intent
        if intent is None:
            return
        now = time.monotonic()
        jobs: dict[tuple[str, int, str], tuple[Endpoint, Model]] = {}
        for model in intent.models:
            if model.health_check is None:
                continue
            for version in model.versions:
                for endpoint in version.endpoints:
                    key = (endpoint.host, endpoint.port, model.health_check.path)
                    if key not in jobs and (not due_only or self._due.get(key, 0.0) <= now):
                        jobs[key] = (endpoint, model)
                        self._due[key] = now + model.health_check.interval_ms / 1000
        if jobs:
            await asyncio.gather(*(self._check(key, ep, model) for key, (ep, model) in jobs.items()))
        self._publish(intent)

    async def _check(self, key: tuple[str, int, str], endpoint: Endpoint, model: Model) -> None:
        hc = model.health_check
        assert hc is not None
        state = self._health.get(key)
        error: str | None = None
        try:
            response = await self._client.get(f"http://{endpoint.address}{hc.path}", timeout=hc.timeout_ms / 1000)
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if state is None:  # first probe decides at once; thresholds apply to changes
            state = self._health[key] = EndpointHealth(healthy=error is None)
        if error is None:
            state.successes, state.failures = state.successes + 1, 0
            # One success more than Envoy needs: Envoy probes on its own clock, and a
            # share given back before Envoy sees the host healthy is answered with 503s.
            if not state.healthy and state.successes > hc.healthy_threshold:
                state.healthy = True
        else:
            state.successes, state.failures = 0, state.failures + 1
            if state.healthy and state.failures >= hc.unhealthy_threshold:
                state.healthy = False
        state.last_error = error
        state.checked_at = time.time()

    def _publish(self, intent: RoutingIntent) -> None:
        unready = set()
        for model in intent.models:
            for version in model.versions:
                if version.service is not None:  # its EndpointSlices say which endpoints are ready
                    continue
                health = [self.endpoint_health(model, e) for e in version.endpoints]
                if model.health_check is not None and not any(h is not None and h.healthy for h in health):
                    unready.add(cluster_name(model.name, version.name))
        if frozenset(unready) != self.unready:
            became = sorted(unready - self.unready)
            back = sorted(self.unready - unready)
            self.unready = frozenset(unready)
            if became:
                log.warning("no ready endpoint, weight withdrawn: %s", ", ".join(became))
            if back:
                log.info("ready again, weight restored: %s", ", ".join(back))
            self._on_change(self.unready)
