"""One model version's lifecycle: load -> warm up -> ready -> draining -> stopped.

The HTTP layer (api.py) asks this object whether it is live/ready and hands it
texts; everything about weights, threads and batching lives here.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model_services.api.near_miss import NearMisses
from model_services.config import ServeConfig
from model_services.serving.batcher import Arrival, BatcherError, DynamicBatcher, Priority
from model_services.serving.handler import (
    Handler,
    LoadedModel,
    Probabilities,
    load_model,
    resolve_device,
)
from model_services.serving.heap import freeze_heap
from model_services.serving.metrics import ServiceMetrics
from model_services.serving.worker import process_loader
from model_services.store.manifest import read_manifest

log = logging.getLogger("model_services")

Loader = Callable[[Path, torch.device], LoadedModel]

# Close to the 32 tokens the benchmark uses, so warm-up touches realistic shapes.
_WARMUP_TEXT = (
    "The battery life of these headphones is great, but the app keeps crashing "
    "and customer service never answered my three emails about the refund."
)


class State(enum.Enum):
    LOADING = "loading"
    WARMING_UP = "warming_up"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


class NotReady(BatcherError):
    code = "not_ready"


class InjectedFault(BatcherError):
    code = "injected_fault"


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: list[float]


@dataclass
class FaultSettings:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    match: str | None = None


class ModelService:
    def __init__(self, config: ServeConfig, loader: Loader | None = None) -> None:
        self.config = config
        if loader is None:
            loader = process_loader(config.num_threads) if config.worker == "process" else load_model
        self._loader = loader
        # Name and version are known before the (slow, hash-checked) load, so
        # even a loading service labels its answers and metrics correctly.
        manifest = read_manifest(config.model_dir, verify=False)
        self.name = manifest.name
        self.version = config.served_version or manifest.version
        self.labels: tuple[str, ...] = tuple(manifest.labels)
        self.architecture = manifest.architecture
        self.state = State.LOADING
        self.failure: str | None = None
        # Why this replica is no longer live although it serves (a background
        # loop it needs died); None while it is.
        self.broken: str | None = None
        self.fault = FaultSettings(config.fault_rate, config.fault_latency_ms, config.fault_match)
        self.metrics = ServiceMetrics(self.name, self.version)
        # Names a request may spell almost right: the API's fields and the pins in front of it.
        self.near_misses = NearMisses(
            body_fields=("text", "texts", "callback_url", "model_version", config.pin_body_field.split(".")[0]),
            headers=(config.pin_header,),
        )
        self.metrics.ready.set_function(lambda: 1.0 if self.ready else 0.0)
        self.device: torch.device | None = None
        # Called when loading fails, so the process exits instead of idling unready.
        self.on_fatal: Callable[[], None] | None = None
        self._handler: Handler | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batcher: DynamicBatcher[str, Probabilities] | None = None
        self._startup: asyncio.Task[None] | None = None
        self._random = random.Random()

    # -- state ----------------------------------------------------------------

    @property
    def live(self) -> bool:
        """False once a model worker process or a background loop has died:
        restart this process."""
        return self.not_live_reason is None

    @property
    def not_live_reason(self) -> str | None:
        if not getattr(self._handler, "alive", True):
            return "the model worker process exited"
        return self.broken

    def watch(self, task: asyncio.Task[None]) -> None:
        """A background loop this replica cannot do its job without. If it ends
        with an exception, log the traceback and report not live, so an
        orchestrator restarts the replica instead of it serving on with, say,
        nobody taking its jobs. Cancelling it (a stop) is not a failure."""

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled() or t.exception() is None:
                return
            exc = t.exception()
            log.error("background task %s died; reporting not live", t.get_name(), exc_info=exc)
            if self.broken is None:
                self.broken = f"background task {t.get_name()} died: {type(exc).__name__}: {exc}"

        task.add_done_callback(done)

    @property
    def ready(self) -> bool:
        return self.state is State.READY and self.live

    @property
    def accepting(self) -> bool:
        # Draining still serves: requests already routed here must be answered.
        return self.state in (State.READY, State.DRAINING)

    @property
    def batcher(self) -> DynamicBatcher[str, Probabilities]:
        if self._batcher is None:
            raise NotReady("model is not loaded yet")
        return self._batcher

    def arrival(self) -> Arrival | None:
        """Tell the batcher a prediction request is being read (see batcher.py)."""
        return None if self._batcher is None else self._batcher.arrival()

    def begin_drain(self) -> None:
        """Report not ready from now on; keeps serving. Safe in a signal handler:
        a single attribute store, no locks."""
        self.state = State.DRAINING

    # -- startup / shutdown ------------------------------------------------------

    async def start(self) -> None:
        """Begin loading in the background; returns at once so /live answers."""
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        # One worker thread: loading, warm-up and every batch run here, one at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._startup = asyncio.get_running_loop().create_task(self._load(), name="model-load")

    async def wait_started(self) -> None:
        if self._startup is not None:
            await asyncio.shield(self._startup)

    async def _load(self) -> None:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            device = resolve_device(self.config.device)
            self.device = device
            loaded = await loop.run_in_executor(self._executor, self._loader, self.config.model_dir, device)
            self.metrics.load_seconds.set(loaded.load_seconds)
            self.metrics.watch_device(device)
            handler = loaded.handler
            self._handler = handler
            self.state = State.WARMING_UP
            started = time.perf_counter()
            if self.config.warmup:
                # Batch 1 and the largest batch: the first calls allocate buffers and
                # pick kernels, and that must not happen on a user's request.
                for size in sorted({1, self.config.max_batch_size}):
                    await loop.run_in_executor(self._executor, handler.predict, [_WARMUP_TEXT] * size)
            self.metrics.warmup_seconds.set(time.perf_counter() - started)
            if self.config.gc_freeze:
                log.debug("froze %d startup objects out of the garbage collector's reach", freeze_heap())

            def run_batch(texts: list[str]) -> list[Probabilities]:
                return list(handler.predict(texts))

            self._batcher = DynamicBatcher(
                run_batch,
                self._executor,
                max_batch_size=self.config.max_batch_size,
                max_delay_s=self.config.max_delay_ms / 1000.0,
                max_queue_size=self.config.max_queue_size,
                observer=self.metrics,
            )
            self._batcher.start()
            batcher = self._batcher
            self.metrics.watch_pending(lambda: batcher.pending)
            if self.state is State.WARMING_UP:  # a SIGTERM during load keeps DRAINING
                self.state = State.READY
            log.info(
                "%s %s ready on %s (load %.2fs, warm-up %.2fs)",
                self.name,
                self.version,
                device,
                loaded.load_seconds,
                time.perf_counter() - started,
            )
        except Exception as exc:
            self.state = State.FAILED
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("cannot serve %s: %s", self.config.model_dir, self.failure)
            if self.on_fatal is not None:
                self.on_fatal()

    async def stop(self) -> None:
        """Finish queued work, then release the worker thread."""
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
        if self._batcher is not None:
            await self._batcher.close()
        close = getattr(self._handler, "close", None)
        if close is not None:
            close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- predictions ------------------------------------------------------------------

    async def predict(
        self, texts: Sequence[str], *, deadline: float, priority: Priority = Priority.LIVE
    ) -> list[Prediction]:
        if not self.accepting:
            raise NotReady(
                f"model {self.version} is {self.state.value}" + (f": {self.failure}" if self.failure else "")
            )
        fault = self.fault
        if fault.latency_ms > 0:
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.error_rate > 0 and self._random.random() < fault.error_rate:
            raise InjectedFault("injected fault (fault mode is on; see /admin/fault)")
        if fault.match is not None and any(fault.match in t for t in texts):
            raise InjectedFault(f"injected fault: input contains {fault.match!r} (see /admin/fault)")
        rows = await self.batcher.submit_many(list(texts), deadline=deadline, priority=priority)
        return [self._prediction(row) for row in rows]

    def _prediction(self, row: Probabilities) -> Prediction:
        best = int(np.argmax(row))
        return Prediction(self.labels[best], float(row[best]), [float(p) for p in row])
