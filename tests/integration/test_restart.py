"""Envoy keeps serving when the control plane dies, and nothing changes when it returns."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.support.procs import ControlPlane, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_killed_and_restarted_control_plane_changes_nothing(stack: Stack) -> None:
    status = stack.apply(stack.policy(traffic="{sentiment-v3: 100}", spec_extra="timeout: 4s"))
    version_before = status["snapshot_version"]
    pushes_before = envoy_updates(stack)
    old = stack.control_plane
    old.stop(signal.SIGKILL)
    # Envoy runs on its last configuration meanwhile.
    counts = stack.send(100)
    assert counts == {(200, "sentiment-v3"): 100}

    new = ControlPlane(stack.policy_dir, stack.workdir, xds_port=old.xds_port).start()
    stack.control_plane = new
    status = new.status()
    # The same policies give the same content-hash versions, whichever process computes them.
    assert status["snapshot_version"] == version_before

    def reconnected() -> dict[str, object] | None:
        nodes = [n for n in new.status()["envoys"] if n["node_id"] == stack.envoy.node_id]
        return nodes[0] if nodes and nodes[0]["synced_snapshot"] == status["snapshot_version"] else None

    node = wait_for(reconnected, timeout=30, what="Envoy to reconnect to the restarted control plane")
    # Envoy reported the versions it runs; the restarted control plane found them current.
    assert node["synced_snapshot"] == version_before
    # Envoy applied no new configuration: every xDS update it took after reconnecting was a no-op.
    assert envoy_updates(stack) == pushes_before
    assert stack.send(100) == {(200, "sentiment-v3"): 100}


def envoy_updates(stack: Stack) -> dict[str, int]:
    """How many xDS updates Envoy has applied, per resource type (its own counters)."""
    stats = httpx.get(f"{stack.envoy.admin}/stats?filter=update_success$", timeout=5).text
    counters = {}
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if name.endswith(".update_success"):
            counters[name] = int(value)
    return counters
