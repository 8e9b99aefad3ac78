"""The webhook outbox in Redis: which webhooks are owed, and who is sending each.

Layout (keys.py): per model, a sorted set of job ids scored by the time of the
next attempt, and per pending webhook a hash (URL, event, the job as it was
when it finished, attempts, lease). The scripts that finish a job add to it in
the same step (scripts.enqueue_webhook). A replica leases due entries
(CLAIM_WEBHOOK) and reports back (FINISH_WEBHOOK): done, or when to try again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from model_services.jobs import scripts
from model_services.jobs.keys import Keys


@dataclass(frozen=True)
class Delivery:
    job_id: str
    url: str
    event: str  # "job.completed" | "job.failed"
    record_json: str  # the job record's view fields, as the outbox copied them
    event_at: float
    expires_at: float
    attempt: int  # this attempt's number, from 1
    token: str  # the lease: only its holder may finish or reschedule


class Outbox:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._claim = client.register_script(scripts.CLAIM_WEBHOOK)
        self._finish = client.register_script(scripts.FINISH_WEBHOOK)

    async def claim_due(self, now: float, lease_until: float, count: int) -> list[Delivery]:
        """Lease up to ``count`` deliveries due at ``now`` to this replica until
        ``lease_until``. Candidates are read first, then each is claimed
        atomically, so of two replicas racing for one only one gets it."""
        ids: Any = await self.client.zrangebyscore(self.keys.outbox, "-inf", repr(now), start=0, num=count)
        if not ids:
            return []
        token = uuid.uuid4().hex
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                await self._claim(
                    keys=[self.keys.outbox, self.keys.hook(job_id)],
                    args=[job_id, repr(now), repr(lease_until), token],
                    client=pipe,
                )
            replies = await pipe.execute()
        return [
            Delivery(
                job_id=job_id,
                url=str(reply[0] or ""),
                event=str(reply[1] or ""),
                record_json=str(reply[2] or "{}"),
                event_at=float(reply[3] or 0.0),
                expires_at=float(reply[4] or 0.0),
                attempt=int(reply[5] or 1),
                token=token,
            )
            for job_id, reply in zip(ids, replies, strict=True)
            if reply is not None
        ]

    async def finish(self, delivery: Delivery, next_at: float | None) -> bool:
        """Done with it (``next_at`` None: delivered or given up), or try again at
        ``next_at``. False when the lease was lost: someone else has it now."""
        done = await self._finish(
            keys=[self.keys.outbox, self.keys.hook(delivery.job_id)],
            args=[delivery.job_id, delivery.token, "" if next_at is None else repr(next_at)],
        )
        return bool(int(done))

    async def pending(self) -> int:
        return int(await self.client.zcard(self.keys.outbox))
