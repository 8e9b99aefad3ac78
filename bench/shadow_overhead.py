"""Shadow overhead: client latency with 100% of requests mirrored versus none, in one run.

Arms, against the same two real model services (the example sentiment-v3 model,
served once as production ``sentiment-v3`` and once as the shadow ``sentiment-v5``,
both reporting their answers to the control plane's shadow collector):

* ``none``        Envoy -> sentiment-v3 (no mirror)
* ``mirror, no capture``  the same mirrored copy to sentiment-v6, an identical
                  service that reports nothing: the cost of mirroring alone
* ``mirror 100%`` Envoy -> sentiment-v3, and a mirrored copy of every request to
                  sentiment-v5; the control plane pairs the answers

The arms alternate over several rounds (mirroring switched through the admin
API, waiting until Envoy has ACKed each change), and each statistic is the median
over rounds, so drift in background load hits both arms alike. Latency comes from
the open-loop client in ``bench/loadgen.py``. Goal (issue 6): p99 with mirroring
at most 1.10x p99 without. On a 2-core machine the shadow service, the
collector and the client share the cores with production, so the mirrored arm
also measures CPU contention, not only the mirror's network cost.

    .venv/bin/python -m bench.shadow_overhead            # ~2 minutes
    .venv/bin/python -m bench.shadow_overhead --quick    # ~40 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import AdsEnvoy, ControlPlane, environment, free_port, wait_for, write_results
from bench.loadgen import Result, run
from tests.support.procs import ModelService

MODEL = "sentiment"


def policy(listener: int, prod: str, shadow: str, silent: str) -> str:
    return f"""\
apiVersion: switchyard/v1
kind: Gateway
metadata: {{name: gateway}}
spec: {{address: 127.0.0.1, port: {listener}}}
---
apiVersion: switchyard/v1
kind: ModelRoute
metadata: {{name: {MODEL}}}
spec:
  versions:
    sentiment-v3: {{endpoints: ["{prod}"]}}
    sentiment-v5: {{endpoints: ["{shadow}"]}}
    sentiment-v6: {{endpoints: ["{silent}"]}}
  traffic: {{sentiment-v3: 100}}
"""


def model_service(store: Path, version: str, workdir: Path, report_url: str | None) -> tuple[ModelService, str]:
    args = [
        "--served-version", version,
        *(["--report-url", report_url] if report_url else []),
        # Services share two cores: one torch thread each, or each oversubscribes both.
        "--num-threads", "1",
        "--log-level", "warning",
    ]  # fmt: skip
    service = ModelService(store / "sentiment" / "sentiment-v3", workdir / f"{version}.log", *args)
    return service, service.address


def set_mirror(admin: str, version: str | None) -> None:
    url = f"{admin}/v1/models/{MODEL}/shadow"
    response = httpx.delete(url, timeout=30)  # one mirror at a time
    response.raise_for_status()
    if version is not None:
        response = httpx.put(url, json={"version": version, "percent": 100}, timeout=30)
    response.raise_for_status()

    def synced() -> bool:
        status = httpx.get(f"{admin}/v1/status", timeout=10).json()
        return all(n["synced_snapshot"] == status["snapshot_version"] for n in status["envoys"] if n["connected"])

    wait_for(synced, 30, "Envoy to ACK the mirror change")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=100.0, help="offered requests/s")
    args = parser.parse_args()
    rounds, duration = (2, 5.0) if args.quick else (4, 12.0)

    from model_services.store.train import build_store

    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as tmp:
        work = Path(tmp)
        store = work / "store"
        build_store(store, only=["sentiment-v3"])
        policies = work / "policies"
        policies.mkdir()
        listener = free_port()
        procs: list[ModelService] = []
        cp = envoy = None
        try:
            # The control plane first: the services report to its admin API.
            (policies / "p.yaml").write_text(policy(listener, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"))
            cp = ControlPlane(policies, work).start(120)
            admin = f"http://127.0.0.1:{cp.admin_port}"
            reports = f"{admin}/v1/shadow/reports"
            services = {
                "sentiment-v3": model_service(store, "sentiment-v3", work, reports),
                "sentiment-v5": model_service(store, "sentiment-v5", work, reports),
                "sentiment-v6": model_service(store, "sentiment-v6", work, None),
            }
            procs = [p for p, _ in services.values()]
            for service in procs:
                service.wait_ready(180)
            (policies / "p.yaml").write_text(
                policy(listener, *(services[v][1] for v in ("sentiment-v3", "sentiment-v5", "sentiment-v6")))
            )
            envoy = AdsEnvoy(cp.xds_port, work)
            url = f"http://127.0.0.1:{listener}/v1/predict"
            body = json.dumps({"text": "The battery died after two days, very disappointed"}).encode()
            headers = {"content-type": "application/json"}

            def routed() -> bool:
                try:
                    return httpx.post(url, content=body, headers=headers).status_code == 200
                except httpx.HTTPError:
                    return False  # the listener is not there yet

            wait_for(routed, 30, "routing")

            arms = {"none": None, "mirror, no capture": "sentiment-v6", "mirror 100%": "sentiment-v5"}
            results: dict[str, list[Result]] = {arm: [] for arm in arms}
            for _ in range(rounds):
                for arm, mirror in arms.items():
                    set_mirror(admin, mirror)
                    result = asyncio.run(run(url, args.rate, duration, method="POST", headers=headers, body=body))
                    results[arm].append(result)
            report = httpx.get(f"{admin}/v1/models/{MODEL}/shadow/report", timeout=10).json()
        finally:
            for p in procs:
                p.stop()
            if envoy is not None:
                envoy.stop()
            if cp is not None:
                cp.stop()

    def med(rs: list[Result], key: str) -> float:
        return statistics.median(r.summary_ms()[key] for r in rs)

    rows = []
    for arm, rs in results.items():
        rows.append(
            {
                "arm": arm,
                "rate": args.rate,
                "requests": sum(len(r.latencies) for r in rs),
                "p50_ms": round(med(rs, "p50"), 3),
                "p90_ms": round(med(rs, "p90"), 3),
                "p99_ms": round(med(rs, "p99"), 3),
                "errors": sum(r.errors for r in rs),
                "non_2xx": sum(n for r in rs for s, n in r.statuses.items() if not 200 <= s < 300),
            }
        )
    ratio = rows[2]["p99_ms"] / rows[0]["p99_ms"]
    ratio_no_capture = rows[1]["p99_ms"] / rows[0]["p99_ms"]
    shadow: dict[str, Any] = next((s for s in report["shadows"] if s["version"] == "sentiment-v5"), {})
    print("| arm | rate (req/s) | requests | p50 ms | p90 ms | p99 ms | errors | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['rate']:.0f} | {r['requests']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['errors']} | {r['non_2xx']} |"
        )
    print(
        f"\np99 ratio mirror/none: {ratio:.2f} (goal <= 1.10); mirroring without capture: {ratio_no_capture:.2f};"
        f" rounds {rounds} x {duration:g} s per arm"
    )
    print(
        f"shadow report: {shadow.get('requests_compared')} compared, agreement {shadow.get('agreement_rate')}, "
        f"capture dropped {report.get('capture_dropped')}"
    )
    path = write_results(
        "shadow_overhead",
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": environment(),
            "rounds": rounds,
            "duration_s": duration,
            "arms": rows,
            "p99_ratio": round(ratio, 3),
            "p99_ratio_no_capture": round(ratio_no_capture, 3),
            "goal": 1.10,
            "shadow_report": {k: v for k, v in shadow.items() if k != "disagreements"},
            "capture_dropped": report.get("capture_dropped"),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
