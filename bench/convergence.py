"""Convergence: from writing a policy file to Envoy serving the change, at 10 to 10,000 models.

For each fleet size N the benchmark starts a fast upstream (an Envoy with two
``direct_response`` listeners, "a" and "b", that name themselves in an
``x-upstream`` header), ``switchyard serve`` on a directory of N policy files
(one model per file: host ``m<i>.bench``, versions a and b, header pinning and a
header rule, so each model has five routes and two clusters) and an Envoy
configured over ADS. Then, several times, it flips the last model's traffic
between ``{a: 100}`` and ``{b: 100}`` by atomically replacing its file and polls
the data path (requests with ``Host: m<N-1>.bench`` through Envoy) until the
other upstream answers. That interval is the convergence time; it includes the
file watcher's 50 ms debounce.

The control plane's own stages (load, intent, translate, snapshot) come from
its log line for each accepted reload; "translate µs/model" is translate +
snapshot of the cold start divided by N, and for the edits the same stages of
the incremental reloads.

    .venv/bin/python -m bench.convergence                       # 10, 100, 1,000, 10,000 models
    .venv/bin/python -m bench.convergence --quick               # 10, 100, 1,000; 5 changes each
    .venv/bin/python -m bench.convergence --models 1000 --changes 20 --layout one-file
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    AdsEnvoy,
    ControlPlane,
    Probe,
    StaticEnvoy,
    direct_response_listener,
    environment,
    free_port,
    percentile,
    wait_for,
    write_results,
)

GOALS_MS = {10: 150, 1000: 1000}
ACCEPTED = re.compile(
    r"policies accepted: (\d+) models, snapshot (\w+) \(load ([\d.]+) ms, intent ([\d.]+) ms, "
    r"translate ([\d.]+) ms, snapshot ([\d.]+) ms\)"
)


def model_doc(i: int, a: int, b: int, target: str = "a") -> str:
    return (
        "apiVersion: switchyard/v1\nkind: ModelRoute\n"
        f"metadata: {{name: m{i}}}\n"
        "spec:\n"
        f'  hosts: ["m{i}.bench"]\n'
        "  versions:\n"
        f'    a: {{endpoints: ["127.0.0.1:{a}"]}}\n'
        f'    b: {{endpoints: ["127.0.0.1:{b}"]}}\n'
        f"  traffic: {{{target}: 100}}\n"
        "  pinning: {header: x-model-version}\n"
        "  rules:\n"
        "    - name: premium\n"
        "      match: {headers: {x-user-tier: premium}}\n"
        "      traffic: {b: 100}\n"
    )


def gateway_doc(port: int) -> str:
    return (
        "apiVersion: switchyard/v1\nkind: Gateway\nmetadata: {name: gw}\n"
        f"spec: {{address: 127.0.0.1, port: {port}}}\n"
    )


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")  # dot-files are not policies; the rename is the edit
    tmp.write_text(text)
    tmp.replace(path)


class Fleet:
    """The policy directory for N models, in one of two layouts."""

    def __init__(self, root: Path, n: int, a: int, b: int, listener: int, layout: str) -> None:
        self.root, self.n, self.a, self.b, self.layout = root, n, a, b, layout
        root.mkdir(parents=True)
        (root / "gateway.yaml").write_text(gateway_doc(listener))
        if layout == "files":
            for i in range(n):
                (root / f"m{i:05d}.yaml").write_text(model_doc(i, a, b))
        else:
            self.docs = [model_doc(i, a, b) for i in range(n)]
            (root / "models.yaml").write_text("---\n".join(self.docs))

    def set_target(self, i: int, target: str) -> None:
        doc = model_doc(i, self.a, self.b, target)
        if self.layout == "files":
            atomic_write(self.root / f"m{i:05d}.yaml", doc)
        else:
            self.docs[i] = doc
            atomic_write(self.root / "models.yaml", "---\n".join(self.docs))


def accepted_lines(log: str) -> list[dict[str, float]]:
    return [
        {
            "models": int(m[1]),
            "load": float(m[3]),
            "intent": float(m[4]),
            "translate": float(m[5]),
            "snapshot": float(m[6]),
        }
        for m in ACCEPTED.finditer(log)
    ]


def measure(n: int, changes: int, layout: str, work: Path, a: int, b: int, start_timeout: float) -> dict[str, Any]:
    listener = free_port()
    fleet = Fleet(work / f"policies-{n}", n, a, b, listener, layout)
    started: list[Any] = []
    row: dict[str, Any] = {"models": n, "layout": layout}
    try:
        t0 = time.perf_counter()
        control_plane = ControlPlane(fleet.root, work).start(start_timeout)
        started.append(control_plane)
        envoy = AdsEnvoy(control_plane.xds_port, work, timeout=start_timeout)
        started.append(envoy)
        target = n - 1
        probe = Probe(listener)
        host = f"m{target}.bench"
        wait_for(lambda: probe.get("/", host)[1] == "a", start_timeout, f"model {target} to be served")
        first = Probe(listener)
        wait_for(lambda: first.get("/", "m0.bench")[1] == "a", 10, "model 0 to be served")
        first.close()
        row["startup_s"] = time.perf_counter() - t0
        row["envoy_rss_mib"] = envoy.rss_mib()
        times: list[float] = []
        current = "a"
        for _ in range(changes):
            time.sleep(0.3)  # let the previous push settle (ACKs, health checks)
            current = "b" if current == "a" else "a"
            begin = time.perf_counter()
            fleet.set_target(target, current)
            while True:
                status, seen = probe.get("/", host)
                if status == 200 and seen == current:
                    break
                if time.perf_counter() - begin > 60:
                    raise TimeoutError(f"{n} models: change not served after 60 s")
                time.sleep(0.001)
            times.append((time.perf_counter() - begin) * 1000)
        probe.close()
        time.sleep(0.2)
        reloads = accepted_lines(control_plane.log())
        cold, edits = reloads[0], reloads[1:]

        def med(stage: str) -> float:
            return statistics.median(r[stage] for r in edits) if edits else float("nan")

        row.update(
            {
                "status": "ok",
                "changes": len(times),
                "convergence_ms": times,
                "p50_ms": percentile(times, 50),
                "p95_ms": percentile(times, 95),
                "max_ms": max(times),
                "goal_p50_ms": GOALS_MS.get(n),
                "cold_stages_ms": cold,
                "cold_translate_us_per_model": (cold["translate"] + cold["snapshot"]) * 1000 / n,
                "edit_stages_ms_median": {s: med(s) for s in ("load", "intent", "translate", "snapshot")},
                "edit_translate_us_per_model": (med("translate") + med("snapshot")) * 1000 / n,
                "envoy_rss_mib_after": envoy.rss_mib(),
            }
        )
    finally:
        for thing in reversed(started):
            thing.stop()
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        "| models | layout | changes | p50 ms | p95 ms | max ms | goal p50 | edit: load / intent / "
        "translate / snapshot ms (median) | translate+serialize µs/model cold / per edit"
        " | Envoy RSS MiB | start s |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        if r.get("status") != "ok":
            print(f"| {r['models']} | {r['layout']} | not run: {r.get('reason', '?')} |||||||||")
            continue
        e = r["edit_stages_ms_median"]
        goal = f"≤ {r['goal_p50_ms']}" if r["goal_p50_ms"] else "-"
        print(
            f"| {r['models']} | {r['layout']} | {r['changes']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
            f"{r['max_ms']:.0f} | {goal} | {e['load']:.1f} / {e['intent']:.1f} / {e['translate']:.1f} / "
            f"{e['snapshot']:.1f} | {r['cold_translate_us_per_model']:.1f} / "
            f"{r['edit_translate_us_per_model']:.2f}"
            f" | {r['envoy_rss_mib_after']:.0f} | {r['startup_s']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="10,100,1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--changes", type=int, default=15, help="policy changes per fleet size")
    parser.add_argument("--layout", choices=("files", "one-file"), default="files")
    parser.add_argument("--quick", action="store_true", help="10, 100 and 1,000 models, 5 changes each")
    parser.add_argument("--start-timeout", type=float, default=240, help="seconds for a fleet to come up")
    args = parser.parse_args()
    sizes = [int(s) for s in args.models.split(",")]
    if args.quick:
        sizes, args.changes = [s for s in sizes if s <= 1000], 5
    work = Path(tempfile.mkdtemp(prefix="convergence-"))
    a_port, b_port = free_port(), free_port()
    upstream = StaticEnvoy(
        "upstreams", work, [direct_response_listener("a", a_port), direct_response_listener("b", b_port)], []
    )
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            try:
                rows.append(measure(n, args.changes, args.layout, work, a_port, b_port, args.start_timeout))
            except (TimeoutError, OSError, RuntimeError) as exc:
                rows.append({"models": n, "layout": args.layout, "status": "not run", "reason": str(exc)})
            print(f"{n} models: {rows[-1].get('status')}", flush=True)
    finally:
        upstream.stop()
    print()
    print_table(rows)
    path = write_results(
        "convergence" if args.layout == "files" else f"convergence_{args.layout}",
        {
            "benchmark": "convergence",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": environment(),
            "settings": vars(args),
            "rows": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
