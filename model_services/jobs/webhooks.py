"""Webhook delivery, signed per Standard Webhooks (standardwebhooks.com).

Headers: ``webhook-id`` (the job id, stable across retries so receivers can
de-duplicate), ``webhook-timestamp`` (unix seconds) and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. Delivery is retried
with exponential backoff on any non-2xx answer or transport error. It is
best-effort beyond that: a replica that dies with a retry pending loses it
(the job's result is safe in Redis; the client can still poll).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("model_services.jobs")


def secret_bytes(secret: str) -> bytes:
    # Standard Webhooks secrets are "whsec_" + base64; accept raw text as well.
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check (used by tests; a reference for users)."""
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    offered = headers["webhook-signature"].split()
    return any(hmac.compare_digest(expected, sig) for sig in offered)


class WebhookSender:
    def __init__(
        self,
        secret: str | None,
        *,
        attempts: int,
        backoff_s: float,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self._secret = secret
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._on_outcome = on_outcome
        self._client = httpx.AsyncClient(timeout=10.0)
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, msg_id: str, event: str, data: dict[str, Any]) -> None:
        """Deliver in the background; the worker does not wait for the receiver."""
        task = asyncio.get_running_loop().create_task(self._deliver(url, msg_id, event, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, msg_id: str, event: str, data: dict[str, Any]) -> None:
        timestamp = int(time.time())
        body = json.dumps({"type": event, "timestamp": timestamp, "data": data}).encode()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
        }
        if self._secret:
            headers["webhook-signature"] = sign(self._secret, msg_id, timestamp, body)
        for attempt in range(self._attempts):
            try:
                response = await self._client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    self._outcome("delivered")
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s to %s failed (attempt %d): %s", msg_id, url, attempt + 1, reason)
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._backoff_s * 2**attempt)
        self._outcome("failed")

    def _outcome(self, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    async def close(self, grace_s: float = 5.0) -> None:
        """Give pending deliveries a moment, then drop them."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._client.aclose()
