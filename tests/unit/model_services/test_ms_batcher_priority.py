"""Background (job) items in the batcher: live items always go first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_services.serving.batcher import DynamicBatcher, Priority, QueueFull

pytestmark = pytest.mark.timeout(30)
FAR = 3600.0


class GatedModel:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, items: list[str]) -> Sequence[str]:
        self.entered.set()
        assert self.gate.wait(20)
        self.batches.append(list(items))
        return [x.upper() for x in items]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


def make(model: GatedModel, executor: ThreadPoolExecutor, **kw: int) -> DynamicBatcher[str, str]:
    batcher = DynamicBatcher(
        model,
        executor,
        max_batch_size=kw.get("max_batch_size", 4),
        max_delay_s=0.0,
        max_queue_size=kw.get("max_queue_size", 16),
    )
    batcher.start()
    return batcher


async def test_live_items_go_first_and_jobs_fill_spare_slots(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor)
    deadline = time.monotonic() + FAR
    first = asyncio.create_task(batcher.submit("warm", deadline=deadline))
    await asyncio.to_thread(model.entered.wait, 5)  # the model is busy with "warm"
    jobs = [
        asyncio.create_task(batcher.submit(f"job{i}", deadline=deadline, priority=Priority.BACKGROUND))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    live = [asyncio.create_task(batcher.submit(f"live{i}", deadline=deadline)) for i in range(2)]
    await asyncio.sleep(0.01)
    assert batcher.queued == 2 and batcher.background_queued == 5
    model.gate.set()
    assert await asyncio.gather(*live) == ["LIVE0", "LIVE1"]
    assert await asyncio.gather(*jobs) == [f"JOB{i}" for i in range(5)]
    await first
    # Queued before the live items, the jobs still only took the slots left over.
    assert model.batches == [["warm"], ["live0", "live1", "job0", "job1"], ["job2", "job3", "job4"]]
    await batcher.close()


async def test_background_backlog_never_overflows_the_live_queue(executor: ThreadPoolExecutor) -> None:
    model = GatedModel()
    batcher = make(model, executor, max_batch_size=1, max_queue_size=4)
    deadline = time.monotonic() + FAR
    jobs = [
        asyncio.create_task(batcher.submit(f"j{i}", deadline=deadline, priority=Priority.BACKGROUND)) for i in range(4)
    ]
    await asyncio.to_thread(model.entered.wait, 5)
    await asyncio.sleep(0.01)
    # j0 runs; j1..j3 and j4 fill the background queue (4); one more does not fit,
    # yet a live request is still accepted.
    jobs.append(asyncio.create_task(batcher.submit("j4", deadline=deadline, priority=Priority.BACKGROUND)))
    await asyncio.sleep(0.01)
    assert batcher.background_queued == 4
    with pytest.raises(QueueFull):
        await batcher.submit("over", deadline=deadline, priority=Priority.BACKGROUND)
    live = asyncio.create_task(batcher.submit("live", deadline=deadline))
    await asyncio.sleep(0.01)
    model.gate.set()
    assert await live == "LIVE"
    assert len(await asyncio.gather(*jobs)) == 5
    assert model.batches[1] == ["live"]
    await batcher.close()
