"""`switchyard traffic`: realistic requests through Envoy and a live table of where they went.

The mix follows the example policy: most requests are plain, some come from
premium users (header), some carry long inputs (the content-length rule) and
some pin a version (header or body field). Requests are sent at a fixed rate
(open loop), so a slow version shows up as latency rather than fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

TEXTS = (
    "This product is terrible",
    "Absolutely love it, works perfectly",
    "It broke after two days and support never answered",
    "Decent value for the price",
    "Would not buy again",
    "Exceeded my expectations, five stars",
)
LONG_TEXT = " ".join(["The battery life is fine but the screen scratches easily and the case feels cheap."] * 40)


@dataclass
class Tally:
    versions: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: int = 0


def request_for(rng: random.Random, pin_versions: list[str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """(kind, headers, JSON body) drawn from the mix."""
    text = rng.choice(TEXTS)
    roll = rng.random()
    if roll < 0.10:
        return "premium", {"x-user-tier": "premium"}, {"text": text}
    if roll < 0.18:
        return "long", {}, {"text": LONG_TEXT}
    if roll < 0.22 and pin_versions:
        return "pinned-header", {"x-model-version": rng.choice(pin_versions)}, {"text": text}
    if roll < 0.26 and pin_versions:
        return "pinned-body", {}, {"text": text, "model_version": rng.choice(pin_versions)}
    return "plain", {}, {"text": text}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def render(tally: Tally, elapsed: float, rps: float) -> str:
    total = sum(tally.versions.values()) + tally.errors
    lines = [
        f"switchyard traffic: {total} requests in {elapsed:.0f}s (target {rps:g}/s)   "
        + "  ".join(f"{code}: {n}" for code, n in sorted(tally.codes.items())),
        "",
        f"{'version':<24}{'requests':>10}{'share':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
    ]
    for version, n in sorted(tally.versions.items()):
        lat = tally.latency_ms[version]
        lines.append(
            f"{version:<24}{n:>10}{n / max(total, 1):>8.1%}"
            f"{percentile(lat, 0.5):>9.1f}{percentile(lat, 0.95):>9.1f}{percentile(lat, 0.99):>9.1f}"
        )
    if tally.errors:
        lines.append(f"{'(no answer)':<24}{tally.errors:>10}")
    lines.append("")
    lines.append("mix: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.kinds.items())))
    return "\n".join(lines)


async def run(url: str, rps: float, duration: float, pin_versions: list[str], seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    tty = sys.stdout.isatty()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(kind: str, headers: dict[str, str], body: dict[str, str], scheduled: float) -> None:
            try:
                response = await client.post("/v1/predict", json=body, headers=headers)
            except httpx.HTTPError:
                tally.errors += 1
                return
            # Timed from the scheduled send, so a backlog on the client side is not hidden.
            elapsed_ms = (time.perf_counter() - scheduled) * 1000
            version = response.headers.get("x-model-version", f"(HTTP {response.status_code})")
            tally.codes[response.status_code] += 1
            tally.versions[version] += 1
            tally.kinds[kind] += 1
            tally.latency_ms[version].append(elapsed_ms)

        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        next_report = start + 1
        i = 0
        while (now := time.perf_counter()) - start < duration:
            scheduled = start + i / rps
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            kind, headers, body = request_for(rng, pin_versions)
            task = asyncio.create_task(one(kind, headers, body, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            if time.perf_counter() >= next_report:
                next_report += 1
                if tty:
                    print("\033[H\033[J" + render(tally, time.perf_counter() - start, rps), flush=True)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        print(("\033[H\033[J" if tty else "") + render(tally, time.perf_counter() - start, rps), flush=True)
    return tally


def cmd_traffic(args: argparse.Namespace) -> int:
    pins = [v for v in args.pin.split(",") if v] if args.pin else []
    tally = asyncio.run(run(args.url, args.rps, args.duration, pins, args.seed))
    return 0 if sum(tally.versions.values()) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("traffic", help="send a realistic request mix through Envoy and show where it went")
    p.add_argument("--url", default="http://127.0.0.1:10000", help="Envoy's listener")
    p.add_argument("--rps", type=float, default=20.0, help="requests per second (open loop)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--pin",
        default="sentiment-v3,sentiment-v4",
        help="versions pinned requests ask for (comma-separated; empty for none)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_traffic)
