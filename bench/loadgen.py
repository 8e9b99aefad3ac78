"""Fixed-rate (open-loop) HTTP/1.1 load generator for latency percentiles.

Each request has a scheduled send time ``start + i / rate`` and its latency is
measured from that time, not from when a connection became free, so queueing
in the client or the server shows up in the numbers instead of silently
lowering the offered rate (the "coordinated omission" of closed-loop tools such
as wrk). Requests go over a pool of keep-alive connections; when every
connection is busy a new one is opened, up to ``max_connections``, after which
requests wait (and that wait is counted).

Usage as a script:

    .venv/bin/python -m bench.loadgen http://127.0.0.1:10000/v1/predict --rate 1000 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from control_plane.percentiles import percentile


@dataclass(slots=True)
class Result:
    """Latencies in seconds from each request's scheduled send time."""

    rate: float
    duration: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    late_sends: int = 0  # requests the client itself could not send within 1 ms of schedule

    def percentile(self, p: float) -> float:
        found = percentile(self.latencies, p)
        return math.nan if found is None else found

    def summary_ms(self) -> dict[str, float]:
        return {
            "p50": self.percentile(50) * 1000,
            "p90": self.percentile(90) * 1000,
            "p99": self.percentile(99) * 1000,
            "max": (max(self.latencies) if self.latencies else float("nan")) * 1000,
        }

    def to_json(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "duration_s": self.duration,
            "requests": len(self.latencies),
            "errors": self.errors,
            "non_2xx": sum(n for s, n in self.statuses.items() if not 200 <= s < 300),
            "late_sends": self.late_sends,
            "latency_ms": {k: round(v, 4) for k, v in self.summary_ms().items()},
        }


def _request_bytes(method: str, path: str, host: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer


async def run(
    url: str,
    rate: float,
    duration: float,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    host: str | None = None,
    max_connections: int = 64,
    warmup: float = 0.5,
) -> Result:
    """Offer ``rate`` requests/s for ``duration`` s (after ``warmup`` s that are not recorded)."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    payload = _request_bytes(method, parts.path or "/", host or parts.netloc, dict(headers or {}), body)
    result = Result(rate, duration)
    idle: list[_Conn] = []
    opened = 0
    available = asyncio.Condition()

    async def connection() -> _Conn:
        nonlocal opened
        async with available:
            while not idle and opened >= max_connections:
                await available.wait()
            if idle:
                return idle.pop()
            opened += 1
        reader, writer = await asyncio.open_connection(*address)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def release(conn: _Conn | None) -> None:
        nonlocal opened
        async with available:
            if conn is None:
                opened -= 1
            else:
                idle.append(conn)
            available.notify()

    async def one(scheduled: float, record: bool) -> None:
        conn: _Conn | None = None
        try:
            conn = await connection()
            conn.writer.write(payload)
            status, response_headers, _ = await _read_response(conn.reader)
            done = time.perf_counter()
            if response_headers.get("connection", "").lower() == "close":
                conn.writer.close()
                conn = None
            if record:
                result.latencies.append(done - scheduled)
                result.statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if conn is not None:
                conn.writer.close()
            conn = None
            if record:
                result.errors += 1
        finally:
            await release(conn)

    total = int((warmup + duration) * rate)
    warm_count = int(warmup * rate)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001 and i >= warm_count:
            result.late_sends += 1
        tasks.append(asyncio.create_task(one(scheduled, i >= warm_count)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.writer.close()
    return result


def format_table(rows: list[tuple[str, Result]]) -> str:
    out = [
        "| arm | rate (req/s) | requests | p50 ms | p90 ms | p99 ms | max ms | errors | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        s = r.summary_ms()
        non_2xx = sum(n for code, n in r.statuses.items() if not 200 <= code < 300)
        out.append(
            f"| {name} | {r.rate:.0f} | {len(r.latencies)} | {s['p50']:.3f} | {s['p90']:.3f} | "
            f"{s['p99']:.3f} | {s['max']:.3f} | {r.errors} | {non_2xx} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--host", help="Host header (default: from the URL)")
    parser.add_argument("--header", action="append", default=[], help="NAME:VALUE, repeatable")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    result = asyncio.run(
        run(
            args.url,
            args.rate,
            args.duration,
            headers=headers,
            host=args.host,
            max_connections=args.connections,
        )
    )
    print(json.dumps(result.to_json()) if args.json else format_table([(args.url, result)]))


if __name__ == "__main__":
    main()
