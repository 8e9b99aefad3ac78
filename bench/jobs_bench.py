"""Async jobs: throughput through one model version, and what a job backlog
costs live requests.

Arms, one run, one service (sentiment-v3, model in a worker process, 1 torch
thread), its own redis-server (append-only, fsync every second):

1. jobs alone       a backlog drained by the service's job workers: jobs/s
2. per live rate (--rps, several allowed), both arms alternating for --rounds
   rounds, each arm's latencies pooled over the rounds:
   live alone       open-loop live /v1/predict at that rate for --seconds: p50/p99
   live + backlog   the same live load while a backlog drains: live p50/p99 and jobs/s

Goal: the backlog adds <= 10 % to live p99 (jobs only use spare batch slots).
The load generator shares the 2-core machine with the service and Redis.

    .venv/bin/python -m bench.jobs_bench [--store DIR] [--rps 80 150] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis

from bench.common import environment, free_port, percentile, write_results
from model_services.jobs.keys import Keys
from model_services.jobs.settings import JobSettings
from model_services.jobs.store import JobStore
from tests.support.procs import ModelService

STATS = "switchyard:jobstats:sentiment:sentiment-v3"
STREAM = "switchyard:jobs:sentiment:sentiment-v3"
TEXT = "The battery life is great but the app keeps crashing and support never answered"


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            with redis.Redis.from_url(url) as r:
                r.ping()
                return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def start_service(model_dir: Path, redis_url: str, concurrency: int, workdir: Path) -> ModelService:
    args = [
        "--num-threads", "1", "--log-level", "warning", "--redis-url", redis_url,
        "--jobs-concurrency", str(concurrency), "--jobs-max-depth", "1000000",
    ]  # fmt: skip
    service = ModelService(model_dir, workdir / f"service-{concurrency}.log", *args)
    service.wait_ready()
    return service


async def live_load(url: str, rps: float, seconds: float) -> tuple[list[float], int]:
    """Open loop: a request every 1/rps s whatever the answers do, so latency is honest.
    Returns the latencies (ms) of the answered requests and the error count."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=64)) as client:

        async def one() -> None:
            nonlocal errors
            t0 = time.perf_counter()
            response = await client.post("/v1/predict", json={"text": TEXT})
            if response.status_code == 200:
                latencies.append((time.perf_counter() - t0) * 1000.0)
            else:
                errors += 1

        tasks = []
        start = time.perf_counter()
        for i in range(int(rps * seconds)):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, errors


def summary(latencies: list[float], errors: int) -> dict[str, Any]:
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


async def fill_backlog(redis_url: str, count: int) -> None:
    """Straight into Redis, the way the API's submit does it (same script): over
    HTTP the workers drain the queue as fast as a client on this box can fill it."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = JobStore(client, Keys("switchyard", "sentiment", "sentiment-v3"), JobSettings(max_depth=10**7))

        async def one(i: int) -> None:
            await store.submit(f"{TEXT} #{i}", callback_url=None, idempotency_key=None, fingerprint="", request_id="")

        for start in range(0, count, 50):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
    finally:
        await client.aclose()


def completed(r: redis.Redis) -> int:
    return int(r.hget(STATS, "completed") or 0)


async def job_rate(r: redis.Redis, seconds: float) -> float:
    """Completions per second over a window in which the backlog never ran dry."""
    c0, t0 = completed(r), time.perf_counter()
    await asyncio.sleep(seconds)
    c1, t1 = completed(r), time.perf_counter()
    if r.xlen(STREAM) == 0:
        print("warning: the backlog ran dry inside the window; jobs/s is a lower bound", file=sys.stderr)
    return (c1 - c0) / (t1 - t0)


async def drain(r: redis.Redis) -> None:
    """Wait (bounded) until the workers have emptied the stream."""
    for _ in range(1500):  # <= 300 s
        if r.xlen(STREAM) == 0:
            return
        await asyncio.sleep(0.2)  # Redis has no event to wait on


async def run(
    url: str, redis_url: str, r: redis.Redis, rates: list[float], seconds: float, rounds: int
) -> dict[str, Any]:
    await live_load(url, rates[0], 2)  # warm-up

    await fill_backlog(redis_url, 8000)
    await asyncio.sleep(0.1)  # let the workers ramp up before the window opens
    alone_rate = await job_rate(r, min(seconds, 4.0))
    await drain(r)

    rows: list[dict[str, Any]] = []
    for rps in rates:
        # The arms alternate for several rounds and each arm's latencies are
        # pooled: this box is shared, and one arm run after the other would
        # catch a neighbour's burst in one arm only.
        alone: list[float] = []
        with_backlog: list[float] = []
        errors = [0, 0]
        job_rates: list[float] = []
        for _ in range(rounds):
            await asyncio.sleep(1.0)  # the service and Redis settle between arms
            latencies, errs = await live_load(url, rps, seconds)
            alone += latencies
            errors[0] += errs
            # Enough backlog to outlast the live window (job_rate warns if not).
            await fill_backlog(redis_url, int(alone_rate * seconds / 2) + 500)
            rate_task = asyncio.create_task(job_rate(r, seconds))
            latencies, errs = await live_load(url, rps, seconds)
            with_backlog += latencies
            errors[1] += errs
            job_rates.append(await rate_task)
            # Drop the rest of the backlog (XTRIM keeps the consumer group) so
            # the next live-alone arm is really alone.
            r.xtrim(STREAM, maxlen=0, approximate=False)
        live_alone, live_with = summary(alone, errors[0]), summary(with_backlog, errors[1])
        rows.append(
            {
                "rps": rps,
                "live_alone": live_alone,
                "live_with_backlog": live_with,
                "jobs_per_s_with_live": round(sum(job_rates) / len(job_rates), 1),
                "live_p99_increase_pct": round((live_with["p99_ms"] / live_alone["p99_ms"] - 1) * 100, 1),
            }
        )
    return {"jobs_per_s_alone": round(alone_rate, 1), "rates": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None, help="model store (built into a temp dir if absent)")
    parser.add_argument("--rps", type=float, nargs="+", default=[80.0, 150.0], help="live requests per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two arms per rate")
    parser.add_argument("--jobs-concurrency", type=int, default=8)
    args = parser.parse_args()
    env = environment()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            from model_services.store.train import build_store

            store = Path(tmp) / "store"
            build_store(store, only=["sentiment-v3"])
        redis_proc, redis_url = start_redis(Path(tmp))
        service = start_service(store / "sentiment" / "sentiment-v3", redis_url, args.jobs_concurrency, Path(tmp))
        try:
            with redis.Redis.from_url(redis_url, decode_responses=True) as r:
                results = asyncio.run(run(service.url, redis_url, r, args.rps, args.seconds, args.rounds))
        finally:
            service.stop(timeout=60)
            redis_proc.terminate()
            redis_proc.wait(10)
    data = {"environment": env, "settings": vars(args) | {"store": str(args.store)}, "results": results}
    path = write_results("jobs_bench", data)
    print("| live rate | arm | live req | live p50 ms | live p99 ms | live errors | jobs/s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    print(f"| 0 | jobs alone (backlog) | - | - | - | - | {results['jobs_per_s_alone']} |")
    for row in results["rates"]:
        la, lw = row["live_alone"], row["live_with_backlog"]
        print(
            f"| {row['rps']:g} | live alone | {la['requests']} | {la['p50_ms']} | {la['p99_ms']} | {la['errors']} | - |"
        )
        print(
            f"| {row['rps']:g} | live + job backlog | {lw['requests']} | {lw['p50_ms']} | {lw['p99_ms']} "
            f"| {lw['errors']} | {row['jobs_per_s_with_live']} |"
        )
    print()
    for row in results["rates"]:
        print(
            f"live p99 change with a backlog at {row['rps']:g} rps: {row['live_p99_increase_pct']:+.1f}% (goal <= +10%)"
        )
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
