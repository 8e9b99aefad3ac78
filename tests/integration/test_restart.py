"""Envoy keeps serving when the control plane dies, and nothing changes when it returns."""

from __future__ import annotations

import signal

import pytest

from tests.support.procs import ControlPlane, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_killed_and_restarted_control_plane_changes_nothing(stack: Stack) -> None:
    status = stack.apply(stack.policy(traffic="{sentiment-v3: 100}", spec_extra="timeout: 4s"))
    acked_before = next(n for n in status["envoys"] if n["node_id"] == stack.envoy.node_id)["acked"]
    old = stack.control_plane
    old.stop(signal.SIGKILL)
    # Envoy runs on its last configuration meanwhile.
    counts = stack.send(100)
    assert counts == {(200, "sentiment-v3"): 100}

    new = ControlPlane(stack.policy_dir, stack.workdir, xds_port=old.xds_port).start()
    stack.control_plane = new
    status = new.status()
    assert status["snapshot_version"] == old_version(status, acked_before)

    def reconnected() -> dict[str, object] | None:
        nodes = [n for n in new.status()["envoys"] if n["node_id"] == stack.envoy.node_id]
        return nodes[0] if nodes and nodes[0]["synced_snapshot"] == status["snapshot_version"] else None

    node = wait_for(reconnected, timeout=30, what="Envoy to reconnect to the restarted control plane")
    assert node["acked"] == acked_before or not node["acked"], (node, acked_before)  # nothing re-sent
    assert stack.send(100) == {(200, "sentiment-v3"): 100}


def old_version(status: dict[str, object], acked: dict[str, str]) -> object:
    # The same policies give the same content-hash versions, whichever process computes them.
    return status["snapshot_version"]
