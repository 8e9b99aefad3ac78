"""Canary rollouts end to end: real Envoy, real traffic, Envoy's own statistics as the gates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.grpc_replicas import GrpcReplica, grpc_policy
from tests.support.load import Answer, Load
from tests.support.procs import ControlPlane, ModelService, wait_for
from tests.support.stack import Stack, retarget

pytestmark = pytest.mark.integration

MODEL = "sentiment"


def canary(steps: str, **gates: Any) -> str:
    fields: dict[str, Any] = {"candidate": "sentiment-v4", "baseline": "sentiment-v3", "steps": steps, "interval": "1s"}
    fields.update({"min_requests": 5, "failure_threshold": 2, "max_error_rate": 0.1, **gates})
    return "canary: {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def rollout(stack: Stack, verb: str | None = None) -> dict[str, Any]:
    url = f"{stack.control_plane.url}/v1/models/{MODEL}/rollout" + (f"/{verb}" if verb else "")
    response = httpx.request("POST" if verb else "GET", url, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_rollout(stack: Stack, what: str, ok: Any, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = rollout(stack)
        return r if ok(r) else None

    try:
        return wait_for(check, timeout=timeout, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}: last state {json.dumps(rollout(stack), indent=1)}") from None


def split_history(stack: Stack) -> list[tuple[str, dict[str, int]]]:
    h = httpx.get(f"{stack.control_plane.url}/v1/models/{MODEL}/history", timeout=10).json()["history"]
    return [(e["action"], e["traffic"]) for e in h]


@pytest.fixture
def stack(fresh_stack: Stack) -> Stack:
    return fresh_stack  # these tests change upstreams and state: a stack of their own each


def test_healthy_candidate_is_promoted_step_by_step_across_a_restart(stack: Stack) -> None:
    stack.apply(stack.policy(canary("[20, 50, 80]"), traffic="{sentiment-v3: 100}"))
    with Load(stack.url):
        started = rollout(stack, "start")
        assert (started["phase"], started["weight"]) == ("progressing", 20)
        wait_rollout(stack, "step 2 (50%)", lambda r: r["weight"] >= 50)

        # A restarted control plane resumes from the persisted state and the policy file.
        stack.control_plane.stop()
        stack.control_plane = ControlPlane(stack.policy_dir, stack.workdir, xds_port=stack.control_plane.xds_port)
        stack.control_plane.start()
        done = wait_rollout(stack, "promotion", lambda r: r["phase"] != "progressing")
    assert done["phase"] == "promoted", done
    assert "sentiment-v4: 100" in stack.policy_file.read_text()
    stack.wait_synced()
    assert stack.send(50) == Counter({(200, "sentiment-v4"): 50})

    steps = [t for a, t in split_history(stack) if a.startswith("rollout")]
    assert steps == [
        {"sentiment-v3": 80, "sentiment-v4": 20},
        {"sentiment-v3": 50, "sentiment-v4": 50},
        {"sentiment-v3": 20, "sentiment-v4": 80},
        {"sentiment-v4": 100},
    ]
    audit = httpx.get(f"{stack.control_plane.url}/v1/audit", params={"model": MODEL}, timeout=10).json()["records"]
    actions = [r["action"] for r in reversed(audit) if r["action"].startswith("rollout")]
    assert actions == ["rollout-start", "rollout-step", "rollout-step", "rollout-promoted"]
    assert all(c["candidate"]["requests"] >= 5 for c in done["checks"] if c["passed"])


def test_too_few_requests_fail_checks_and_roll_back(stack: Stack) -> None:
    stack.apply(stack.policy(canary("[20, 50]", failure_threshold=2), traffic="{sentiment-v3: 100}"))
    rollout(stack, "start")  # and no traffic at all: silence is not health
    done = wait_rollout(stack, "rollback", lambda r: r["phase"] != "progressing")
    assert done["phase"] == "rolled_back", done
    assert [c["passed"] for c in done["checks"]] == [False, False]
    assert "requests reached the candidate" in done["checks"][-1]["reasons"][0]
    assert split_history(stack)[-1][1] == {"sentiment-v3": 100}


def test_verbs_pause_resume_abort_and_promote(stack: Stack) -> None:
    stack.apply(stack.policy(canary("[20, 50]", interval="30s"), traffic="{sentiment-v3: 100}"))
    assert rollout(stack, "start")["weight"] == 20
    assert rollout(stack, "pause")["phase"] == "paused"
    assert httpx.post(f"{stack.control_plane.url}/v1/models/{MODEL}/rollout/pause").status_code == 409
    assert rollout(stack, "resume")["phase"] == "progressing"
    aborted = rollout(stack, "abort")
    assert (aborted["phase"], aborted["weight"]) == ("rolled_back", 0)
    stack.wait_synced()
    assert stack.send(20) == Counter({(200, "sentiment-v3"): 20})
    rollout(stack, "start")
    promoted = rollout(stack, "promote")
    assert (promoted["phase"], promoted["weight"]) == ("promoted", 100)
    stack.wait_synced()
    assert stack.send(20) == Counter({(200, "sentiment-v4"): 20})


# -- a candidate that starts failing, with real model services ---------------------------------


def _model_service(store: Path, version: str, workdir: Path) -> tuple[ModelService, str]:
    model_dir = store / "sentiment" / "sentiment-v3"
    service = ModelService(model_dir, workdir / f"{version}.log", "--served-version", version, "--max-delay-ms", "1")
    return service, service.address


def test_failing_candidate_is_rolled_back_and_only_its_share_errs(stack: Stack, model_store: Path) -> None:
    services = {v: _model_service(model_store, v, stack.workdir) for v in ("sentiment-v3", "sentiment-v4")}
    try:
        for proc, address in services.values():
            wait_for(
                lambda a=address: httpx.get(f"http://{a}/v2/health/ready").status_code == 200,  # type: ignore[misc]
                timeout=120,
                what=f"model service {address} ({proc.log_path})",
            )
        policy = stack.policy(canary("[25, 50, 75]"), traffic="{sentiment-v3: 100}")
        retarget(stack, policy, {v: address for v, (_, address) in services.items()})
        with Load(stack.url) as load:
            rollout(stack, "start")
            wait_rollout(stack, "one passed check", lambda r: r["weight"] >= 50)
            fault_at = load.mark()
            candidate = f"http://{services['sentiment-v4'][1]}"
            httpx.post(f"{candidate}/admin/fault", json={"error_rate": 1.0}).raise_for_status()
            done = wait_rollout(stack, "rollback", lambda r: r["phase"] != "progressing")
            stack.wait_synced()
            back_at = load.mark()
            wait_for(lambda: load.mark() >= back_at + 100, what="100 requests after the rollback")
        assert done["phase"] == "rolled_back", done
        # The rollback came after failure_threshold failed checks in a row, none earlier.
        assert [c["passed"] for c in done["checks"]][-2:] == [False, False]
        assert "error rate" in done["reason"]

        before, window, after = load.answers[:fault_at], load.answers[fault_at:back_at], load.answers[back_at:]
        assert all(a.status == 200 for a in before)
        errors = [a for a in window if a.status != 200]
        assert errors, "the fault never showed"
        assert {a.version for a in errors} == {"sentiment-v4"}  # only the candidate's share failed
        assert any(a.status == 200 and a.version == "sentiment-v3" for a in window)
        assert all(a == after[0] for a in after) and after[0].status == 200 and after[0].version == "sentiment-v3"
        print(
            f"\nfault window: {len(window)} requests, {len(errors)} errors "
            f"({len(errors) / len(window):.0%}), all from sentiment-v4; {len(after)} after rollback, 0 errors"
        )
    finally:
        for proc, _ in services.values():
            proc.stop()


def test_a_candidate_failing_only_grpc_calls_is_rolled_back(stack: Stack, model_store: Path) -> None:
    """A failed gRPC call is HTTP 200 to Envoy's cluster counters; the gate counts it all the same."""
    model_dir = model_store / "sentiment" / "sentiment-v3"
    replicas = {v: GrpcReplica(model_dir, stack.workdir, v) for v in ("sentiment-v3", "sentiment-v4")}
    try:
        for replica in replicas.values():
            replica.service.wait_ready()
        stack.apply(
            grpc_policy(stack.listener_port, replicas, f"traffic: {{sentiment-v3: 100}}\n{canary('[25, 50, 75]')}")
        )
        with Load(stack.url, grpc=True) as load:
            wait_for(lambda: load.mark() > 0, what="the first gRPC answer")
            rollout(stack, "start")
            wait_rollout(stack, "one passed check", lambda r: r["weight"] >= 50)
            fault_at = load.mark()
            candidate = replicas["sentiment-v4"].service.url
            httpx.post(f"{candidate}/admin/fault", json={"error_rate": 1.0}).raise_for_status()
            done = wait_rollout(stack, "rollback", lambda r: r["phase"] != "progressing")
            stack.wait_synced()
            back_at = load.mark()
            wait_for(lambda: load.mark() >= back_at + 50, what="50 calls after the rollback")
        assert done["phase"] == "rolled_back", done
        assert "error rate" in done["reason"]
        assert all(a.status == 200 for a in load.answers[:fault_at])
        assert any(a.status != 200 for a in load.answers[fault_at:back_at]), "the fault never showed"
        assert set(load.answers[back_at:]) == {Answer(200, "sentiment-v3")}
    finally:
        for replica in replicas.values():
            replica.service.stop()
