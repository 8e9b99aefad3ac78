"""The worker side: one consumer in its version's group, inside each replica.

Delivery is at-least-once and results are idempotent by job id:

* An entry is acknowledged only in the same atomic step that stores the job's
  result (or its final failure), so a replica that dies mid-job leaves the entry
  pending. While a job runs, its worker heart-beats the entry (XCLAIM to itself);
  once a dead worker's entry has been idle for the visibility timeout, any
  replica's XAUTOCLAIM takes it over and runs it again.
* A second completion of the same job stores nothing (scripts.COMPLETE), so
  duplicates never reach the results or owe a second webhook. The webhook is
  put in the outbox by that same step; delivery.py sends it.
* Jobs go through the replica's own batcher at background priority: they fill
  the slots live requests leave over and never push a live request out.
* Jobs are fetched, started and completed in chunks (one XREADGROUP, one
  pipelined START round, one pipelined COMPLETE round per chunk) and a chunk's
  jobs go into the batcher together, so a job costs a fraction of a Redis round
  trip and of an event-loop wake-up instead of four of each.
* While live traffic flows, the event loop and the cores are what live requests
  need, not batch slots: a chunk only starts in a gap between live requests and
  the chunks are paced to a budget of jobs per second (see LivePacer). Jobs
  throughput drops while live traffic flows; that is the intended trade-off.
* A Redis outage pauses the loop (with backoff) instead of killing it; a result
  computed during the outage is stored once Redis is back. Anything else that
  ends the loop is reported by the service's liveness (ModelService.watch).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from model_services.jobs.metrics import JobMetrics
from model_services.jobs.store import JobStore, Started, through_outage
from model_services.serving.batcher import BatcherClosed, BatcherError, Priority
from model_services.serving.service import ModelService, NotReady, State

log = logging.getLogger("model_services.jobs")

_READ_BLOCK_MS = 500  # how long a stop waits for the blocking read at most
_MAX_BACKOFF_S = 2.0
_LIVE_QUIET_S = 0.5  # live traffic this recent: jobs are paced (see LivePacer)
_LIVE_GAP_S = 0.002  # a chunk starts only this long after the last live request
_LIVE_GAP_POLL_S = 0.001
_LIVE_CHUNK = 4  # jobs per chunk while live traffic flows
_TRIM_EVERY_S = 60.0  # dead letters past their max age are dropped this often


_CPU_SAMPLE_S = 0.2  # how often the spare-CPU budget is re-measured
_CPU_RESERVE = 0.15  # share of the machine's CPU left idle for live bursts


def cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of the whole machine from /proc/stat; None elsewhere.
    The whole machine, not this process: live requests compete with Redis, the
    proxy and clients on the same cores, and starving those hurts live latency
    just as much."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields[:8])


def spare_share(idle_share: float, reserve: float = _CPU_RESERVE) -> float:
    """The share of the job budget to use: 0 while idle CPU is at or below the
    reserve, rising linearly to 1 when the machine is fully idle."""
    return min(1.0, max(0.0, (idle_share - reserve) / (1.0 - reserve)))


class LivePacer:
    """When the next chunk of jobs may start while live traffic flows.

    Three rules: a chunk starts only in a gap (no live request queued or being
    read, none submitted for ``gap_s``), because job bookkeeping shares the
    event loop with live HTTP; chunks are spaced so jobs take at most
    ``jobs_per_s``, which bounds the share of loop and CPU time they take from
    live traffic however many gaps there are; and that budget shrinks with the
    machine's measured spare CPU (``measured``), down to ``min_jobs_per_s``
    when the cores are busy, so a heavier live load is not tipped into
    queueing by jobs. Times are passed in, so the policy is testable without a
    clock.
    """

    def __init__(
        self,
        jobs_per_s: float,
        gap_s: float = _LIVE_GAP_S,
        poll_s: float = _LIVE_GAP_POLL_S,
        min_jobs_per_s: float = 5.0,
    ) -> None:
        self.max_jobs_per_s = jobs_per_s
        self.min_jobs_per_s = min(min_jobs_per_s, jobs_per_s)
        self.jobs_per_s = jobs_per_s
        self.gap_s = gap_s
        self.poll_s = poll_s
        self._next = 0.0

    def measured(self, idle_share: float) -> None:
        """The machine's idle CPU share over the last sample window."""
        span = self.max_jobs_per_s - self.min_jobs_per_s
        self.jobs_per_s = self.min_jobs_per_s + span * spare_share(idle_share)

    def wait_s(self, quiet_s: float, now: float) -> float:
        """0: start a chunk now; otherwise how long to wait before asking again."""
        if quiet_s < self.gap_s:
            # The rest of the gap (all of it while live work is queued), then ask again.
            return max(self.poll_s, self.gap_s - quiet_s)
        return max(0.0, self._next - now)

    def started(self, jobs: int, now: float) -> None:
        """A chunk of ``jobs`` started at ``now``: the budget spaces the next one."""
        self._next = now + jobs / self.jobs_per_s


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobRunner:
    def __init__(
        self,
        service: ModelService,
        store: JobStore,
        metrics: JobMetrics,
        *,
        on_finished: Callable[[], None] = lambda: None,
        consumer: str | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.metrics = metrics
        # Jobs reached a final state, so webhooks may be due: wakes the delivery
        # loop, so the replica that finished a job usually sends its webhook.
        self._on_finished = on_finished
        self.settings = store.settings
        self.consumer = consumer or consumer_name()
        self._held: dict[str, str] = {}  # entry id -> job id, while this worker works on it
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._next_reclaim = 0.0
        self._next_trim = 0.0
        self._finished: deque[float] = deque(maxlen=1000)  # completion times, for rate()
        self._pacer = LivePacer(self.settings.live_jobs_per_s)
        self._cpu_at = 0.0
        self._cpu: tuple[float, float] | None = None

    def start(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        self._main = loop.create_task(self._run(), name="jobs-runner")
        self._beat = loop.create_task(self._heartbeat(), name="jobs-heartbeat")
        return [self._main, self._beat]

    async def stop(self) -> None:
        """Stop taking jobs, finish (and store) the ones in flight."""
        self._stopping = True
        if self._main is not None:
            # A loop that died has been reported already (ModelService.watch).
            await asyncio.gather(self._main, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)

    def rate(self, window_s: float = 10.0) -> float:
        """Jobs/s this replica completed recently; sizes Retry-After."""
        since = time.monotonic() - window_s
        return sum(1 for t in self._finished if t >= since) / window_s

    # -- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        group_ready = False
        while not self._stopping:
            if self.service.state is not State.READY:
                # Loading: nothing to run jobs on. Draining: leave the stream to
                # the replicas that stay.
                await asyncio.sleep(0.1)
                continue
            try:
                if not group_ready:
                    await self.store.ensure_group()
                    group_ready = True
                await self._step()
                backoff = 0.1
            except RedisError as exc:
                log.warning("job queue unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)

    async def _step(self) -> None:
        concurrency = self.settings.concurrency
        now = time.monotonic()
        if self.service.batcher.live_quiet_s() < _LIVE_QUIET_S:
            # Live traffic is flowing: one chunk at a time, in a gap, within budget.
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                return
            self._measure_cpu(now)
            wait = self._pacer.wait_s(self.service.batcher.live_quiet_s(), now)
            if wait > 0:
                await asyncio.sleep(wait)
                return
            chunk, chunks = min(concurrency, _LIVE_CHUNK), 1
            block_ms = 0  # never park a read while live requests need the loop
        else:
            # Idle: two chunks overlap (one computes while the other talks to
            # Redis), together at most `concurrency` jobs.
            chunk = max(1, concurrency // 2)
            chunks = max(1, concurrency // chunk)
            block_ms = _READ_BLOCK_MS
        if len(self._tasks) >= chunks:
            await asyncio.wait(set(self._tasks), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            return
        if now >= self._next_trim:
            self._next_trim = now + _TRIM_EVERY_S
            await self.store.trim_dead()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.settings.visibility_timeout_s / 2
            entries = await self.store.reclaim(self.consumer, chunk)
            if entries:
                log.info("reclaimed %d job(s) from stopped workers", len(entries))
                self._spawn(entries)
                return
        entries = await self.store.read(self.consumer, chunk, block_ms)
        if entries:
            self._spawn(entries)
        elif block_ms == 0:
            # Nothing queued: do not spin on non-blocking reads.
            await asyncio.sleep(0.05)

    def _measure_cpu(self, now: float) -> None:
        if now - self._cpu_at < _CPU_SAMPLE_S:
            return
        self._cpu_at = now
        sample = cpu_times()
        if sample is not None and self._cpu is not None:
            idle, total = sample[0] - self._cpu[0], sample[1] - self._cpu[1]
            if total > 0:
                self._pacer.measured(idle / total)
        self._cpu = sample

    def _spawn(self, entries: list[tuple[str, str]]) -> None:
        # Reclaimed jobs count against the live budget like new ones.
        self._pacer.started(len(entries), time.monotonic())
        for entry, job_id in entries:
            self._held[entry] = job_id
        task = asyncio.get_running_loop().create_task(self._process_chunk(entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeat(self) -> None:
        interval = self.settings.visibility_timeout_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.heartbeat(self.consumer, list(self._held))
            except RedisError as exc:
                log.warning("job heartbeat failed: %s", exc)

    # -- one job ------------------------------------------------------------------------

    async def _process_chunk(self, entries: list[tuple[str, str]]) -> None:
        try:
            await self._process_held(entries)
        except Exception:
            # Left pending: another worker reclaims them after the visibility timeout.
            log.exception("jobs %s: giving up on this attempt", ", ".join(job for _, job in entries))
        finally:
            for entry, _ in entries:
                self._held.pop(entry, None)

    async def _process_held(self, entries: list[tuple[str, str]]) -> None:
        starts: list[Started] = await through_outage(lambda: self.store.start_many(entries, self.consumer))
        runs: list[tuple[str, str, Started]] = []
        finished = False
        for (entry, job_id), started in zip(entries, starts, strict=True):
            if started.kind == "skip":
                self.metrics.processed("skipped")
            elif started.kind == "dead":
                self.metrics.processed("dead_lettered")
                finished = True
            else:
                runs.append((entry, job_id, started))
        if finished:
            self._on_finished()
        if not runs:
            return
        # Submitted in one go, so the chunk shares batches (with live items when
        # there are any) instead of waking the batcher once per job.
        outcomes = await asyncio.gather(*(self._infer(started) for _, _, started in runs))
        done: list[tuple[str, str, dict[str, Any], float]] = []
        for (entry, job_id, _), outcome in zip(runs, outcomes, strict=True):
            if outcome is None:
                continue  # shutting down: left pending for another replica
            if isinstance(outcome, dict):
                failed = functools.partial(self.store.fail, entry, job_id, outcome)
                outcome_name = await through_outage(failed)
                self.metrics.processed("dead_lettered" if outcome_name == "dead" else outcome_name)
                if outcome_name == "dead":
                    self._on_finished()
                continue
            result, seconds = outcome
            done.append((entry, job_id, result, seconds))
        if not done:
            return
        stored_all: list[bool] = await through_outage(lambda: self.store.complete_many(done))
        for (_, _, _, seconds), stored in zip(done, stored_all, strict=True):
            self.metrics.processed("completed" if stored else "duplicate")
            if stored:
                self.metrics.processing.observe(seconds)
                self._finished.append(time.monotonic())
        self._on_finished()

    async def _infer(self, started: Started) -> tuple[dict[str, Any], float] | dict[str, str] | None:
        """(result, seconds), an error to record, or None when shutting down."""
        t0 = time.perf_counter()
        remaining = started.queued_at + self.settings.timeout_s - time.time()
        try:
            (pred,) = await self.service.predict(
                [started.text], deadline=time.monotonic() + remaining, priority=Priority.BACKGROUND
            )
        except (BatcherClosed, NotReady):
            return None
        except Exception as exc:
            code = exc.code if isinstance(exc, BatcherError) else "inference_error"
            return {"code": code, "error": f"{type(exc).__name__}: {exc}" if code == "inference_error" else str(exc)}
        seconds = time.perf_counter() - t0
        result: dict[str, Any] = {
            "label": pred.label,
            "confidence": pred.confidence,
            "model_version": self.service.version,
            "latency_ms": round(seconds * 1000.0, 2),
        }
        return result, seconds
