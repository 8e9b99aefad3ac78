"""The rollout state machine, its gates and Envoy statistics arithmetic (pure functions)."""

from __future__ import annotations

import re

import pytest

from control_plane.rollout import machine
from control_plane.rollout.machine import Phase, Plan, TransitionError
from control_plane.rollout.metrics import ClusterCounters, Window, parse_stats, quantile, stats_filter, window

PLAN = Plan(
    candidate="v4",
    baseline="v3",
    weights=(10, 50),
    interval_s=1.0,
    max_error_rate=0.05,
    max_p99_ms=200.0,
    max_p99_ratio=2.0,
    min_requests=10,
    failure_threshold=2,
    progress_deadline_s=60.0,
    pause_deadline_s=600.0,
)
OK = Window(100, 0, 20.0)


def check(r: machine.Rollout, cand: Window, base: Window | None = OK, at: float = 1.0) -> machine.Rollout:
    return machine.after_check(r, machine.evaluate(PLAN, at, r.weight, cand, base))


def test_passing_checks_step_up_then_promote() -> None:
    r = machine.start("m", PLAN, 0.0)
    assert (r.phase, r.weight, r.deadline) == (Phase.PROGRESSING, 10, 60.0)
    r = check(r, OK, at=5.0)
    assert (r.phase, r.weight, r.deadline) == (Phase.PROGRESSING, 50, 65.0)
    r = check(r, OK)
    assert (r.phase, r.weight, r.deadline) == (Phase.PROMOTED, 100, None)
    assert PLAN.traffic(r.weight) == {"v4": 100}


def test_failures_in_a_row_roll_back_and_a_pass_resets_the_count() -> None:
    r = machine.start("m", PLAN, 0.0)
    r = check(r, Window(100, 10, 20.0))
    assert (r.phase, r.failed_checks) == (Phase.PROGRESSING, 1)
    r = check(r, OK)
    assert (r.weight, r.failed_checks) == (50, 0)
    r = check(r, Window(100, 10, 20.0))
    r = check(r, Window(100, 10, 20.0))
    assert (r.phase, r.weight) == (Phase.ROLLED_BACK, 0)
    assert "error rate 10.00% > 5.00%" in (r.reason or "")
    assert PLAN.traffic(r.weight) == {"v3": 100}


@pytest.mark.parametrize(
    ("cand", "base", "reason"),
    [
        (Window(9, 0, 1.0), OK, "only 9 requests"),  # too few is a failure, never a pass
        (Window(0, 0, None), OK, "only 0 requests"),
        (Window(100, 6, 1.0), OK, "error rate"),
        (Window(100, 0, 250.0), OK, "p99 250.0 ms > 200 ms"),
        (Window(100, 0, 50.0), Window(100, 0, 20.0), "2 x baseline"),
    ],
)
def test_gates(cand: Window, base: Window, reason: str) -> None:
    result = machine.evaluate(PLAN, 0.0, 10, cand, base)
    assert not result.passed
    assert any(reason in r for r in result.reasons), result.reasons


def test_relative_latency_is_not_judged_without_enough_baseline_requests() -> None:
    assert machine.evaluate(PLAN, 0.0, 90, Window(100, 0, 50.0), Window(3, 0, 1.0)).passed


def test_verbs_and_their_states() -> None:
    r = machine.start("m", PLAN, 0.0)
    paused = machine.pause(r, 10.0)
    assert (paused.phase, paused.deadline) == (Phase.PAUSED, 610.0)
    assert machine.after_check(paused, machine.evaluate(PLAN, 11, 10, OK, OK)) is paused  # no checks while paused
    with pytest.raises(TransitionError):
        machine.pause(paused, 11.0)
    resumed = machine.resume(paused, 20.0)
    assert (resumed.phase, resumed.deadline) == (Phase.PROGRESSING, 80.0)
    with pytest.raises(TransitionError):
        machine.resume(resumed, 21.0)
    assert machine.abort(resumed, 30.0).weight == 0
    promoted = machine.promote(resumed, 30.0)
    assert (promoted.phase, promoted.weight) == (Phase.PROMOTED, 100)
    for verb in (machine.abort, machine.promote):
        with pytest.raises(TransitionError):
            verb(promoted, 31.0)


def test_deadlines() -> None:
    r = machine.start("m", PLAN, 0.0)
    assert machine.expired(r, 59.0) is None
    late = machine.expired(r, 60.0)
    assert late is not None and (late.phase, late.weight) == (Phase.FAILED, 0)
    paused = machine.pause(r, 10.0)
    late = machine.expired(paused, 610.0)
    assert late is not None and "pause_deadline" in (late.reason or "")
    assert machine.expired(machine.promote(r, 1.0), 1e9) is None  # terminal: nothing to wait for
    # A restart does not count the control plane's downtime against the rollout.
    assert machine.resumed_after_restart(r, 100.0).deadline == 102.0


def test_state_round_trips_through_json() -> None:
    r = check(machine.start("m", PLAN, 0.0), Window(100, 10, 20.0))
    assert machine.Rollout.from_json(r.to_json()) == r


def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = ((1.0, 0), (5.0, 50), (10.0, 100))
    assert quantile(buckets, 0.5) == 5.0
    assert quantile(buckets, 0.99) == pytest.approx(5.0 + 5.0 * 49 / 50)
    assert quantile(((1.0, 0),), 0.99) is None


def test_window_is_the_difference_of_cumulative_readings() -> None:
    start = {"a": {"m/v4": ClusterCounters(100, 1, ((5.0, 90), (10.0, 100)))}}
    end = {
        "a": {"m/v4": ClusterCounters(200, 3, ((5.0, 100), (10.0, 200)))},
        "b": {"m/v4": ClusterCounters(999, 999, ())},  # not there at the start: left out
    }
    w = window(start, end, ["m/v4"])
    assert (w.requests, w.errors) == (100, 2)
    assert w.p99_ms == pytest.approx(5.0 + 5.0 * (99 - 10) / 90)
    # An Envoy that restarted (counters went down) contributes what it counted since.
    restarted = {"a": {"m/v4": ClusterCounters(7, 0, ((5.0, 7), (10.0, 7)))}}
    assert window(start, restarted, ["m/v4"]).requests == 7


def test_window_sums_a_versions_http_and_grpc_clusters() -> None:
    start = {"a": {"m/v4": ClusterCounters(10, 0, ((5.0, 10),)), "m/v4/grpc": ClusterCounters(5, 1, ((5.0, 5),))}}
    end = {"a": {"m/v4": ClusterCounters(20, 1, ((5.0, 20),)), "m/v4/grpc": ClusterCounters(35, 4, ((5.0, 35),))}}
    w = window(start, end, ["m/v4", "m/v4/grpc"])
    assert (w.requests, w.errors) == (40, 4)


def test_parse_envoy_json_stats() -> None:
    body = {
        "stats": [
            {"name": "cluster.m/v4.upstream_rq_completed", "value": 12},
            {"name": "cluster.m/v4.upstream_rq_5xx", "value": 2},
            {"name": "cluster.m/v3.upstream_rq_completed", "value": 5},
            {
                "histograms": [
                    {
                        "name": "cluster.m/v4.upstream_rq_time",
                        "buckets": [{"upper_bound": 0.5, "cumulative": 1}, {"upper_bound": 1, "cumulative": 12}],
                    }
                ]
            },
        ]
    }
    parsed = parse_stats(body)
    assert parsed["m/v4"] == ClusterCounters(12, 2, ((0.5, 1), (1.0, 12)))
    assert parsed["m/v3"] == ClusterCounters(5, 0, ())


def test_failed_grpc_calls_count_as_errors_though_envoy_saw_http_200() -> None:
    call = "cluster.m/v4/grpc.grpc.inference.GRPCInferenceService.ModelInfer"
    body = {
        "stats": [
            {"name": "cluster.m/v4/grpc.upstream_rq_completed", "value": 10},
            {"name": "cluster.m/v4/grpc.upstream_rq_5xx", "value": 1},  # the reset answered UNAVAILABLE
            {"name": f"{call}.13", "value": 3},  # INTERNAL
            {"name": f"{call}.14", "value": 1},  # UNAVAILABLE
            {"name": f"{call}.5", "value": 2},  # NOT_FOUND: the caller's mistake
            {"name": f"{call}.0", "value": 4},
        ]
    }
    assert parse_stats(body)["m/v4/grpc"] == ClusterCounters(10, 4, ())
    wanted = re.compile(stats_filter(["m/v4/grpc"]))
    assert [s["name"] for s in body["stats"] if wanted.match(s["name"])] == [
        "cluster.m/v4/grpc.upstream_rq_completed",
        "cluster.m/v4/grpc.upstream_rq_5xx",
        f"{call}.13",
        f"{call}.14",
    ]
