"""When Envoy rejects (NACKs) what the control plane accepted: the API shows what Envoy runs.

Validation mirrors Envoy's rules, so a NACK needs an Envoy that is stricter than
usual: its runtime lowers the RE2 program-size limit (admin `/runtime_modify`),
and a regex that passes our check (program size 11 <= 100) is refused by it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.procs import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

STRICT_RE2 = "re2.max_program_size.error_level=5"
RULE = """
rules:
  - name: beta
    match: {headers: {x-client: {regex: "beta-[a-z]+"}}}
    traffic: {sentiment-v4-large: 100}
"""


def models(stack: Stack) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{stack.control_plane.url}/v1/models", timeout=5).json()["models"]
    return found


def test_a_nack_rolls_the_served_state_back_and_says_why(fresh_stack: Stack) -> None:
    stack = fresh_stack
    served = stack.control_plane.status()["snapshot_version"]
    assert httpx.post(f"{stack.envoy.admin}/runtime_modify?{STRICT_RE2}", timeout=5).status_code == 200
    stack.write(stack.policy(traffic="{sentiment-v4: 100}", spec_extra=RULE))

    def rejected() -> dict[str, Any] | None:
        status = stack.control_plane.status()
        last = status["policy"]["last_rejected"]
        return status if last and "rejected snapshot" in last["errors"][0] else None

    status = wait_for(rejected, what="Envoy's NACK to reach the control plane")
    error = status["policy"]["last_rejected"]["errors"][0]
    assert "Envoy 'test-envoy' rejected snapshot" in error and "RE2 program size of 11" in error, error
    assert status["snapshot_version"] == served  # the cache fell back to what Envoy runs
    assert status["rejected_snapshots"] and "RE2 program size" in status["rejected_snapshots"][0]["error"]
    (model,) = models(stack)
    assert model["traffic"] == {"sentiment-v3": 90, "sentiment-v4": 10}, "the API shows the split Envoy runs"
    assert model["rules"] == []
    answered = {v for (code, v), _ in stack.send(40).items() if code == 200}
    assert answered <= {"sentiment-v3", "sentiment-v4"}
    # The same (rejected) files again are rejected at once, naming Envoy's reason.
    stack.write(stack.policy(traffic="{sentiment-v4: 100}", spec_extra=RULE) + "\n# touched\n")
    wait_for(
        lambda: stack.control_plane.status()["policy"]["last_reload"]["errors"][:1] != [error],
        what="the second reload",
    )
    again = stack.control_plane.status()["policy"]["last_rejected"]["errors"][0]
    assert "rejected this configuration" in again and "RE2 program size" in again, again
    # A configuration Envoy takes is applied as usual.
    stack.apply(stack.policy(traffic="{sentiment-v4: 100}"))
    assert models(stack)[0]["traffic"] == {"sentiment-v4": 100}
    assert {v for (code, v), _ in stack.send(20).items() if code == 200} == {"sentiment-v4"}
