"""What clients experienced, per version: Envoy's per-cluster counters and latency histogram.

Each connected Envoy's admin endpoint (its URL comes from the bootstrap's node
metadata, or ``serve --envoy-admin``) is read at the start and the end of every
check interval; a check looks only at the difference. Counters are cumulative
since Envoy started, so an Envoy that restarted mid-interval (a counter went
down) contributes what it counted since its restart. An Envoy that was not
there at the interval's start is left out of that interval: a check may see
fewer requests than there were, never requests from before the interval.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from control_plane.xds.nodes import NodeRegistry

Bucket = tuple[float, int]  # (upper bound in ms, cumulative count)


class MetricsError(Exception):
    """No statistics could be read (no Envoy known, or none answered)."""


@dataclass(frozen=True, slots=True)
class ClusterCounters:
    completed: int = 0
    errors: int = 0  # 5xx
    buckets: tuple[Bucket, ...] = ()  # upstream_rq_time, cumulative, ascending bounds

    def minus(self, earlier: ClusterCounters) -> ClusterCounters:
        if self.completed < earlier.completed or self.errors < earlier.errors:
            return self  # Envoy restarted: everything it has counted is new
        before = dict(earlier.buckets)
        return ClusterCounters(
            self.completed - earlier.completed,
            self.errors - earlier.errors,
            tuple((bound, max(0, n - before.get(bound, 0))) for bound, n in self.buckets),
        )

    def plus(self, other: ClusterCounters) -> ClusterCounters:
        mine, theirs = dict(self.buckets), dict(other.buckets)
        bounds = sorted(set(mine) | set(theirs))
        return ClusterCounters(
            self.completed + other.completed,
            self.errors + other.errors,
            tuple((b, mine.get(b, 0) + theirs.get(b, 0)) for b in bounds),
        )


# One reading of every Envoy: admin URL -> cluster name -> counters.
Reading = dict[str, dict[str, ClusterCounters]]


@dataclass(frozen=True, slots=True)
class Window:
    """One version's traffic over one interval, summed over every Envoy."""

    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 2),
        }


def quantile(buckets: Sequence[Bucket], q: float) -> float | None:
    """The q-quantile from cumulative histogram buckets, interpolating linearly inside
    the bucket it falls in (as Prometheus' histogram_quantile does); None if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    lower, below = 0.0, 0
    for upper, count in buckets:
        if count >= target and count > below:
            return lower + (upper - lower) * (target - below) / (count - below)
        lower, below = upper, count
    return buckets[-1][0]


def window(start: Reading, end: Reading, clusters: Sequence[str]) -> Window:
    """One version's traffic between two readings, summed over ``clusters`` (its HTTP and gRPC ones)."""
    total = ClusterCounters()
    for url, counters in end.items():
        if url not in start:
            continue  # not there when the interval began
        for cluster in clusters:
            now = counters.get(cluster, ClusterCounters())
            total = total.plus(now.minus(start[url].get(cluster, ClusterCounters())))
    return Window(total.completed, total.errors, quantile(total.buckets, 0.99))


# A failed gRPC call is HTTP 200; the gRPC statistics filter counts ModelInfer per status.
# These codes are the server's failures (Envoy maps them to 5xx: UNKNOWN, DEADLINE_EXCEEDED,
# UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS); NOT_FOUND or INVALID_ARGUMENT are the caller's.
_GRPC_FAILURES = "grpc\\.inference\\.GRPCInferenceService\\.ModelInfer\\.(?:2|4|12|13|14|15)"
_STATS = f"upstream_rq_completed|upstream_rq_5xx|upstream_rq_time|{_GRPC_FAILURES}"
_STAT = re.compile(rf"^cluster\.(?P<cluster>.+)\.(?P<stat>{_STATS})$")


def parse_stats(body: Mapping[str, Any]) -> dict[str, ClusterCounters]:
    """Envoy's ``/stats?format=json&histogram_buckets=cumulative`` -> counters per cluster."""
    completed: dict[str, int] = {}
    errors: dict[str, int] = {}  # upstream_rq_5xx
    grpc_errors: dict[str, int] = {}
    buckets: dict[str, tuple[Bucket, ...]] = {}
    for stat in body.get("stats", ()):
        if "histograms" in stat:
            histograms = stat["histograms"]
            for h in histograms if isinstance(histograms, list) else ():
                found = _STAT.match(str(h.get("name", "")))
                if found and found["stat"] == "upstream_rq_time":
                    buckets[found["cluster"]] = tuple(
                        (float(b["upper_bound"]), int(b["cumulative"])) for b in h.get("buckets", ())
                    )
            continue
        found = _STAT.match(str(stat.get("name", "")))
        if found is None or not isinstance(stat.get("value"), int):
            continue
        cluster, name = found["cluster"], found["stat"]
        if name == "upstream_rq_completed":
            completed[cluster] = stat["value"]
        elif name == "upstream_rq_5xx":
            errors[cluster] = stat["value"]
        else:
            grpc_errors[cluster] = grpc_errors.get(cluster, 0) + stat["value"]
    # Where gRPC codes were counted they are the whole story: an upstream reset is both a
    # 5xx and (in the local reply the client gets) UNAVAILABLE, and must count once.
    errors.update(grpc_errors)
    names = set(completed) | set(errors) | set(buckets)
    return {n: ClusterCounters(completed.get(n, 0), errors.get(n, 0), buckets.get(n, ())) for n in names}


def stats_filter(clusters: Iterable[str]) -> str:
    names = "|".join(re.escape(c) for c in sorted(clusters))
    return rf"^cluster\.({names})\.({_STATS})$"


def envoy_admin_urls(nodes: NodeRegistry, static: Sequence[str] = ()) -> list[str]:
    """Connected Envoys that announced an admin URL (node metadata), plus ``static`` ones."""
    return [n.admin_url for n in nodes.all() if n.connected and n.admin_url] + list(static)


@dataclass(slots=True)
class EnvoyStats:
    """Reads every known Envoy admin endpoint concurrently."""

    urls: Callable[[], list[str]]
    timeout_s: float = 2.0
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def read(self, clusters: Iterable[str]) -> Reading:
        urls = sorted(set(self.urls()))
        if not urls:
            raise MetricsError(
                "no Envoy admin endpoint known: bootstrap Envoys with `switchyard bootstrap` "
                "(it puts the admin URL in the node metadata) or pass `serve --envoy-admin URL`"
            )
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, trust_env=False)
        wanted = stats_filter(clusters)
        results = await asyncio.gather(*(self._read_one(u, wanted) for u in urls), return_exceptions=True)
        reading = {u: r for u, r in zip(urls, results, strict=True) if isinstance(r, dict)}
        if not reading:
            raise MetricsError(f"no Envoy admin endpoint answered ({results[0]!r})")
        return reading

    async def _read_one(self, url: str, wanted: str) -> dict[str, ClusterCounters]:
        assert self._client is not None
        base = url.rstrip("/")
        # With stats_flush_on_admin (set by our bootstrap) a read merges histograms
        # after it answers: read once to merge, then again for current buckets.
        await self._client.get(f"{base}/stats", params={"filter": "^$", "format": "json"})
        response = await self._client.get(
            f"{base}/stats", params={"filter": wanted, "format": "json", "histogram_buckets": "cumulative"}
        )
        response.raise_for_status()
        return parse_stats(response.json())

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
