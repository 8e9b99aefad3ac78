"""Dynamic batching: one queue and one batch in flight per model instance.

Policy (the same knobs as Triton's dynamic batcher, plus an adaptive rule):

* While a batch runs, new requests queue up; when the model is free again the
  whole queue (up to ``max_batch_size``) goes as the next batch. Batches therefore
  grow with load by themselves and no timer is involved.
* When the model is free and the queue is short, the batcher waits for more only
  if more are known to be on their way: requests the HTTP layer has started to
  read but not yet queued (see ``arrival``). It waits until the batch is full,
  the oldest request has waited ``max_delay``, or nobody is arriving any more.
  Under sparse traffic nobody is arriving, so a lone request runs at once and
  batching adds no latency.
* Every request carries a deadline. One whose deadline passes while queued is
  answered ``DeadlineExceeded`` and never computed. A full queue refuses new work
  at once (``QueueFull``) instead of growing latency without bound.
* Two priorities. ``LIVE`` items (HTTP requests someone waits on) always go
  first; ``BACKGROUND`` items (async jobs) only fill the slots a batch has left
  over, or run when no live item is queued. They never count against the live
  queue's limit, so a job backlog cannot make live requests overflow.

The model runs on a single worker thread, so the event loop keeps accepting,
parsing and answering requests while a batch computes (PyTorch releases the
GIL inside its kernels).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Priority(enum.Enum):
    LIVE = "live"
    BACKGROUND = "background"


class BatcherError(Exception):
    """A request the batcher refused or gave up on; ``code`` names why (the HTTP layer maps it)."""

    code = "internal"


class QueueFull(BatcherError):
    code = "overloaded"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BatcherError):
    code = "deadline_exceeded"


class BatcherClosed(BatcherError):
    code = "shutting_down"


class BatchObserver(Protocol):
    """Hooks for metrics; called on the event loop thread."""

    def on_batch(self, size: int, queue_waits: Sequence[float], seconds: float) -> None: ...

    def on_expired(self, count: int) -> None: ...


@dataclass(eq=False)
class _Pending(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    enqueued_at: float
    deadline: float
    started: bool = False
    abandoned: bool = False


@dataclass
class _Arrivals:
    """Requests read by the HTTP layer but not yet submitted."""

    count: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Arrival:
    """Handle for one announced request; ``done()`` is idempotent."""

    __slots__ = ("_arrivals", "_open")

    def __init__(self, arrivals: _Arrivals) -> None:
        self._arrivals = arrivals
        self._open = True
        arrivals.count += 1

    def done(self) -> None:
        if self._open:
            self._open = False
            self._arrivals.count -= 1
            self._arrivals.changed.set()


class DynamicBatcher(Generic[In, Out]):
    def __init__(
        self,
        run_batch: Callable[[list[In]], Sequence[Out]],
        executor: Executor,
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue_size: int,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or max_queue_size < 1 or max_delay_s < 0:
            raise ValueError("max_batch_size and max_queue_size >= 1, max_delay_s >= 0")
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue_size = max_queue_size
        self._observer = observer
        self._queue: deque[_Pending[In, Out]] = deque()
        # Background (job) items: same shape, own queue, only fill spare slots.
        self._background: deque[_Pending[In, Out]] = deque()
        self._arrivals = _Arrivals()
        self._in_flight = 0
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Items per second, smoothed; only used to size Retry-After.
        self._rate = 0.0
        self._last_live = 0.0  # monotonic time of the last live submit

    # -- introspection -------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def background_queued(self) -> int:
        return len(self._background)

    def live_quiet_s(self) -> float:
        """Seconds without live work: 0 while live requests are queued or being read.
        Background producers use it to stay out of live traffic's way."""
        if self._queue or self._arrivals.count:
            return 0.0
        return time.monotonic() - self._last_live

    @property
    def pending(self) -> int:
        """Items queued (either priority) or in the running batch."""
        return len(self._queue) + len(self._background) + self._in_flight

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    async def close(self) -> None:
        """Finish everything already queued, then stop. New submits are refused."""
        self._closing = True
        self._arrivals.changed.set()
        if self._task is not None:
            await self._task
            self._task = None

    # -- submitting ----------------------------------------------------------------

    def arrival(self) -> Arrival:
        """Announce a request that will probably submit soon (see module doc)."""
        return Arrival(self._arrivals)

    async def submit(self, item: In, *, deadline: float, priority: Priority = Priority.LIVE) -> Out:
        (result,) = await self.submit_many([item], deadline=deadline, priority=priority)
        return result

    async def submit_many(
        self, items: Sequence[In], *, deadline: float, priority: Priority = Priority.LIVE
    ) -> list[Out]:
        """Queue all items (or none, if they do not fit) and wait for all results."""
        if self._closing:
            raise BatcherClosed("the service is shutting down")
        queue = self._queue if priority is Priority.LIVE else self._background
        if len(queue) + len(items) > self.max_queue_size:
            raise QueueFull(
                f"queue full ({len(queue)}/{self.max_queue_size} waiting); retry later",
                self._retry_after(),
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pendings = [_Pending[In, Out](x, loop.create_future(), now, deadline) for x in items]
        queue.extend(pendings)
        if priority is Priority.LIVE:
            self._last_live = now
        self._arrivals.changed.set()
        try:
            remaining = deadline - time.monotonic()
            futures = [p.future for p in pendings]
            if remaining <= 0:
                raise DeadlineExceeded("deadline already passed when the request was queued")
            done, _ = await asyncio.wait(futures, timeout=remaining)
            if len(done) < len(futures):
                computed = any(p.started for p in pendings)
                raise DeadlineExceeded(
                    "deadline exceeded while " + ("running; result discarded" if computed else "queued; not computed")
                )
            # Read every outcome so no exception is left "never retrieved".
            errors = [f.exception() for f in futures]
            for error in errors:
                if error is not None:
                    raise error
            return [f.result() for f in futures]
        finally:
            # Whatever happened (deadline, cancellation), an item nobody waits for
            # any more must not cost model time.
            for p in pendings:
                if not p.future.done():
                    p.abandoned = True
                    p.future.cancel()

    def _retry_after(self) -> int:
        if self._rate <= 0:
            return 1
        return max(1, math.ceil(len(self._queue) / self._rate))

    # -- the dispatch loop ------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._drop_abandoned_head()
            if not self._queue and not self._background:
                if self._closing:
                    return
                self._arrivals.changed.clear()
                await self._arrivals.changed.wait()
                continue
            await self._fill_window()
            batch = self._take()
            if batch:
                await self._execute(batch)

    def _drop_abandoned_head(self) -> None:
        for queue in (self._queue, self._background):
            while queue and queue[0].abandoned:
                queue.popleft()

    async def _fill_window(self) -> None:
        """Wait for announced requests, bounded by the oldest request's max_delay."""
        # Arrivals are live requests: with only jobs queued, waiting a moment lets
        # an arriving live request ride in this batch instead of after it.
        oldest = self._queue[0] if self._queue else self._background[0]
        window_end = oldest.enqueued_at + self.max_delay_s
        while (
            len(self._queue) + len(self._background) < self.max_batch_size
            and self._arrivals.count > 0
            and not self._closing
        ):
            remaining = window_end - time.monotonic()
            if remaining <= 0:
                return
            self._arrivals.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrivals.changed.wait(), remaining)

    def _take(self) -> list[_Pending[In, Out]]:
        batch: list[_Pending[In, Out]] = []
        expired = 0
        now = time.monotonic()
        # Live first; background items only take the slots left over.
        for queue in (self._queue, self._background):
            while queue and len(batch) < self.max_batch_size:
                p = queue.popleft()
                if p.abandoned or p.future.done():
                    continue
                if now >= p.deadline:
                    expired += 1
                    p.future.set_exception(DeadlineExceeded("deadline passed while queued; not computed"))
                    continue
                p.started = True
                batch.append(p)
        if expired and self._observer is not None:
            self._observer.on_expired(expired)
        return batch

    async def _execute(self, batch: list[_Pending[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self._in_flight = len(batch)
        try:
            results = await loop.run_in_executor(self._executor, self._run_safely, batch)
        finally:
            self._in_flight = 0
        seconds = time.monotonic() - started
        for p, outcome in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(outcome, BaseException):
                p.future.set_exception(outcome)
            else:
                p.future.set_result(outcome)
        # Consume exceptions of futures whose waiter left, so asyncio does not
        # log "exception was never retrieved".
        for p in batch:
            if p.abandoned and p.future.done() and not p.future.cancelled():
                p.future.exception()
        if seconds > 0:
            self._rate = 0.8 * self._rate + 0.2 * (len(batch) / seconds)
        if self._observer is not None:
            self._observer.on_batch(len(batch), [started - p.enqueued_at for p in batch], seconds)

    def _run_safely(self, batch: list[_Pending[In, Out]]) -> list[Out | BaseException]:
        """Runs on the worker thread. A failing batch is retried item by item so
        one poisonous input fails alone and its batch-mates still get answers."""
        items = [p.item for p in batch]
        try:
            return self._checked(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        out: list[Out | BaseException] = []
        for item in items:
            try:
                out.extend(self._checked([item]))
            except Exception as exc:
                out.append(exc)
        return out

    def _checked(self, items: list[In]) -> list[Out | BaseException]:
        results = list(self._run_batch(items))
        if len(results) != len(items):
            raise RuntimeError(f"model returned {len(results)} results for {len(items)} inputs")
        return list(results)
