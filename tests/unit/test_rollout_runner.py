"""The rollout runner against real policy files, with Envoy statistics faked."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from control_plane.engine.controller import Controller
from control_plane.engine.health import HealthProber
from control_plane.operations.audit import AuditLog
from control_plane.operations.changes import Conflict, NotFound, PolicyChanges
from control_plane.operations.history import History
from control_plane.rollout.metrics import ClusterCounters, EnvoyStats, MetricsError, Reading
from control_plane.rollout.runner import RolloutRunner
from control_plane.sources.files import FileSource
from control_plane.xds.cache import SnapshotCache

POLICY = """\
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {name: m}
spec:
  versions:
    v3: {endpoints: ["127.0.0.1:8101"]}
    v4: {endpoints: ["127.0.0.1:8201"]}
  # the split the rollout edits
  traffic: {v3: 100}
  canary: {candidate: v4, steps: [10, 50], interval: 1s, min_requests: 10, failure_threshold: 2}
"""


class FakeStats(EnvoyStats):
    """Counters that grow by what a test says each interval serves."""

    def __init__(self) -> None:
        super().__init__(lambda: ["fake"])
        self.totals: dict[str, ClusterCounters] = {}
        self.down = False

    def serve(self, cluster: str, requests: int, errors: int = 0) -> None:
        old = self.totals.get(cluster, ClusterCounters())
        self.totals[cluster] = ClusterCounters(old.completed + requests, old.errors + errors, ())

    async def read(self, clusters: object) -> Reading:
        if self.down:
            raise MetricsError("no Envoy answered")
        return {"fake": dict(self.totals)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, clock: Clock, stats: FakeStats) -> RolloutRunner:
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    if not (policies / "m.yaml").exists():
        (policies / "m.yaml").write_text(POLICY)
    state = tmp_path / "state"
    source = FileSource([policies])
    controller = Controller(source, SnapshotCache())
    changes = PolicyChanges(controller, HealthProber(controller.set_unready), History(state / "history.jsonl"), source)
    changes.reload()
    return RolloutRunner(changes, AuditLog(state / "audit.jsonl"), stats, state, clock=clock)


async def interval(runner: RolloutRunner, clock: Clock, stats: FakeStats, cand: int, errors: int = 0) -> None:
    """One whole interval: a tick that opens it, traffic, a tick that checks it."""
    await runner.tick()
    stats.serve("m/v4", cand, errors)
    clock.now += 1.0
    await runner.tick()


async def test_steps_are_persisted_policy_changes_and_a_restart_resumes(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    assert runner.start("m", "alice").rollout.weight == 10
    text = (tmp_path / "policies" / "m.yaml").read_text()
    assert "traffic: {v3: 90, v4: 10}" in text and "# the split the rollout edits" in text
    await interval(runner, clock, stats, cand=20)
    assert runner.get("m").weight == 50

    restarted = make(tmp_path, clock, stats)  # a new control plane on the same files and state
    assert (restarted.get("m").phase.value, restarted.get("m").weight) == ("progressing", 50)
    await interval(restarted, clock, stats, cand=20)
    assert restarted.get("m").phase.value == "promoted"
    assert "traffic: {v4: 100}" in (tmp_path / "policies" / "m.yaml").read_text()
    audit = list(reversed(AuditLog(tmp_path / "state" / "audit.jsonl").read(limit=1000)))
    # The runner audits the transitions it makes on its own; verbs are audited by whoever calls
    # them (the admin API, through the same audited path: tests/unit/test_admin_api.py).
    assert [(r["who"], r["action"]) for r in audit] == [
        ("rollout", "rollout-step"),
        ("rollout", "rollout-promoted"),
    ]
    history = restarted.changes.history.entries("m")
    assert [dict(e.state.traffic) for e in history][-3:] == [{"v3": 90, "v4": 10}, {"v3": 50, "v4": 50}, {"v4": 100}]


async def test_errors_and_unreadable_statistics_roll_back(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    runner.start("m", "alice")
    await interval(runner, clock, stats, cand=20, errors=10)
    assert runner.get("m").failed_checks == 1
    stats.down = True
    clock.now += 1.0
    await runner.tick()
    r = runner.get("m")
    assert (r.phase.value, r.weight) == ("rolled_back", 0)
    assert "statistics unavailable" in r.checks[-1].reasons[0]
    assert "traffic: {v3: 100}" in (tmp_path / "policies" / "m.yaml").read_text()


async def test_a_hand_edit_during_the_rollout_stops_it_and_is_kept(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    runner.start("m", "alice")
    runner.changes.shift("m", {"v3": 70, "v4": 30}, who="bob", if_match=None)
    await interval(runner, clock, stats, cand=20)
    r = runner.get("m")
    assert r.phase.value == "failed" and "changed outside the rollout" in (r.reason or "")
    assert "traffic: {v3: 70, v4: 30}" in (tmp_path / "policies" / "m.yaml").read_text()


async def test_deadline_and_refused_verbs(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    with pytest.raises(NotFound):
        runner.pause("m", "alice")
    runner.start("m", "alice")
    with pytest.raises(Conflict):
        runner.start("m", "alice")
    runner.pause("m", "alice")
    clock.now += 3600.0
    await runner.tick()
    r = runner.get("m")
    assert (r.phase.value, r.weight) == ("failed", 0) and "pause_deadline" in (r.reason or "")


async def test_a_step_recorded_but_not_applied_is_finished_once_on_resume(tmp_path: Path) -> None:
    """The record is written before traffic moves; dying between the two leaves traffic one step behind."""
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    runner.start("m", "alice")
    policy = tmp_path / "policies" / "m.yaml"
    behind = policy.read_text()  # traffic at 10%
    await interval(runner, clock, stats, cand=20)
    assert runner.get("m").weight == 50
    policy.write_text(behind)  # as if the process died after the record, before the policy write

    resumed = make(tmp_path, clock, stats)
    assert resumed.get("m").weight == 50
    resumed.adopt()
    assert "traffic: {v3: 50, v4: 50}" in policy.read_text()
    resumed.adopt()  # idempotent: the step is not applied twice
    steps = [dict(e.state.traffic) for e in resumed.changes.history.entries("m")]
    assert steps[-2:] == [{"v3": 90, "v4": 10}, {"v3": 50, "v4": 50}]  # the revert, then one step
    await interval(resumed, clock, stats, cand=20)
    assert resumed.get("m").phase.value == "promoted"


async def test_traffic_changed_by_hand_is_not_adopted(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    runner = make(tmp_path, clock, stats)
    runner.start("m", "alice")
    policy = tmp_path / "policies" / "m.yaml"
    policy.write_text(
        POLICY.replace("v4: {endpoints", 'v5: {endpoints: ["127.0.0.1:8301"]}\n    v4: {endpoints').replace(
            "traffic: {v3: 100}", "traffic: {v3: 80, v5: 20}"
        )
    )
    resumed = make(tmp_path, clock, stats)
    resumed.adopt()
    assert "traffic: {v3: 80, v5: 20}" in policy.read_text()  # left alone; the next strict step fails, saying so


async def test_only_the_leader_runs_rollouts(tmp_path: Path) -> None:
    clock, stats = Clock(), FakeStats()
    leading = False
    policies = tmp_path / "policies"
    runner = make(tmp_path, clock, stats)
    runner.start("m", "alice")
    standby = RolloutRunner(
        runner.changes, runner.audit, stats, tmp_path / "state", clock=clock, tick_s=0.01, is_leader=lambda: leading
    )
    task = asyncio.create_task(standby.run())
    try:
        stats.serve("m/v4", 50)
        clock.now += 5
        await asyncio.sleep(0.1)
        assert "v4: 10" in (policies / "m.yaml").read_text()  # a standby changes nothing
        leading = True
        for _ in range(100):
            await asyncio.sleep(0.02)
            stats.serve("m/v4", 50)
            clock.now += 1.1
            if "v4: 50" in (policies / "m.yaml").read_text():
                break
        assert "v4: 50" in (policies / "m.yaml").read_text()  # the leader carries on from the record
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
