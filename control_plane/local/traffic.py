"""`switchyard traffic`: realistic requests through Envoy and a live table of where they went.

The mix follows the example policy: most requests are plain, some come from
premium users (header), some carry long inputs (the content-length rule) and
some pin a version (header or body field). Requests are sent at a fixed rate
(open loop), so a slow version shows up as latency rather than fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

import httpx

from control_plane.cli.common import add_command
from control_plane.percentiles import percentile

TEXTS = (
    "This product is terrible",
    "Absolutely love it, works perfectly",
    "It broke after two days and support never answered",
    "Decent value for the price",
    "Would not buy again",
    "Exceeded my expectations, five stars",
)
LONG_TEXT = " ".join(["The battery life is fine but the screen scratches easily and the case feels cheap."] * 40)


WINDOW_S = 5.0  # "recent": shares and latencies over this many seconds, so a shift shows at once


@dataclass(frozen=True, slots=True)
class Answer:
    at: float
    version: str
    latency_ms: float


@dataclass
class Tally:
    """Every answer since the start (totals), and the last ``window_s`` seconds of them (recent)."""

    window_s: float = WINDOW_S
    versions: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)  # why a request got no answer
    recent: deque[Answer] = field(default_factory=deque)

    def answered(self, version: str, code: int, latency_ms: float, at: float) -> None:
        self.codes[code] += 1
        self.versions[version] += 1
        self.latency_ms[version].append(latency_ms)
        self.recent.append(Answer(at, version, latency_ms))

    def failed(self, reason: str) -> None:
        self.failures[reason] += 1

    def window(self, now: float) -> list[Answer]:
        while self.recent and self.recent[0].at < now - self.window_s:
            self.recent.popleft()
        return list(self.recent)

    @property
    def errors(self) -> int:
        return sum(self.failures.values())


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


def _ms(values: list[float], q: float) -> float:
    found = percentile(values, q)
    return 0.0 if found is None else found


def why_no_answer(exc: httpx.HTTPError, url: str) -> str:
    """What a failed request means for someone running `switchyard traffic`."""
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {url}: is Envoy listening there? (start `switchyard up`, or pass --url)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def render(tally: Tally, elapsed: float, rps: float, now: float, *, final: bool = False) -> str:
    total = sum(tally.versions.values()) + tally.errors
    recent = tally.window(now)
    recent_count: Counter[str] = Counter(a.version for a in recent)
    recent_latency: dict[str, list[float]] = defaultdict(list)
    for answer in recent:
        recent_latency[answer.version].append(answer.latency_ms)
    window = f"last {tally.window_s:g}s"
    lines = [
        f"switchyard traffic: {total} requests in {elapsed:.0f}s (target {rps:g}/s)   "
        + "  ".join(f"{code}: {n}" for code, n in sorted(tally.codes.items())),
        "",
        f"{'version':<24}{'requests':>10}{'share':>8}   {window + ': share':>16}"
        + "".join(f"{p:>9}" for p in ("p50 ms", "p95 ms", "p99 ms")),
    ]
    for version in sorted(tally.versions):
        n = tally.versions[version]
        # While running, latencies are the recent window's; the summary's are the whole run's.
        lat = tally.latency_ms[version] if final else recent_latency.get(version, [])
        share = recent_count[version] / len(recent) if recent else 0.0
        lines.append(
            f"{version:<24}{n:>10}{n / max(total, 1):>8.1%}   {share:>16.1%}"
            f"{_ms(lat, 50):>9.1f}{_ms(lat, 95):>9.1f}{_ms(lat, 99):>9.1f}"
        )
    for reason, n in tally.failures.most_common():
        lines.append(f"{'(no answer)':<24}{n:>10}{n / max(total, 1):>8.1%}   {reason}")
    lines.append("")
    lines.append("mix sent: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.kinds.items())))
    lines.append("latencies: " + ("the whole run" if final else window))
    return "\n".join(lines)


async def run(url: str, rps: float, duration: float, pin_versions: list[str], seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    tty = sys.stdout.isatty()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, trust_env=False) as client:

        async def one(headers: dict[str, str], body: dict[str, str], scheduled: float) -> None:
            try:
                response = await client.post("/v1/predict", json=body, headers=headers)
            except httpx.HTTPError as exc:
                tally.failed(why_no_answer(exc, url))
                return
            # Timed from the scheduled send, so a backlog on the client side is not hidden.
            now = time.perf_counter()
            version = response.headers.get("x-model-version", f"(HTTP {response.status_code})")
            tally.answered(version, response.status_code, (now - scheduled) * 1000, now)

        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        next_report = start + 1
        i = 0
        while (now := time.perf_counter()) - start < duration:
            scheduled = start + i / rps
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            kind, headers, body = request_for(rng, pin_versions)
            tally.kinds[kind] += 1
            task = asyncio.create_task(one(headers, body, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            if time.perf_counter() >= next_report:
                next_report += 1
                now = time.perf_counter()
                if tty:
                    print("\033[H\033[J" + render(tally, now - start, rps, now), flush=True)
        if tasks:
            await asyncio.wait(tasks, timeout=30)


def cmd_traffic(args: argparse.Namespace) -> int:
    pins = [v for v in args.pin.split(",") if v] if args.pin else []
    tally = Tally(window_s=args.window)
    started = time.perf_counter()
    interrupted = False
    try:
        asyncio.run(run(args.url, args.rps, args.duration, pins, args.seed, tally))
    except KeyboardInterrupt:  # Ctrl-C: stop sending, and sum up what was seen
        interrupted = True
    now = time.perf_counter()
    clear = "\033[H\033[J" if sys.stdout.isatty() and not interrupted else ("\n" if interrupted else "")
    print(clear + render(tally, now - started, args.rps, now, final=True), flush=True)
    return 0 if sum(tally.versions.values()) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        "traffic",
        summary="send a realistic request mix through Envoy and show where it went",
        description="Send requests through Envoy at a fixed rate (open loop) and show, per version that\n"
        "answered, the requests and share since the start, the share over the last few seconds\n"
        "(so a shift shows within a second or two) and the recent latency percentiles. The mix\n"
        "follows the example policy: plain requests, premium users (x-user-tier header), long\n"
        "inputs, and clients pinning a version by header or body field. Ctrl-C stops it and\n"
        "prints a summary of the whole run.",
        examples=[
            "switchyard traffic --rps 20 --duration 10",
            "switchyard traffic --url http://127.0.0.1:10000 --pin ''      # no pinned requests",
        ],
    )
    p.add_argument(
        "--url",
        default=os.environ.get("SWITCHYARD_ENVOY_URL", "http://127.0.0.1:10000"),
        help="Envoy's listener (env SWITCHYARD_ENVOY_URL; default http://127.0.0.1:10000)",
    )
    p.add_argument("--rps", type=float, default=20.0, metavar="N", help="requests per second, open loop (default 20)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S", help="seconds to run (default 30)")
    p.add_argument(
        "--window",
        type=float,
        default=WINDOW_S,
        metavar="S",
        help=f"seconds the recent columns cover (default {WINDOW_S:g})",
    )
    p.add_argument(
        "--pin",
        default="sentiment-v3,sentiment-v4",
        help="versions pinned requests ask for (comma-separated; empty for none)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the request mix (default 1)")
    p.set_defaults(func=cmd_traffic)
