"""Hop cost: one fast upstream reached directly, through a bare Envoy, and through Switchyard's Envoy.

Arms, all in one run against the same upstream (an Envoy answering with a
``direct_response``, so the upstream itself costs almost nothing and the hop is
visible):

* ``direct``      client -> upstream
* ``bare envoy``  client -> static Envoy (one route, one cluster) -> upstream
* ``switchyard``  client -> Envoy configured over ADS by ``switchyard serve``
                  (a 90/10 split, a header rule, header + body pinning, retries,
                  health checks; mirroring off) -> upstream

Latency comes from the open-loop client in ``bench/loadgen.py`` (percentiles from
each request's scheduled send time); throughput from ``wrk`` when installed. Arms
are interleaved over several rounds and each statistic is the median over rounds,
so drift in background load hits every arm alike. Goal (issue 2): Switchyard's
extra latency over direct is at most 1.3x the bare hop's.

    .venv/bin/python -m bench.hop_cost            # ~1.5 minutes
    .venv/bin/python -m bench.hop_cost --quick    # ~20 seconds
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
    proxy_listener,
    static_cluster,
    wait_for,
    write_results,
)
from bench.loadgen import Result, run

POLICY = """\
apiVersion: switchyard/v1
kind: Gateway
metadata: {{name: gateway}}
spec: {{address: 127.0.0.1, port: {listener}}}
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {{name: sentiment}}
spec:
  versions:
    sentiment-v3: {{endpoints: ["127.0.0.1:{upstream}"]}}
    sentiment-v4: {{endpoints: ["127.0.0.1:{upstream}"]}}
    sentiment-v4-large: {{endpoints: ["127.0.0.1:{upstream}"]}}
  traffic: {{sentiment-v3: 90, sentiment-v4: 10}}
  rules:
    - name: premium
      match: {{headers: {{x-user-tier: premium}}}}
      traffic: {{sentiment-v4-large: 100}}
  pinning: {{header: x-model-version, body_field: model_version}}
  retries: {{attempts: 2}}
  health_check: {{path: /v2/health/ready, interval: 2s}}
"""

BODY = b'{"text": "the movie was fine", "model_version": "sentiment-v3"}'


def wrk(url: str, seconds: float, connections: int, lua: Path | None) -> dict[str, Any] | None:
    if shutil.which("wrk") is None:
        return None
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency"]
    if lua is not None:
        cmd += ["-s", str(lua)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30, check=False).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "requests_per_s": float(rps.group(1)) if rps else None,
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s per arm, short wrk")
    parser.add_argument("--rate", type=float, default=500, help="offered load per arm, requests/s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="per arm per round")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    work = Path(tempfile.mkdtemp(prefix="hop-cost-"))
    upstream_port, bare_port, listener_port = free_port(), free_port(), free_port()
    started: list[Any] = []
    try:
        upstream = StaticEnvoy("upstream", work, [direct_response_listener("upstream", upstream_port)], [])
        started.append(upstream)
        bare = StaticEnvoy(
            "bare",
            work,
            [proxy_listener("bare", bare_port, "upstream")],
            [static_cluster("upstream", upstream_port)],
        )
        started.append(bare)
        policies = work / "policies"
        policies.mkdir()
        (policies / "hop.yaml").write_text(POLICY.format(listener=listener_port, upstream=upstream_port))
        control_plane = ControlPlane(policies, work).start(120)
        started.append(control_plane)
        envoy = AdsEnvoy(control_plane.xds_port, work)
        started.append(envoy)
        wait_for(lambda: get(listener_port, "/v1/predict") == 200, 30, "the Switchyard route")

        arms = {"direct": upstream_port, "bare envoy": bare_port, "switchyard": listener_port}
        requests = {
            "GET": ("GET", {}, b""),
            "POST json": ("POST", {"content-type": "application/json"}, BODY),
        }
        runs: dict[tuple[str, str], list[Result]] = {}
        for _ in range(args.rounds):
            for request_name, (method, headers, body) in requests.items():
                for arm, port in arms.items():
                    result = asyncio.run(
                        run(
                            f"http://127.0.0.1:{port}/v1/predict",
                            args.rate,
                            args.seconds,
                            method=method,
                            headers=headers,
                            body=body,
                            host="sentiment.example",
                            warmup=0.3,
                        )
                    )
                    runs.setdefault((request_name, arm), []).append(result)

        throughput: dict[str, Any] = {}
        lua = work / "post.lua"
        lua.write_text(
            f'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\nwrk.body = \'{BODY.decode()}\'\n'
        )
        for arm, port in arms.items():
            for request_name, script in (("GET", None), ("POST json", lua)):
                throughput[f"{request_name} {arm}"] = wrk(
                    f"http://127.0.0.1:{port}/v1/predict", 2 if args.quick else 5, 8, script
                )

        rows: list[dict[str, Any]] = []
        for (request_name, arm), results in runs.items():

            def med(key: str, rs: list[Result] = results) -> float:
                return statistics.median(r.summary_ms()[key] for r in rs)

            rows.append(
                {
                    "request": request_name,
                    "arm": arm,
                    "rate": args.rate,
                    "rounds": len(results),
                    "requests": sum(len(r.latencies) for r in results),
                    "errors": sum(r.errors for r in results),
                    "non_2xx": sum(n for r in results for s, n in r.statuses.items() if not 200 <= s < 300),
                    "p50_ms": med("p50"),
                    "p90_ms": med("p90"),
                    "p99_ms": med("p99"),
                    "max_ms": med("max"),
                    "wrk": throughput.get(f"{request_name} {arm}"),
                }
            )
        verdicts: dict[str, Any] = {}
        for request_name in requests:
            by_arm = {r["arm"]: r for r in rows if r["request"] == request_name}
            direct = by_arm["direct"]["p50_ms"]
            bare_hop = by_arm["bare envoy"]["p50_ms"] - direct
            sy_hop = by_arm["switchyard"]["p50_ms"] - direct
            verdicts[request_name] = {
                "bare_hop_p50_ms": bare_hop,
                "switchyard_hop_p50_ms": sy_hop,
                "ratio": sy_hop / bare_hop if bare_hop > 0 else None,
                "goal": 1.3,
            }
        print_table(rows, verdicts)
        path = write_results(
            "hop_cost",
            {
                "benchmark": "hop_cost",
                "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "environment": environment(),
                "settings": vars(args),
                "rows": rows,
                "hop": verdicts,
            },
        )
        print(f"\nwrote {path}")
    finally:
        for thing in reversed(started):
            thing.stop()


def print_table(rows: list[dict[str, Any]], verdicts: dict[str, Any]) -> None:
    print("| request | arm | p50 ms | p90 ms | p99 ms | max ms | errors+non-2xx | wrk req/s (8 conns) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w = r["wrk"]
        rps = f"{w['requests_per_s']:.0f}" if w and w["requests_per_s"] else "n/a"
        print(
            f"| {r['request']} | {r['arm']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['max_ms']:.3f} | {r['errors'] + r['non_2xx']} | {rps} |"
        )
    print()
    print("| request | bare hop p50 ms | Switchyard hop p50 ms | ratio | goal |")
    print("|---|---:|---:|---:|---:|")
    for name, v in verdicts.items():
        ratio = f"{v['ratio']:.2f}x" if v["ratio"] is not None else "n/a"
        print(f"| {name} | {v['bare_hop_p50_ms']:.3f} | {v['switchyard_hop_p50_ms']:.3f} | {ratio} | <= 1.3x |")


if __name__ == "__main__":
    main()
