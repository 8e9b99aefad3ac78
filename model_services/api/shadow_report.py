"""Report each prediction to the control plane's shadow collector, off the request path.

Production and mirrored copies of a request carry the same ``x-request-id``;
Envoy marks the mirrored copy by suffixing the Host header with ``-shadow``
(REST), or with the ``x-switchyard-shadow`` header its gRPC mirrors add (a gRPC
server does not see the authority). Each answer becomes a small record (request
id, version, shadow or not, label, confidence, latency, error, and for mirrored
copies the input) that the control plane pairs by request id. A call with
several texts (v2 ``infer``, REST or gRPC) gives one record per text, its id
suffixed ``#<index>``, so each text is compared with its own counterpart.

The request path only appends to a bounded deque (O(1), no await, no lock:
one event loop). A background task posts batches; when the deque is full or
a post fails, records are dropped and counted (sent with the next batch), so
a slow or absent control plane never slows predictions down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request

from model_services.protocol import MIRROR_HEADER

if TYPE_CHECKING:
    from model_services.serving.service import Prediction

log = logging.getLogger(__name__)

MAX_INPUT_CHARS = 1000


def is_shadow(headers: Mapping[str, str]) -> bool:
    """Whether a request is Envoy's mirrored copy, by its Host suffix or the gRPC mirror header."""
    return headers.get("host", "").rsplit(":", 1)[0].endswith("-shadow") or MIRROR_HEADER in headers


class ShadowReporter:
    def __init__(
        self,
        url: str,
        *,
        model: str,
        version: str,
        inputs: bool = True,
        max_queue: int = 10_000,
        batch: int = 500,
        flush_s: float = 0.25,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.model = model
        self.version = version
        self.inputs = inputs
        self.max_queue = max_queue
        self.batch = batch
        self.flush_s = flush_s
        self.dropped = 0  # since the last successful post
        self.dropped_total = 0
        self.sent_total = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=2.0, headers=headers, trust_env=False)

    def record(
        self,
        request_id: str,
        shadow: bool,
        *,
        label: str | None,
        confidence: float | None,
        latency_ms: float,
        error: str | None = None,
        text: str | None = None,
    ) -> None:
        """Queue one answer; never blocks, never raises for a full queue."""
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            self.dropped_total += 1
            return
        self._queue.append(
            {
                "request_id": request_id,
                "model": self.model,
                "version": self.version,
                "shadow": shadow,
                "label": label,
                "confidence": confidence,
                "latency_ms": latency_ms,
                "error": error,
                # Only the mirrored copy carries the input: the pair needs it once.
                "input": text[:MAX_INPUT_CHARS] if (shadow and self.inputs and text) else None,
            }
        )
        if len(self._queue) >= self.batch:
            self._wake.set()

    def record_predictions(
        self, request_id: str, shadow: bool, texts: Sequence[str], preds: Sequence[Prediction], latency_ms: float
    ) -> None:
        """One record per text of a multi-text call (the id alone for a single text)."""
        for i, (text, pred) in enumerate(zip(texts, preds, strict=True)):
            self.record(
                request_id if len(texts) == 1 else f"{request_id}#{i}",
                shadow,
                label=pred.label,
                confidence=pred.confidence,
                latency_ms=latency_ms,
                text=text,
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shadow-reporter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(httpx.HTTPError):
            await self._flush()  # best effort: what is left when we stop
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            try:
                while self._queue:
                    await self._flush()
            except httpx.HTTPError as exc:
                log.debug("shadow report post failed: %s", exc)

    async def _flush(self) -> None:
        if not self._queue and not self.dropped:
            return
        n = min(len(self._queue), self.batch)
        records = [self._queue.popleft() for _ in range(n)]
        body = {"records": records, "dropped": self.dropped, "version": self.version}
        try:
            response = await self._client.post(self.url, json=body)
            response.raise_for_status()
        except httpx.HTTPError:
            self.dropped += n  # never re-queued: the queue stays bounded and fresh
            self.dropped_total += n
            raise
        self.dropped = 0
        self.sent_total += n


def reporter_for(url: str | None, *, model: str, version: str, inputs: bool) -> ShadowReporter | None:
    if not url:
        return None
    return ShadowReporter(
        url, model=model, version=version, inputs=inputs, token=os.environ.get("SWITCHYARD_REPORT_TOKEN") or None
    )


def report(request: Request, **fields: Any) -> None:
    """Record an answer if this service reports (``--report-url``); cheap no-op otherwise."""
    reporter: ShadowReporter | None = getattr(request.app.state, "shadow_reporter", None)
    if reporter is not None:
        reporter.record(request.state.request_id, is_shadow(request.headers), **fields)


def report_predictions(request: Request, texts: Sequence[str], preds: Sequence[Prediction], latency_ms: float) -> None:
    """``report`` for a call with several texts."""
    reporter: ShadowReporter | None = getattr(request.app.state, "shadow_reporter", None)
    if reporter is not None:
        reporter.record_predictions(request.state.request_id, is_shadow(request.headers), texts, preds, latency_ms)
