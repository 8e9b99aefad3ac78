"""Admin API shift -> Envoy serving it: both ADS modes in one run.

For each mode a stack is started (fake upstreams, `switchyard serve`, Envoy);
the split is flipped between two versions N times through
`PUT /v1/models/sentiment/traffic`, and the time runs from the API call
returning until a request through Envoy is answered by the new version.

    .venv/bin/python -m bench.api_shift            # 50 shifts per mode; --shifts N
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import environment, percentile, write_results
from tests.support.stack import Stack


def measure(delta: bool, shifts: int) -> list[float]:
    with tempfile.TemporaryDirectory() as workdir:
        stack = Stack(Path(workdir), delta=delta)
        try:
            api = httpx.Client(base_url=stack.control_plane.url, timeout=10, trust_env=False)
            samples: list[float] = []
            for i in range(shifts + 1):
                target, other = ("sentiment-v4", "sentiment-v3") if i % 2 == 0 else ("sentiment-v3", "sentiment-v4")
                response = api.put("/v1/models/sentiment/traffic", json={"weights": {target: 100, other: 0}})
                response.raise_for_status()
                start = time.perf_counter()
                deadline = start + 10
                while stack.one().headers.get("x-model-version") != target:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"shift {i} to {target} not served after 10 s")
                if i:  # the first shift also warms the connection pools
                    samples.append((time.perf_counter() - start) * 1000)
            api.close()
            return samples
        finally:
            stack.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shifts", type=int, default=50)
    args = parser.parse_args()
    rows = {}
    for mode in ("sotw", "delta"):
        samples = measure(mode == "delta", args.shifts)
        rows[mode] = {
            "shifts": len(samples),
            "p50_ms": statistics.median(samples),
            "p99_ms": percentile(samples, 99),
            "max_ms": max(samples),
        }
    print("| ADS mode | shifts | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    for mode, row in rows.items():
        print(f"| {mode} | {row['shifts']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} |")
    path = write_results("api_shift", {"environment": environment(), "modes": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
