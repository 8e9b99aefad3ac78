"""Leader election over a Lease, against the API server emulator (optimistic concurrency included)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lightkube import AsyncClient

from control_plane.k8s.lease import (
    LeaderElection,
    Record,
    format_micro_time,
    held_by_other,
    next_record,
    parse_micro_time,
)
from tests.support.kube_emulator import LEASES, KubeEmulator, api_error, kube_emulator

NS = "ml"
NAME = "switchyard-leader"
WAIT_S = 10.0  # generous bound on every wait; passing tests finish far sooner
FAST: dict[str, float] = {"lease_duration_s": 1.0, "renew_deadline_s": 0.6, "retry_period_s": 0.1}
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
async def kube() -> AsyncIterator[KubeEmulator]:
    async with kube_emulator() as k:
        yield k


@contextlib.asynccontextmanager
async def running(*electors: LeaderElection) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(e.run(), name=e.identity) for e in electors]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def elector(kube: KubeEmulator, identity: str, **kwargs: Any) -> LeaderElection:
    options: dict[str, Any] = {**FAST, **kwargs}
    return LeaderElection(kube.client(NS), NS, NAME, identity, **options)


def stored_lease(kube: KubeEmulator) -> dict[str, Any]:
    return dict(kube.emulator.objects[LEASES, NS, NAME].raw)


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (state of other tasks, with nothing to wait on) for up to WAIT_S."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def sample_leaders(electors: list[LeaderElection], seconds: float) -> list[int]:
    """How many electors consider themselves leader, sampled every few milliseconds."""
    counts = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        counts.append(sum(e.is_leader for e in electors))
        await asyncio.sleep(0.005)
    return counts


async def test_single_elector_becomes_leader(kube: KubeEmulator) -> None:
    started: list[str] = []

    async def on_started() -> None:
        started.append("started")

    one = elector(kube, "a", on_started_leading=on_started)
    async with running(one):
        async with asyncio.timeout(WAIT_S):
            await one.wait_until_leading()
        assert one.is_leader and one.leader == "a"
        assert started == ["started"]
        spec = stored_lease(kube)["spec"]
        assert spec["holderIdentity"] == "a"
        assert spec["leaseDurationSeconds"] == 1
        assert spec["leaseTransitions"] == 0
        assert MICRO_TIME.match(spec["renewTime"]) and MICRO_TIME.match(spec["acquireTime"])
        # It keeps renewing: renewTime moves on, acquireTime does not.
        first = spec["renewTime"]
        await eventually(lambda: stored_lease(kube)["spec"]["renewTime"] != first)
        assert stored_lease(kube)["spec"]["acquireTime"] == spec["acquireTime"]
        assert one.is_leader


async def test_two_electors_one_leader(kube: KubeEmulator) -> None:
    electors = [elector(kube, "a"), elector(kube, "b")]
    async with running(*electors):
        await eventually(lambda: any(e.is_leader for e in electors))
        counts = await sample_leaders(electors, 1.5)
        assert set(counts) == {1}, "exactly one leader, stable while it renews"
        leader = next(e for e in electors if e.is_leader)
        follower = next(e for e in electors if not e.is_leader)
        assert follower.leader == leader.identity
        assert stored_lease(kube)["spec"]["holderIdentity"] == leader.identity


async def test_release_on_cancel_hands_over_at_once(kube: KubeEmulator) -> None:
    # A lease so long that only a release lets the follower in within the wait.
    slow = {"lease_duration_s": 60.0, "renew_deadline_s": 30.0, "retry_period_s": 0.1}
    stopped: list[str] = []
    first = elector(kube, "a", on_stopped_leading=lambda: stopped.append("a"), **slow)
    second = elector(kube, "b", **slow)
    async with running(first) as (first_task,):
        async with asyncio.timeout(WAIT_S):
            await first.wait_until_leading()
        async with running(second):
            await eventually(lambda: second.leader == "a")
            first_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await first_task
            assert not first.is_leader and stopped == ["a"]
            async with asyncio.timeout(WAIT_S):
                await second.wait_until_leading()
            spec = stored_lease(kube)["spec"]
            assert spec["holderIdentity"] == "b"
            assert spec["leaseTransitions"] == 1


async def test_crashed_leader_is_replaced_after_the_lease_expires(kube: KubeEmulator) -> None:
    first = elector(kube, "a", release_on_cancel=False)
    second = elector(kube, "b")
    async with running(first) as (first_task,):
        async with asyncio.timeout(WAIT_S):
            await first.wait_until_leading()
        async with running(second):
            await eventually(lambda: second.leader == "a")
            first_task.cancel()  # a crash: no release, the lease just stops being renewed
            with contextlib.suppress(asyncio.CancelledError):
                await first_task
            last_renewal = parse_micro_time(stored_lease(kube)["spec"]["renewTime"])
            assert stored_lease(kube)["spec"]["holderIdentity"] == "a"
            async with asyncio.timeout(WAIT_S):
                await second.wait_until_leading()
            spec = stored_lease(kube)["spec"]
            assert spec["holderIdentity"] == "b"
            assert spec["leaseTransitions"] == 1
            # The takeover waited out the lease, measured from when b saw a's last renewal.
            assert parse_micro_time(spec["acquireTime"]) >= last_renewal + FAST["lease_duration_s"]


async def test_racing_takeover_has_one_winner(kube: KubeEmulator) -> None:
    """Both read the same released lease, both write with its resourceVersion: the second gets 409."""
    holder = elector(kube, "old")
    assert await holder._try_acquire_or_renew()
    await holder._release()

    racers = [elector(kube, "a"), elector(kube, "b")]
    barrier = asyncio.Barrier(2)
    for racer in racers:
        original = racer.client.get

        async def get_then_wait(*args: Any, _get: Callable[..., Awaitable[Any]] = original, **kwargs: Any) -> Any:
            lease = await _get(*args, **kwargs)
            await barrier.wait()  # neither writes before both have read
            return lease

        racer.client.get = get_then_wait  # type: ignore[method-assign]

    async with asyncio.timeout(WAIT_S):
        results = await asyncio.gather(*(r._try_acquire_or_renew() for r in racers))
    assert sorted(results) == [False, True]
    winner = racers[results.index(True)]
    assert stored_lease(kube)["spec"]["holderIdentity"] == winner.identity
    conflicts = [
        r
        for r in kube.emulator
        if r.method == kmock.method.PUT and r.data["spec"]["holderIdentity"] in {"a", "b"} - {winner.identity}
    ]
    assert len(conflicts) == 1, "the loser wrote, and its write was refused"


async def test_many_electors_never_two_leaders(kube: KubeEmulator) -> None:
    electors = [elector(kube, name) for name in "abcd"]
    async with running(*electors) as tasks:
        await eventually(lambda: any(e.is_leader for e in electors))
        counts = await sample_leaders(electors, 0.5)
        # Kill leaders one after another (no release): each takeover races the others.
        for _ in range(2):
            leader = next(i for i, e in enumerate(electors) if e.is_leader)
            electors[leader].release_on_cancel = False
            tasks[leader].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[leader]
            alive = [e for i, e in enumerate(electors) if not tasks[i].done()]
            loop = asyncio.get_running_loop()
            end = loop.time() + WAIT_S
            while not any(e.is_leader for e in alive) and loop.time() < end:
                counts.append(sum(e.is_leader for e in electors))
                await asyncio.sleep(0.005)
            counts += await sample_leaders(electors, 0.3)
        assert max(counts) == 1
        assert sum(e.is_leader for e in electors) == 1


async def test_api_errors_are_survived(kube: KubeEmulator) -> None:
    failing = False

    def maybe_fail(request: kmock.Request) -> Any:
        if failing:
            raise api_error(500, "InternalError", "etcdserver: request timed out")
        raise NotImplementedError  # kmock: not answered here, the emulator serves it

    kube.emulator[kube.emulator.resource(LEASES)] << maybe_fail
    transitions: list[str] = []
    one = elector(
        kube,
        "a",
        on_started_leading=lambda: transitions.append("started"),
        on_stopped_leading=lambda: transitions.append("stopped"),
    )
    async with running(one) as (task,):
        async with asyncio.timeout(WAIT_S):
            await one.wait_until_leading()
        failing = True
        await eventually(lambda: not one.is_leader)  # it could not renew before the deadline
        await asyncio.sleep(0.3)
        assert not task.done(), "the elector keeps running through API errors"
        failing = False
        async with asyncio.timeout(WAIT_S):
            await one.wait_until_leading()
        assert transitions == ["started", "stopped", "started"]
        assert stored_lease(kube)["spec"]["leaseTransitions"] == 0, "it kept its own lease"


async def test_errors_before_the_first_lease_are_survived(kube: KubeEmulator) -> None:
    kube.emulator["post", kube.emulator.resource(LEASES)][:3] << api_error(503, "ServiceUnavailable", "starting")
    one = elector(kube, "a")
    async with running(one) as (task,):
        async with asyncio.timeout(WAIT_S):
            await one.wait_until_leading()
        assert not task.done()


async def test_unreachable_server_is_survived() -> None:
    client = AsyncClient(config=KubeEmulator(emulator=None, url="http://127.0.0.1:9").config(NS))  # type: ignore[arg-type]
    one = LeaderElection(client, NS, NAME, "a", **FAST)
    async with running(one) as (task,):
        await asyncio.sleep(0.3)
        assert not task.done() and not one.is_leader
    await client.close()


def test_invalid_timings_are_refused(kube: KubeEmulator) -> None:
    with pytest.raises(ValueError, match="renew_deadline"):
        elector(kube, "a", lease_duration_s=1.0, renew_deadline_s=1.0)
    with pytest.raises(ValueError, match="retry_period"):
        elector(kube, "a", renew_deadline_s=0.6, retry_period_s=0.55)
    with pytest.raises(ValueError, match="identity"):
        elector(kube, "")


# --- pure functions ------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False)  # 1970 .. 2100


@given(times)
def test_micro_time_round_trip(t: float) -> None:
    text = format_micro_time(t)
    assert MICRO_TIME.match(text)
    assert abs(parse_micro_time(text) - t) <= 1e-6
    assert format_micro_time(parse_micro_time(text)) == text


def test_micro_time_keeps_the_fraction_of_whole_seconds() -> None:
    assert format_micro_time(1_796_385_600.0) == "2026-12-04T12:00:00.000000Z"
    assert parse_micro_time("2026-12-04T12:00:00Z") == 1_796_385_600.0


holders = st.sampled_from([None, "me", "other"])
durations = st.floats(min_value=1, max_value=3600)


@given(holders, durations, times, st.floats(min_value=-10_000, max_value=10_000))
def test_expiry_decision(holder: str | None, duration: float, observed: float, delta: float) -> None:
    record = Record(holder, duration, None, observed, 0)
    held = held_by_other(record, "me", observed, observed + delta)
    if holder in (None, "me"):
        assert not held, "a released lease or our own is never held against us"
    else:
        assert held == (delta < duration)


@given(holders, durations, times, st.integers(min_value=0, max_value=1000))
def test_next_record(holder: str | None, duration: float, now: float, transitions: int) -> None:
    current = Record(holder, duration, 1.0, 2.0, transitions)
    wanted = next_record(current, "me", 15, now)
    assert (wanted.holder, wanted.renew_time, wanted.lease_duration_s) == ("me", now, 15)
    if holder == "me":
        assert (wanted.acquire_time, wanted.transitions) == (1.0, transitions)
    else:
        assert (wanted.acquire_time, wanted.transitions) == (now, transitions + 1)
    assert next_record(None, "me", 15, now).transitions == 0
