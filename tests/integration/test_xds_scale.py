"""bench/xds_scale.py at a reduced size: many simulated Envoys (SotW and delta on one control
plane) all converge, every one ACKs each split change, a split change pushes routes only,
and the control plane's own view (``/v1/envoys``) agrees that every client runs the
current snapshot. The benchmark's measurements (times, CPU, RSS) are not asserted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bench.xds_scale import measure_arm

pytestmark = pytest.mark.integration

CLIENTS, MODELS, CHANGES = 40, 10, 2


def test_every_simulated_envoy_acks_every_change(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def check_envoys(url: str) -> None:
        body = httpx.get(f"{url}/v1/envoys", timeout=10).json()
        seen["envoys"] = body["envoys"]

    arm = asyncio.run(measure_arm(MODELS, CLIENTS, 0.5, CHANGES, tmp_path, 120, after=check_envoys))
    assert arm.clients == CLIENTS and arm.delta_clients == CLIENTS // 2
    assert len(arm.changes) == CHANGES
    for change in arm.changes:
        # measure_arm raises unless every client ACKed the new routes.
        assert change.types_sent == ["RouteConfiguration"], "a split change pushed more than routes"
        assert change.bytes_per_client_sotw and change.bytes_per_client_delta
    envoys = seen["envoys"]
    assert isinstance(envoys, list) and len(envoys) == CLIENTS
    assert all(e["in_sync"] for e in envoys), [e for e in envoys if not e["in_sync"]]
