"""The job queue of one replica, wired together: Redis client, store, runner,
webhook outbox and delivery, metrics. Created by the app when ``--redis-url``
is set."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from model_services.jobs.callbacks import CallbackPolicy
from model_services.jobs.delivery import WebhookDelivery
from model_services.jobs.keys import Keys
from model_services.jobs.metrics import JobMetrics
from model_services.jobs.outbox import Outbox
from model_services.jobs.runner import JobRunner
from model_services.jobs.settings import JobSettings
from model_services.jobs.store import JobStore
from model_services.serving.service import ModelService

log = logging.getLogger("model_services.jobs")


class JobSystem:
    def __init__(self, service: ModelService, redis_url: str, settings: JobSettings) -> None:
        self.service = service
        self.settings = settings
        # A burst of submissions waits for a pooled connection (up to 5 s) instead
        # of failing; a short connect timeout makes a down Redis a quick 503.
        # After a Redis restart every pooled connection is dead; retrying a command
        # once or twice on a fresh connection keeps that from surfacing as a 503.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=64,
            timeout=5,
            decode_responses=True,
            socket_connect_timeout=2.0,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool on aclose()
        keys = Keys(settings.key_prefix, service.name, service.version)
        self.store = JobStore(self.client, keys, settings)
        self.metrics = JobMetrics(service.metrics.series)
        self.policy = CallbackPolicy.from_settings(settings)
        self.outbox = Outbox(self.client, keys)
        self.delivery = WebhookDelivery(self.outbox, self.policy, settings, self.metrics.webhook)
        self.runner = JobRunner(service, self.store, self.metrics, on_finished=self.delivery.wake)

    def start(self) -> None:
        for task in [*self.runner.start(), self.delivery.start()]:
            self.service.watch(task)

    async def stop(self) -> None:
        # Runner first: the jobs it finishes while stopping owe webhooks, which
        # the delivery loop's last round picks up.
        await self.runner.stop()
        await self.delivery.stop()
        await self.client.aclose()

    async def refresh_metrics(self) -> None:
        """Read the shared queue's gauges (at scrape time); keep old values if Redis is away."""
        try:
            self.metrics.depth.set(await self.store.depth())
            self.metrics.oldest_age.set(await self.store.oldest_age_s())
            self.metrics.dead_letters.set(await self.store.dead_count())
        except aioredis.RedisError as exc:
            log.warning("cannot read job gauges: %s", exc)
