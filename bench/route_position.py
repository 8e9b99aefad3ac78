"""Route-table position: latency for the first vs the last of 1,000 models on one listener.

One control plane and one Envoy serve two fleets of 1,000 models each, all with
the same fast upstream (an Envoy ``direct_response``), header pinning and one
header rule (four routes per model):

* by host: model ``h<i>`` has host ``h<i>.bench``. The translator gives each
  its own virtual host, which Envoy finds by a hash lookup on the Host header;
  first and last should cost the same.
* by path prefix: model ``p<i>`` has prefix ``/p<i>`` (zero-padded, so all
  prefixes have the same length) on the single host ``paths.bench``. The
  translator gives that virtual host a prefix matcher on ``:path`` with one
  route list per model, so Envoy looks the model up in a prefix tree instead
  of scanning 4,000 routes (with plain routes, the last model's default route
  was route number 4,000: +0.30 ms p50 and 0.32x throughput, see README).

Arms are interleaved over rounds; latencies are from the open-loop client
(``bench/loadgen.py``), medians over rounds; throughput from ``wrk`` if present.

    .venv/bin/python -m bench.route_position            # ~1.5 minutes
    .venv/bin/python -m bench.route_position --quick    # ~30 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    AdsEnvoy,
    ControlPlane,
    StaticEnvoy,
    direct_response_listener,
    environment,
    free_port,
    get,
    wait_for,
    write_results,
)
from bench.loadgen import Result, run


def model(name: str, host: str, prefix: str, upstream: int) -> str:
    return (
        "apiVersion: switchyard/v1\nkind: ModelRoute\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        f'  hosts: ["{host}"]\n'
        f"  path_prefix: {prefix}\n"
        f'  versions: {{v1: {{endpoints: ["127.0.0.1:{upstream}"]}}}}\n'
        "  pinning: {header: x-model-version}\n"
        "  rules:\n"
        "    - name: premium\n"
        "      match: {headers: {x-user-tier: premium}}\n"
        "      traffic: {v1: 100}\n"
    )


def wrk_rps(port: int, host: str, path: str, seconds: int) -> float | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per arm, short wrk")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    n = args.models
    width = len(str(n - 1))
    work = Path(tempfile.mkdtemp(prefix="route-position-"))
    upstream_port, listener = free_port(), free_port()
    started: list[Any] = []
    try:
        started.append(StaticEnvoy("upstream", work, [direct_response_listener("u", upstream_port)], []))
        policies = work / "policies"
        policies.mkdir()
        docs = [
            "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gw}\n"
            f"spec: {{address: 127.0.0.1, port: {listener}}}\n"
        ]
        docs += [model(f"h{i:0{width}d}", f"h{i:0{width}d}.bench", "/", upstream_port) for i in range(n)]
        docs += [model(f"p{i:0{width}d}", "paths.bench", f"/p{i:0{width}d}", upstream_port) for i in range(n)]
        (policies / "fleet.yaml").write_text("---\n".join(docs))
        control_plane = ControlPlane(policies, work).start(120)
        started.append(control_plane)
        envoy = AdsEnvoy(control_plane.xds_port, work)
        started.append(envoy)
        last = f"{n - 1:0{width}d}"
        first = f"{0:0{width}d}"
        arms = {
            "by host, first": (f"h{first}.bench", "/v1/predict"),
            "by host, last": (f"h{last}.bench", "/v1/predict"),
            "by path prefix, first": ("paths.bench", f"/p{first}/v1/predict"),
            "by path prefix, last": ("paths.bench", f"/p{last}/v1/predict"),
        }
        for host, path in arms.values():
            wait_for(lambda h=host, p=path: get(listener, p, host=h) == 200, 60, f"{host}{path}")
        results: dict[str, list[Result]] = {}
        for _ in range(args.rounds):
            for arm, (host, path) in arms.items():
                result = asyncio.run(
                    run(f"http://127.0.0.1:{listener}{path}", args.rate, args.seconds, host=host, warmup=0.3)
                )
                results.setdefault(arm, []).append(result)
        rows = []
        for arm, rs in results.items():
            host, path = arms[arm]
            rows.append(
                {
                    "arm": arm,
                    "host": host,
                    "path": path,
                    "requests": sum(len(r.latencies) for r in rs),
                    "errors": sum(r.errors for r in rs),
                    "non_2xx": sum(c for r in rs for s, c in r.statuses.items() if not 200 <= s < 300),
                    **{
                        f"{k}_ms": statistics.median(r.summary_ms()[k] for r in rs)
                        for k in ("p50", "p90", "p99", "max")
                    },
                    "wrk_rps": wrk_rps(listener, host, path, 2 if args.quick else 5),
                }
            )
        by = {r["arm"]: r for r in rows}
        deltas = {
            kind: {
                "p50_last_minus_first_ms": by[f"{kind}, last"]["p50_ms"] - by[f"{kind}, first"]["p50_ms"],
                "wrk_rps_last_over_first": (
                    by[f"{kind}, last"]["wrk_rps"] / by[f"{kind}, first"]["wrk_rps"]
                    if by[f"{kind}, first"]["wrk_rps"]
                    else None
                ),
            }
            for kind in ("by host", "by path prefix")
        }
        print(f"{n} models per fleet, {args.rate:.0f} req/s open loop, median of {args.rounds} round(s)\n")
        print("| arm | p50 ms | p90 ms | p99 ms | max ms | errors+non-2xx | wrk req/s (8 conns) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            rps = f"{r['wrk_rps']:.0f}" if r["wrk_rps"] else "n/a"
            print(
                f"| {r['arm']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                f"{r['max_ms']:.3f} | {r['errors'] + r['non_2xx']} | {rps} |"
            )
        print("\n| models distinguished | p50 last - first (ms) | throughput last / first |")
        print("|---|---:|---:|")
        for kind, d in deltas.items():
            ratio = f"{d['wrk_rps_last_over_first']:.3f}" if d["wrk_rps_last_over_first"] else "n/a"
            print(f"| {kind} | {d['p50_last_minus_first_ms']:+.3f} | {ratio} |")
        path = write_results(
            "route_position",
            {
                "benchmark": "route_position",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "environment": environment(),
                "settings": vars(args),
                "rows": rows,
                "deltas": deltas,
            },
        )
        print(f"\nwrote {path}")
    finally:
        for thing in reversed(started):
            thing.stop()


if __name__ == "__main__":
    main()
