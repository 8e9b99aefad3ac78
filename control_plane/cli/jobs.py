"""``switchyard jobs``: the async job queues (depth, age, throughput, dead letters).

Reads Redis directly rather than scraping replicas: the queues live there, and
Redis also knows about versions whose replicas are all down.
"""

from __future__ import annotations

import argparse
import os
import sys

from control_plane.cli.common import add_command, emit, output_of, output_options, table

COLUMNS = (
    ("model", "MODEL"),
    ("version", "VERSION"),
    ("depth", "DEPTH"),
    ("running", "RUNNING"),
    ("oldest_age_s", "OLDEST S"),
    ("completed", "COMPLETED"),
    ("mean_processing_ms", "MEAN MS"),
    ("reclaimed", "RECLAIMED"),
    ("failed_attempts", "FAILED TRIES"),
    ("dead_letters_now", "DEAD LETTERS"),
)


def cmd_jobs(args: argparse.Namespace) -> int:
    import redis

    from model_services.jobs.stats import version_stats

    with redis.Redis.from_url(args.redis_url, decode_responses=True, socket_connect_timeout=3) as client:
        try:
            rows = version_stats(client, args.prefix, args.model)
        except redis.RedisError as exc:
            print(
                f"switchyard jobs: cannot read the job queues at {args.redis_url}: {exc}\n"
                "  Is Redis running there? Pass the replicas' --redis-url (or set SWITCHYARD_REDIS_URL).",
                file=sys.stderr,
            )
            return 1
    if output_of(args) != "table":
        emit(rows, args, lambda _rows, _wide: None)
        return 0
    if not rows:
        print("no job queues yet")
        return 0
    print(table([h for _, h in COLUMNS], [[row[k] for k, _ in COLUMNS] for row in rows]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "jobs",
        summary="async job queues per model version: depth, age, dead letters",
        description="The async inference queues, read from Redis: per model version the queue depth,\n"
        "running jobs, the oldest job's age, completed jobs, mean processing time, jobs reclaimed\n"
        "from dead workers, failed attempts and dead letters.",
        examples=["switchyard jobs --redis-url redis://127.0.0.1:6379/0", "switchyard jobs --model sentiment -o json"],
        parents=[output_options(wide=False)],
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("SWITCHYARD_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the queue's Redis (default $SWITCHYARD_REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    p.add_argument("--model", default=None, metavar="MODEL", help="only this model")
    p.add_argument("--prefix", default="switchyard", help="the key prefix the services use (default switchyard)")
    p.set_defaults(func=cmd_jobs)
