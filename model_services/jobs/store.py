"""The job store: records, streams and dead letters in Redis.

Layout (see keys.py): a hash per job (``<p>:job:<id>``) holds its status, input,
result or error and timestamps; each version has a stream of job ids read by
the consumer group ``workers``. An entry is acknowledged *and deleted* when its
job is finished, so a stream's length is its depth (queued + running), which
backpressure and the metrics read in O(1). Failed jobs move to
``<stream>:dead`` with everything needed to re-queue them (kept to a length
and an age). A finished job with a callback leaves a webhook in the model's
outbox in the same step (see delivery.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from model_services.jobs import scripts
from model_services.jobs.keys import GROUP, Keys, index_key, job_key
from model_services.jobs.settings import JobSettings

T = TypeVar("T")

OUTAGE_RETRIES = 150  # x backoff (at most 0.5 s): rides out a Redis restart of a minute or so


async def through_outage(call: Callable[[], Awaitable[T]], attempts: int = OUTAGE_RETRIES) -> T:
    """``call()``, retried while Redis is unreachable: for writes whose loss would cost
    a rerun (a computed result) or a second POST (a delivered webhook's record)."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return await call()
        except (RedisConnectionError, RedisTimeoutError):
            if attempt + 1 == attempts:
                raise
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Submitted:
    kind: str  # "created", "existing" or "full"
    job_id: str = ""
    depth: int = 0


@dataclass(frozen=True)
class Started:
    kind: str  # "run", "skip" or "dead"
    text: str = ""
    queued_at: float = 0.0
    attempts: int = 0
    reclaimed: bool = False
    detail: str = ""


@dataclass(frozen=True)
class DeadLetter:
    entry_id: str
    job_id: str
    version: str
    attempts: int
    error: dict[str, Any]
    failed_at: float
    text: str
    callback_url: str
    created_at: float


def fingerprint(text: str, callback_url: str | None, model_version: str | None) -> str:
    """What an Idempotency-Key promises: the same request, not just the same key."""
    raw = json.dumps([text, callback_url, model_version])
    return hashlib.sha256(raw.encode()).hexdigest()


class JobStore:
    """Not bound to a replica: any replica of any version reads any job of its model."""

    def __init__(self, client: aioredis.Redis, keys: Keys, settings: JobSettings) -> None:
        self.client = client
        self.keys = keys
        self.settings = settings
        self._ttl_ms = int(settings.result_ttl_s * 1000)
        # An unfinished record must outlive its timeout, or a slow job's result
        # would land on a vanished record.
        self._record_ttl_ms = int((settings.result_ttl_s + settings.timeout_s) * 1000)
        # What a script that may dead-letter (and so owe a webhook) needs to know.
        self._dead_args = (settings.webhook_max_age_s, settings.dead_letter_max_len, settings.dead_letter_max_age_s)
        self._submit = client.register_script(scripts.SUBMIT)
        self._start = client.register_script(scripts.START)
        self._complete = client.register_script(scripts.COMPLETE)
        self._fail = client.register_script(scripts.FAIL)
        self._cancel = client.register_script(scripts.CANCEL)
        self._requeue = client.register_script(scripts.REQUEUE)

    # -- the API side ------------------------------------------------------------

    async def submit(
        self,
        text: str,
        *,
        callback_url: str | None,
        idempotency_key: str | None,
        fingerprint: str,
        request_id: str,
    ) -> Submitted:
        job_id = uuid.uuid4().hex
        now = time.time()
        k = self.keys
        fields: dict[str, str] = {
            "id": job_id,
            "model": k.model,
            "version": k.version,
            "status": "queued",
            "text": text,
            "callback_url": callback_url or "",
            "fingerprint": fingerprint,
            "request_id": request_id,
            "created_at": repr(now),
            "queued_at": repr(now),
            "attempts": "0",
        }
        pairs = [x for item in fields.items() for x in item]
        idem = k.idempotency(idempotency_key) if idempotency_key else k.job(job_id)
        kind, value = await self._submit(
            keys=[k.job(job_id), k.stream, idem, index_key(k.prefix)],
            args=[
                job_id,
                self.settings.max_depth,
                self._record_ttl_ms,
                "1" if idempotency_key else "0",
                f"{k.model}/{k.version}",
                *pairs,
            ],
        )
        if kind == "full":
            return Submitted("full", depth=int(value))
        return Submitted(str(kind), job_id=str(value))

    async def get(self, job_id: str) -> dict[str, str] | None:
        record: Any = await self.client.hgetall(job_key(self.keys.prefix, job_id))
        if not record or record.get("model") != self.keys.model:
            return None
        return dict(record)

    async def cancel(self, record: dict[str, str]) -> str:
        keys = self.keys.other(record["version"])
        before: str = await self._cancel(
            keys=[keys.job(record["id"]), keys.stream], args=[repr(time.time()), self._ttl_ms]
        )
        return before

    # -- the worker side ---------------------------------------------------------------

    async def ensure_group(self) -> None:
        try:
            # From the start of the stream: jobs accepted before any worker existed count.
            await self.client.xgroup_create(self.keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, str]]:
        """New entries for this consumer: (entry id, job id). ``block_ms`` <= 0
        does not block (Redis reads BLOCK 0 as "forever", so it is left out)."""
        block = block_ms if block_ms > 0 else None
        reply: Any = await self.client.xreadgroup(GROUP, consumer, {self.keys.stream: ">"}, count=count, block=block)
        return [(entry, fields.get("job", "")) for _, entries in reply or [] for entry, fields in entries]

    async def reclaim(self, consumer: str, count: int) -> list[tuple[str, str]]:
        """Entries whose worker stopped heart-beating (died) for the visibility timeout."""
        idle_ms = int(self.settings.visibility_timeout_s * 1000)
        reply = await self.client.xautoclaim(
            self.keys.stream, GROUP, consumer, min_idle_time=idle_ms, start_id="0-0", count=count
        )
        entries = reply[1] if len(reply) > 1 else []
        return [(entry, fields.get("job", "")) for entry, fields in entries if fields]

    async def heartbeat(self, consumer: str, entries: list[str]) -> None:
        """Reset the idle time of entries this worker is still working on."""
        if entries:
            await self.client.xclaim(self.keys.stream, GROUP, consumer, 0, list[Any](entries), justid=True)

    def _start_call(self, entry: str, job_id: str, consumer: str, client: Any) -> Any:
        k = self.keys
        return self._start(
            keys=[k.job(job_id), k.stream, k.dead, k.stats, k.outbox, k.hook(job_id)],
            args=[
                entry,
                GROUP,
                consumer,
                repr(time.time()),
                self.settings.max_attempts,
                self.settings.timeout_s,
                self._ttl_ms,
                *self._dead_args,
            ],
            client=client,
        )

    @staticmethod
    def _started(reply: Any) -> Started:
        kind = str(reply[0])
        if kind == "run":
            return Started("run", str(reply[1]), float(reply[2]), int(reply[3]), reply[4] == "1")
        return Started(kind, detail=str(reply[1]))

    async def start(self, entry: str, job_id: str, consumer: str) -> Started:
        return self._started(await self._start_call(entry, job_id, consumer, None))

    async def start_many(self, entries: list[tuple[str, str]], consumer: str) -> list[Started]:
        """START for several entries in one round trip (a pipeline, not a
        transaction: each script is atomic by itself, which is all a job needs)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for entry, job_id in entries:
                await self._start_call(entry, job_id, consumer, pipe)
            replies = await pipe.execute()
        return [self._started(reply) for reply in replies]

    def _complete_call(self, entry: str, job_id: str, result: dict[str, Any], seconds: float, client: Any) -> Any:
        k = self.keys
        return self._complete(
            keys=[k.job(job_id), k.stream, k.stats, k.outbox, k.hook(job_id)],
            args=[
                entry,
                GROUP,
                repr(time.time()),
                json.dumps(result),
                self._ttl_ms,
                repr(seconds),
                self.settings.webhook_max_age_s,
            ],
            client=client,
        )

    async def complete(self, entry: str, job_id: str, result: dict[str, Any], seconds: float) -> bool:
        return bool(int(await self._complete_call(entry, job_id, result, seconds, None)))

    async def complete_many(self, done: list[tuple[str, str, dict[str, Any], float]]) -> list[bool]:
        """COMPLETE for several jobs in one round trip; replaying it is harmless
        (a completed job stores nothing), so a retry after a lost reply is safe."""
        async with self.client.pipeline(transaction=False) as pipe:
            for entry, job_id, result, seconds in done:
                await self._complete_call(entry, job_id, result, seconds, pipe)
            replies = await pipe.execute()
        return [bool(int(reply)) for reply in replies]

    async def fail(self, entry: str, job_id: str, error: dict[str, str]) -> str:
        k = self.keys
        outcome: str = await self._fail(
            keys=[k.job(job_id), k.stream, k.dead, k.stats, k.outbox, k.hook(job_id)],
            args=[
                entry,
                GROUP,
                repr(time.time()),
                json.dumps(error),
                self.settings.max_attempts,
                self._ttl_ms,
                *self._dead_args,
            ],
        )
        return outcome

    # -- gauges ------------------------------------------------------------------------

    async def depth(self) -> int:
        return int(await self.client.xlen(self.keys.stream))

    async def oldest_age_s(self) -> float:
        head = await self.client.xrange(self.keys.stream, count=1)
        if not head:
            return 0.0
        millis = int(str(head[0][0]).split("-")[0])
        return max(0.0, time.time() - millis / 1000.0)

    async def dead_count(self) -> int:
        return int(await self.client.xlen(self.keys.dead))

    async def trim_dead(self) -> None:
        """Drop dead letters past their max age. Adding one trims too; this
        covers a stream that stopped growing."""
        min_id = int((time.time() - self.settings.dead_letter_max_age_s) * 1000)
        await self.client.xtrim(self.keys.dead, minid=min_id, approximate=False)

    # -- dead letters (any version of this model) -------------------------------------

    async def versions(self) -> list[str]:
        members: Any = await self.client.smembers(index_key(self.keys.prefix))
        prefix = f"{self.keys.model}/"
        return sorted(m[len(prefix) :] for m in members if m.startswith(prefix))

    async def dead_letters(self) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for version in await self.versions():
            entries: Any = await self.client.xrange(self.keys.other(version).dead)
            for entry, f in entries:
                out.append(
                    DeadLetter(
                        entry_id=entry,
                        job_id=f.get("job", ""),
                        version=f.get("version", version),
                        attempts=int(f.get("attempts", "0") or 0),
                        error=json.loads(f.get("error") or "{}"),
                        failed_at=float(f.get("failed_at", "0")),
                        text=f.get("text", ""),
                        callback_url=f.get("callback_url", ""),
                        created_at=float(f.get("created_at", "0")),
                    )
                )
        return out

    async def requeue(self, dead: DeadLetter) -> bool:
        """Back onto the stream of the version it was assigned, attempts reset."""
        keys = self.keys.other(dead.version)
        fields = {
            "id": dead.job_id,
            "model": keys.model,
            "version": dead.version,
            "text": dead.text,
            "callback_url": dead.callback_url,
            "fingerprint": "",
            "request_id": "",
            "created_at": repr(dead.created_at),
        }
        entry = await self._requeue(
            keys=[keys.job(dead.job_id), keys.stream, keys.dead],
            args=[dead.entry_id, repr(time.time()), self._record_ttl_ms, *[x for kv in fields.items() for x in kv]],
        )
        return bool(entry)
