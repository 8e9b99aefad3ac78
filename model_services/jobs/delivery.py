"""Webhook delivery: every replica drains its model's outbox.

A finished job's webhook is owed from the moment its result is stored (the
same Lua step puts it in the outbox), so a replica that dies before posting,
or between retries, loses nothing: another replica of the model delivers it.

* Exactly one POST per job in the normal case: a due webhook is leased to one
  replica at a time (scripts.CLAIM_WEBHOOK), and the replica that finished the
  job is woken at once, so that is usually the one.
* At least once in the worst case: a replica that posts and dies before it
  records the 2xx leaves the lease to run out, and another replica posts again,
  with the same ``webhook-id``; Standard Webhooks receivers de-duplicate on it.
* Each attempt connects only to addresses the callback policy allows, checked
  on the resolved addresses (callbacks.GuardedBackend); a refused one drops the
  webhook (outcome ``refused``). A 2xx is ``delivered``; anything else is
  retried after a doubling delay until the attempts are used (``failed``) or
  the webhook is older than its max age (``expired``).
* A Redis outage pauses the loop with backoff; an error in one delivery is
  logged and leaves it to its lease. What ends the loop itself is reported by
  the service's liveness (ModelService.watch).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import httpcore
from redis.exceptions import RedisError

from model_services.jobs import webhooks
from model_services.jobs.callbacks import CallbackPolicy, CallbackRefused, GuardedBackend
from model_services.jobs.outbox import Delivery, Outbox
from model_services.jobs.settings import JobSettings
from model_services.jobs.store import through_outage
from model_services.jobs.views import job_view

log = logging.getLogger("model_services.jobs")

T = TypeVar("T")

_POST_TIMEOUT_S = 10.0
# Longer than a whole attempt (connect + send + the receiver's answer), so a
# replica that is alive never loses its lease mid-post.
_LEASE_S = 3 * _POST_TIMEOUT_S
_POLL_S = 0.5  # how often a replica looks for due retries when nobody wakes it
_IN_FLIGHT = 16  # posts at once per replica; a slow receiver holds only its own
_MAX_BACKOFF_S = 2.0  # between tries while Redis is away
_TRANSPORT_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
    OSError,  # TimeoutError (the attempt's bound) among them
)


def retry_delay(settings: JobSettings, attempt: int) -> float:
    """Seconds before the attempt after ``attempt`` (from 1): doubling, capped."""
    doublings = min(attempt - 1, 60)  # 2**1000 would not fit a float
    return float(min(settings.webhook_max_backoff_s, settings.webhook_backoff_s * 2**doublings))


class WebhookDelivery:
    def __init__(
        self,
        outbox: Outbox,
        policy: CallbackPolicy,
        settings: JobSettings,
        on_outcome: Callable[[str], None],
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self._on_outcome = on_outcome
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpcore.default_ssl_context(),
            network_backend=GuardedBackend(policy),
            max_connections=_IN_FLIGHT,
            keepalive_expiry=5.0,
        )
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        # The earliest retry this replica scheduled: the loop looks again then
        # rather than at its next poll, so short backoffs are kept.
        self._soonest = float("inf")

    def start(self) -> asyncio.Task[None]:
        self._main = asyncio.get_running_loop().create_task(self._run(), name="jobs-webhooks")
        return self._main

    def wake(self) -> None:
        """Something may be due now (this replica just finished jobs)."""
        self._wake.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Claim what is due one last time, give the posts in flight a moment,
        then leave the rest to their leases (another replica takes them over)."""
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            await asyncio.gather(self._main, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._pool.aclose()

    # -- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            stopping = self._stopping  # read first: the round after stop() is the last
            self._wake.clear()
            if self._soonest <= time.time():
                self._soonest = float("inf")  # due now: this round claims it
            try:
                self._spawn(await self._claim())
                backoff = 0.1
            except RedisError as exc:
                if stopping:
                    return
                log.warning("webhook outbox unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
                continue
            if stopping:
                return
            wait_s = max(0.0, min(_POLL_S, self._soonest - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _claim(self) -> list[Delivery]:
        free = _IN_FLIGHT - len(self._tasks)
        if free <= 0:
            return []  # a finishing post wakes the loop
        now = time.time()
        return await self.outbox.claim_due(now, now + _LEASE_S, free)

    def _spawn(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            task = asyncio.get_running_loop().create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a free slot: more may be due

    # -- one attempt ----------------------------------------------------------------

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except Exception:
            # Left leased: it is retried when the lease runs out.
            log.exception("webhook %s: attempt %d failed unexpectedly", delivery.job_id, delivery.attempt)

    async def _attempt(self, d: Delivery) -> None:
        if time.time() >= d.expires_at:
            await self._drop(d, "expired", "it is older than the webhook max age")
            return
        try:
            body = webhooks.message(d.event, d.event_at, job_view(json.loads(d.record_json)))
        except (ValueError, KeyError, TypeError) as exc:
            await self._drop(d, "failed", f"its outbox entry is unreadable ({exc})")
            return
        try:
            status = await self._post(d, body)
            if 200 <= status < 300:
                await self._finish(d, None)
                self._on_outcome("delivered")
                return
            reason = f"HTTP {status}"
        except CallbackRefused as exc:
            await self._drop(d, "refused", str(exc))
            return
        except _TRANSPORT_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
        s = self.settings
        delay = retry_delay(s, d.attempt)
        next_at = time.time() + delay
        if d.attempt >= s.webhook_attempts:
            await self._drop(d, "failed", f"attempt {d.attempt} of {s.webhook_attempts} failed ({reason})")
        elif next_at >= d.expires_at:
            await self._drop(d, "expired", f"attempt {d.attempt} failed ({reason}) and the next is past its max age")
        else:
            log.warning(
                "webhook %s to %s failed (attempt %d of %d): %s; next in %.1fs",
                d.job_id,
                d.url,
                d.attempt,
                s.webhook_attempts,
                reason,
                delay,
            )
            await self._finish(d, next_at)

    async def _post(self, d: Delivery, body: bytes) -> int:
        headers = webhooks.headers(self.settings.webhook_secret, d.job_id, body, int(time.time()))
        parts = urlsplit(d.url)
        userinfo, _, host = parts.netloc.rpartition("@")
        # Set here: httpcore would write an IPv6 host without its brackets.
        headers["host"] = host
        url = d.url
        if userinfo:
            # user:password@ in a callback URL is Basic auth, as httpx sends it.
            user, _, password = userinfo.partition(":")
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            headers["authorization"] = f"Basic {token}"
            url = urlunsplit(parts._replace(netloc=host))
        # One bound for the whole attempt (connect, send, answer), well inside the lease.
        async with (
            asyncio.timeout(_POST_TIMEOUT_S),
            # Streamed and never read: a receiver's answer body is of no use,
            # and a huge one must not be buffered.
            self._pool.stream("POST", url, headers=list(headers.items()), content=body) as response,
        ):
            return response.status

    async def _drop(self, d: Delivery, outcome: str, why: str) -> None:
        log.warning("webhook %s to %s dropped (%s): %s", d.job_id, d.url, outcome, why)
        await self._finish(d, None)
        self._on_outcome(outcome)

    async def _finish(self, d: Delivery, next_at: float | None) -> None:
        if next_at is not None:
            self._soonest = min(self._soonest, next_at)
        if not await through_outage(lambda: self.outbox.finish(d, next_at)):
            log.info("webhook %s: lease ran out during the attempt; another replica has it", d.job_id)
