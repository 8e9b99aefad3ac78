"""The worker side: one consumer in its version's group, inside each replica.

Delivery is at-least-once and results are idempotent by job id:

* An entry is acknowledged only in the same atomic step that stores the job's
  result (or its final failure), so a replica that dies mid-job leaves the entry
  pending. While a job runs, its worker heart-beats the entry (XCLAIM to itself);
  once a dead worker's entry has been idle for the visibility timeout, any
  replica's XAUTOCLAIM takes it over and runs it again.
* A second completion of the same job stores nothing (scripts.COMPLETE), so
  duplicates never reach the results or fire a second webhook.
* Jobs go through the replica's own batcher at background priority: they fill
  the slots live requests leave over and never push a live request out.
* A Redis outage pauses the loop (with backoff) instead of killing it; a result
  computed during the outage is stored once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from model_services.batcher import BatcherClosed, BatcherError, Priority
from model_services.jobs.metrics import JobMetrics
from model_services.jobs.store import JobStore
from model_services.jobs.views import job_view
from model_services.jobs.webhooks import WebhookSender
from model_services.service import ModelService, NotReady, State

log = logging.getLogger("model_services.jobs")

_READ_BLOCK_MS = 500  # how long a stop waits for the blocking read at most
_MAX_BACKOFF_S = 2.0
_STORE_RETRIES = 150  # x backoff: rides out a Redis restart of a minute or so
_LIVE_QUIET_S = 0.5  # live traffic this recent: jobs trickle (see _step)
_LIVE_GAP_POLL_S = 0.002


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobRunner:
    def __init__(
        self,
        service: ModelService,
        store: JobStore,
        metrics: JobMetrics,
        webhooks: WebhookSender,
        *,
        consumer: str | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.metrics = metrics
        self.webhooks = webhooks
        self.settings = store.settings
        self.consumer = consumer or consumer_name()
        self._held: dict[str, str] = {}  # entry id -> job id, while this worker works on it
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._next_reclaim = 0.0
        self._finished: deque[float] = deque(maxlen=1000)  # completion times, for rate()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._main = loop.create_task(self._run(), name="jobs-runner")
        self._beat = loop.create_task(self._heartbeat(), name="jobs-heartbeat")

    async def stop(self) -> None:
        """Stop taking jobs, finish (and store) the ones in flight."""
        self._stopping = True
        if self._main is not None:
            await self._main
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
        limit = self.settings.concurrency
        quiet = self.service.batcher.live_quiet_s()
        if quiet < _LIVE_QUIET_S:
            # Live traffic is flowing. Job bookkeeping (Redis round trips, JSON)
            # runs on the same event loop and cores as live requests, so only
            # one job at a time, started in a gap between live requests.
            limit = 1
            if quiet == 0.0:
                await asyncio.sleep(_LIVE_GAP_POLL_S)
                return
        free = limit - len(self._tasks)
        if free <= 0:
            await asyncio.wait(set(self._tasks), timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            return
        now = time.monotonic()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.settings.visibility_timeout_s / 2
            entries = await self.store.reclaim(self.consumer, free)
            if entries:
                log.info("reclaimed %d job(s) from stopped workers", len(entries))
                self._spawn(entries)
                return
        self._spawn(await self.store.read(self.consumer, free, _READ_BLOCK_MS))

    def _spawn(self, entries: list[tuple[str, str]]) -> None:
        for entry, job_id in entries:
            self._held[entry] = job_id
            task = asyncio.get_running_loop().create_task(self._process(entry, job_id))
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

    async def _process(self, entry: str, job_id: str) -> None:
        try:
            await self._process_held(entry, job_id)
        except Exception:
            # Left pending: another worker reclaims it after the visibility timeout.
            log.exception("job %s: giving up on this attempt", job_id)
        finally:
            self._held.pop(entry, None)

    async def _process_held(self, entry: str, job_id: str) -> None:
        started = await self._retrying(lambda: self.store.start(entry, job_id, self.consumer))
        if started.kind == "skip":
            self.metrics.processed("skipped")
            return
        if started.kind == "dead":
            self.metrics.processed("dead_lettered")
            await self._notify(job_id, "job.failed")
            return
        t0 = time.perf_counter()
        remaining = started.queued_at + self.settings.timeout_s - time.time()
        try:
            (pred,) = await self.service.predict(
                [started.text], deadline=time.monotonic() + remaining, priority=Priority.BACKGROUND
            )
        except (BatcherClosed, NotReady):
            return  # shutting down: not the job's fault; left pending for another replica
        except Exception as exc:
            code = exc.code if isinstance(exc, BatcherError) else "inference_error"
            error = {"code": code, "error": f"{type(exc).__name__}: {exc}" if code == "inference_error" else str(exc)}
            outcome = await self._retrying(lambda: self.store.fail(entry, job_id, error))
            self.metrics.processed("dead_lettered" if outcome == "dead" else outcome)
            if outcome == "dead":
                await self._notify(job_id, "job.failed")
            return
        seconds = time.perf_counter() - t0
        result: dict[str, Any] = {
            "label": pred.label,
            "confidence": pred.confidence,
            "model_version": self.service.version,
            "latency_ms": round(seconds * 1000.0, 2),
        }
        stored = await self._retrying(lambda: self.store.complete(entry, job_id, result, seconds))
        self.metrics.processed("completed" if stored else "duplicate")
        if stored:
            self.metrics.processing.observe(seconds)
            self._finished.append(time.monotonic())
            await self._notify(job_id, "job.completed")

    async def _retrying(self, call: Any) -> Any:
        """Ride out a short Redis outage: losing a computed result would cost a rerun."""
        delay = 0.05
        for attempt in range(_STORE_RETRIES):
            try:
                return await call()
            except (RedisConnectionError, RedisTimeoutError):
                if attempt + 1 == _STORE_RETRIES:
                    raise
                await asyncio.sleep(delay)
                delay = min(0.5, delay * 2)
        raise AssertionError("unreachable")

    async def _notify(self, job_id: str, event: str) -> None:
        record = await self.store.get(job_id)
        if record and record.get("callback_url"):
            self.webhooks.send(record["callback_url"], job_id, event, job_view(record))
