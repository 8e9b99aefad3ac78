"""The dynamic batcher alone, with a fake model on a real worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_services.serving.batcher import BatcherClosed, DeadlineExceeded, DynamicBatcher, QueueFull

pytestmark = pytest.mark.timeout(30)
FAR = 3600.0  # a deadline that never passes in a test


class FakeModel:
    """Doubles its inputs; can be held on a gate to make a batch 'slow'."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int]:
        self.entered.set()
        assert self.gate.wait(20), "test forgot to open the gate"
        self.batches.append(list(items))
        if any(x < 0 for x in items):
            raise ValueError("negative input")
        return [2 * x for x in items]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def make(
    model: FakeModel,
    executor: ThreadPoolExecutor,
    *,
    max_batch_size: int = 8,
    max_delay_s: float = 0.002,
    max_queue_size: int = 64,
) -> DynamicBatcher[int, int]:
    batcher = DynamicBatcher(
        model,
        executor,
        max_batch_size=max_batch_size,
        max_delay_s=max_delay_s,
        max_queue_size=max_queue_size,
    )
    batcher.start()
    return batcher


def deadline(seconds: float = FAR) -> float:
    return time.monotonic() + seconds


async def wait_entered(model: FakeModel) -> None:
    for _ in range(2000):
        if model.entered.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the model was never called")


async def test_results_are_routed_to_their_requests(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = make(model, executor)
    results = await asyncio.gather(*(batcher.submit(i, deadline=deadline()) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert all(len(b) <= 8 for b in model.batches)
    await batcher.close()


async def test_requests_queued_behind_a_running_batch_go_together(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, max_batch_size=4)
    first = asyncio.ensure_future(batcher.submit(0, deadline=deadline()))
    await wait_entered(model)
    rest = [asyncio.ensure_future(batcher.submit(i, deadline=deadline())) for i in range(1, 10)]
    await asyncio.sleep(0)
    assert batcher.queued == 9
    model.gate.set()
    await asyncio.gather(first, *rest)
    # One batch in flight: the 9 waiting requests form full batches of 4, then 1.
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    await batcher.close()


async def test_lone_request_is_not_held_for_the_window(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    # A window far longer than the test timeout: finishing at all proves that a
    # request with nobody else arriving is dispatched at once.
    batcher = make(model, executor, max_delay_s=600.0)
    assert await asyncio.wait_for(batcher.submit(21, deadline=deadline()), 10) == 42
    await batcher.close()


async def test_window_waits_for_announced_arrivals(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = make(model, executor, max_batch_size=4, max_delay_s=600.0)
    arrivals = [batcher.arrival() for _ in range(3)]
    first = asyncio.ensure_future(batcher.submit(1, deadline=deadline()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert model.batches == []  # held: three more are on their way
    others = []
    for i, arrival in enumerate(arrivals, start=2):
        arrival.done()
        others.append(asyncio.ensure_future(batcher.submit(i, deadline=deadline())))
    await asyncio.wait_for(asyncio.gather(first, *others), 10)
    assert model.batches == [[1, 2, 3, 4]]
    await batcher.close()


async def test_window_gives_up_when_arrivals_leave(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    batcher = make(model, executor, max_delay_s=600.0)
    arrival = batcher.arrival()
    pending = asyncio.ensure_future(batcher.submit(5, deadline=deadline()))
    await asyncio.sleep(0.01)
    assert not pending.done()
    arrival.done()  # e.g. that request failed validation and never submits
    assert await asyncio.wait_for(pending, 10) == 10
    await batcher.close()


async def test_expired_request_gets_504_and_is_not_computed(
    executor: ThreadPoolExecutor,
) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor)
    blocker = asyncio.ensure_future(batcher.submit(1, deadline=deadline()))
    await wait_entered(model)
    with pytest.raises(DeadlineExceeded, match="not computed"):
        await batcher.submit(7, deadline=deadline(0.05))
    model.gate.set()
    assert await blocker == 2
    await batcher.close()
    assert [7] not in model.batches
    assert all(7 not in b for b in model.batches)


async def test_full_queue_refuses_with_retry_after(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, max_batch_size=2, max_queue_size=3)
    running = asyncio.ensure_future(batcher.submit(0, deadline=deadline()))
    await wait_entered(model)
    queued = [asyncio.ensure_future(batcher.submit(i, deadline=deadline())) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as info:
        await batcher.submit(4, deadline=deadline())
    assert info.value.retry_after_s >= 1
    with pytest.raises(QueueFull):
        await batcher.submit_many([5, 6], deadline=deadline())
    model.gate.set()
    assert await asyncio.gather(running, *queued) == [0, 2, 4, 6]
    await batcher.close()


async def test_failing_input_fails_alone(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor)
    blocker = asyncio.ensure_future(batcher.submit(0, deadline=deadline()))
    await wait_entered(model)
    good = asyncio.ensure_future(batcher.submit(3, deadline=deadline()))
    bad = asyncio.ensure_future(batcher.submit(-1, deadline=deadline()))
    await asyncio.sleep(0)
    model.gate.set()
    assert await good == 6
    with pytest.raises(ValueError, match="negative"):
        await bad
    await blocker
    await batcher.close()


async def test_close_finishes_queued_work_then_refuses(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, max_batch_size=2)
    futures = [asyncio.ensure_future(batcher.submit(i, deadline=deadline())) for i in range(5)]
    await wait_entered(model)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    model.gate.set()
    await closing
    assert [f.result() for f in futures] == [0, 2, 4, 6, 8]
    with pytest.raises(BatcherClosed):
        await batcher.submit(1, deadline=deadline())


async def test_cancelled_waiter_is_not_computed(executor: ThreadPoolExecutor) -> None:
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor)
    blocker = asyncio.ensure_future(batcher.submit(1, deadline=deadline()))
    await wait_entered(model)
    gone = asyncio.ensure_future(batcher.submit(99, deadline=deadline()))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    model.gate.set()
    await blocker
    await batcher.close()
    assert all(99 not in b for b in model.batches)
