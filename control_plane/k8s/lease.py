"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Several replicas of the control plane may run; only one should write status and drive
rollouts. They agree through one Lease object: its ``holderIdentity`` names the leader,
who rewrites ``renewTime`` every ``retry_period_s``. Everyone else polls it, and takes it
over once it has not changed for ``leaseDurationSeconds``.

Two properties make this safe without synchronised clocks or a lock service:

- **Optimistic concurrency.** Every write is a replace carrying the resourceVersion that
  was read; if anyone wrote in between, the API server answers ``409 Conflict`` and the
  write is lost, so two candidates racing for an expired lease cannot both win.
- **Expiry on the observer's clock.** A candidate never compares the holder's
  ``renewTime`` with its own clock (the two may be skewed). It notes *when it saw* the
  record change, on its own clock, and treats the lease as expired ``leaseDurationSeconds``
  after that; the holder, in turn, steps down if it has not renewed within
  ``renew_deadline_s`` (shorter than the lease duration), so it stops acting as leader
  before anyone can consider its lease expired.

On cancellation the leader releases the lease (empty holder, 1 s duration, as client-go's
``ReleaseOnCancel``) so a successor takes over at once instead of waiting out the lease.
Times in the record are RFC 3339 MicroTime (``2026-12-04T12:00:00.000000Z``), always with
six fraction digits: the API server parses MicroTime with a fixed ``.000000`` layout,
while lightkube's encoder drops the fraction of a whole second, so times are written as
strings rather than datetimes.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)

JITTER = 0.2  # candidates spread their polls by up to 20% of retry_period, so they do not collide every time
RELEASED_DURATION_S = 1  # what a released lease says, as client-go writes it

Callback = Callable[[], Awaitable[None] | None]


def format_micro_time(t: float) -> str:
    """A Unix time as Kubernetes MicroTime: UTC, exactly six fraction digits, ``Z``."""
    moment = datetime.datetime.fromtimestamp(t, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(value: str | datetime.datetime) -> float:
    """A MicroTime (or any RFC 3339 time, or the datetime lightkube decoded one into) as a Unix time."""
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


@dataclass(frozen=True)
class Record:
    """The part of a Lease that leader election reads and writes."""

    holder: str | None
    lease_duration_s: float
    acquire_time: float | None
    renew_time: float | None
    transitions: int

    @classmethod
    def of(cls, lease: Lease, default_duration_s: float) -> Record:
        spec = lease.spec or LeaseSpec()
        return cls(
            holder=spec.holderIdentity or None,
            lease_duration_s=float(spec.leaseDurationSeconds or default_duration_s),
            acquire_time=parse_micro_time(spec.acquireTime) if spec.acquireTime is not None else None,
            renew_time=parse_micro_time(spec.renewTime) if spec.renewTime is not None else None,
            transitions=int(spec.leaseTransitions or 0),
        )

    def spec(self) -> LeaseSpec:
        # The times go to lightkube as preformatted strings (see the module docstring);
        # msgspec encodes a str field as given, whatever the annotation says.
        return LeaseSpec(
            holderIdentity=self.holder or "",
            leaseDurationSeconds=max(1, round(self.lease_duration_s)),
            acquireTime=cast(Any, format_micro_time(self.acquire_time)) if self.acquire_time is not None else None,
            renewTime=cast(Any, format_micro_time(self.renew_time)) if self.renew_time is not None else None,
            leaseTransitions=self.transitions,
        )


def held_by_other(record: Record, identity: str, observed_at: float, now: float) -> bool:
    """Whether someone else holds the lease and it has not expired, judged on our own clock.

    ``observed_at`` is when we saw this record change (our clock), not its renewTime (theirs).
    """
    if not record.holder or record.holder == identity:
        return False
    return now < observed_at + record.lease_duration_s


def next_record(current: Record | None, identity: str, lease_duration_s: float, now: float) -> Record:
    """What we write to hold the lease: a renewal keeps acquireTime, a takeover counts a transition."""
    if current is not None and current.holder == identity:
        return Record(identity, lease_duration_s, current.acquire_time or now, now, current.transitions)
    transitions = 0 if current is None else current.transitions + 1
    return Record(identity, lease_duration_s, now, now, transitions)


class LeaderElection:
    """One candidate for the leadership named by a Lease; :meth:`run` campaigns until cancelled."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: float = 15,
        renew_deadline_s: float = 10,
        retry_period_s: float = 2,
        clock: Callable[[], float] = time.time,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        release_on_cancel: bool = True,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty: an empty holderIdentity means a released lease")
        # The same checks as client-go: a leader must give up before its lease can expire
        # for anyone else, and must get a few attempts at renewing before that.
        if not lease_duration_s > renew_deadline_s:
            raise ValueError("lease_duration_s must be greater than renew_deadline_s")
        if not renew_deadline_s > retry_period_s * (1 + JITTER):
            raise ValueError("renew_deadline_s must be greater than retry_period_s (with jitter)")
        if retry_period_s <= 0:
            raise ValueError("retry_period_s must be positive")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.release_on_cancel = release_on_cancel
        self._clock = clock
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._leading = asyncio.Event()
        self._observed: Record | None = None
        self._observed_at = 0.0  # our clock, when _observed last changed
        self._version: str | None = None  # resourceVersion of the Lease as last read or written

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    @property
    def leader(self) -> str | None:
        """The holder in the record last observed (None before the first read or when released)."""
        return self._observed.holder if self._observed is not None else None

    async def wait_until_leading(self) -> None:
        await self._leading.wait()

    async def run(self) -> None:
        """Acquire, renew, and after losing the lease acquire again, until cancelled."""
        try:
            while True:
                await self._acquire()
                await self._set_leading(True)
                await self._renew()
                await self._set_leading(False)
        except asyncio.CancelledError:
            if self.is_leader:
                if self.release_on_cancel:
                    await self._release()
                await self._set_leading(False)
            raise

    # --- the campaign ----------------------------------------------------------------------

    async def _acquire(self) -> None:
        # Polling is the protocol: candidates learn of an expired lease only by reading it.
        while True:
            if await self._attempt():
                break
            await asyncio.sleep(self.retry_period_s * (1 + random.random() * JITTER))
        log.info("%s acquired lease %s/%s", self.identity, self.namespace, self.name)

    async def _renew(self) -> None:
        """Renew every retry_period; return (stepping down) once renewal cannot succeed in time."""
        last_renewed = self._clock()
        while True:
            await asyncio.sleep(self.retry_period_s)
            while True:
                remaining = last_renewed + self.renew_deadline_s - self._clock()
                if remaining <= 0:
                    log.warning(
                        "%s could not renew lease %s/%s within %ss; stepping down",
                        self.identity,
                        self.namespace,
                        self.name,
                        self.renew_deadline_s,
                    )
                    return
                started = self._clock()
                try:
                    # A hung request must not hold us past the deadline as a leader.
                    async with asyncio.timeout(remaining):
                        renewed = await self._attempt()
                except TimeoutError:
                    log.warning("%s: renewing lease %s/%s timed out", self.identity, self.namespace, self.name)
                    continue
                if renewed:
                    last_renewed = started  # what we wrote as renewTime: observers count from no earlier
                    break
                if self._observed is not None and self._observed.holder not in (None, self.identity):
                    log.warning("%s lost lease %s/%s to %s", self.identity, self.namespace, self.name, self.leader)
                    return
                left = last_renewed + self.renew_deadline_s - self._clock()
                await asyncio.sleep(min(self.retry_period_s, max(0.0, left)))

    async def _attempt(self) -> bool:
        """One try to acquire or renew; False when someone else holds it or the write lost a race."""
        try:
            return await self._try_acquire_or_renew()
        except ApiError as exc:
            log.warning(
                "lease %s/%s: API error %s %s; retrying", self.namespace, self.name, exc.status.code, exc.status.message
            )
        except Exception as exc:  # network errors and anything else: the campaign goes on
            log.warning("lease %s/%s: %s: %s; retrying", self.namespace, self.name, type(exc).__name__, exc)
        return False

    async def _try_acquire_or_renew(self) -> bool:
        now = self._clock()
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
            return await self._create(now)
        current = Record.of(lease, self.lease_duration_s)
        self._observe(current, lease, now)
        if held_by_other(current, self.identity, self._observed_at, now):
            return False
        wanted = next_record(current, self.identity, self.lease_duration_s, now)
        lease.spec = wanted.spec()
        try:
            written = await self.client.replace(lease)
        except ApiError as exc:
            if exc.status.code == 409:  # someone else wrote first; read again next time
                log.info("%s lost a write race for lease %s/%s", self.identity, self.namespace, self.name)
                return False
            raise
        self._observe(wanted, written, self._clock())
        return True

    async def _create(self, now: float) -> bool:
        wanted = next_record(None, self.identity, self.lease_duration_s, now)
        lease = Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=wanted.spec())
        try:
            created = await self.client.create(lease)
        except ApiError as exc:
            if exc.status.code == 409:  # another candidate created it first
                return False
            raise
        self._observe(wanted, created, self._clock())
        return True

    def _observe(self, record: Record, lease: Lease, now: float) -> None:
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        self._version = lease.metadata.resourceVersion if lease.metadata is not None else None

    async def _release(self) -> None:
        """Hand the lease back (empty holder) so that a successor need not wait for it to expire."""
        if self._observed is None or self._observed.holder != self.identity or self._version is None:
            return
        now = self._clock()
        released = Record(None, RELEASED_DURATION_S, now, now, self._observed.transitions)
        lease = Lease(
            metadata=ObjectMeta(name=self.name, namespace=self.namespace, resourceVersion=self._version),
            spec=released.spec(),
        )
        try:
            # Bounded: cancellation is waiting on us. A lost race (409) means it is not ours anyway.
            async with asyncio.timeout(self.retry_period_s):
                await self.client.replace(lease)
            self._observed = released
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as exc:
            log.warning("%s could not release lease %s/%s: %s", self.identity, self.namespace, self.name, exc)

    async def _set_leading(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        callback = self._on_started if leading else self._on_stopped
        if callback is None:
            return
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("leader election callback failed")


__all__ = [
    "LeaderElection",
    "Record",
    "format_micro_time",
    "held_by_other",
    "next_record",
    "parse_micro_time",
]
