"""Model service benchmark: dynamic batching on vs off, both example models.

One run measures, side by side:

* the model-level ceiling: a bare forward pass (tokenize + model + softmax, no
  HTTP) at batch 1 versus batch N, in this process;
* the HTTP ceiling: a no-op endpoint of the same server (GET /v2/health/live);
* the service: closed-loop clients at concurrency 1, 8, 32 and 64 against
  ``python -m model_services serve`` with ``--max-batch-size N`` (batching on)
  and ``--max-batch-size 1`` (off): throughput, p50 and p95 latency.

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams:
on a 2-core machine a heavyweight client would steal the CPU it is measuring.

    .venv/bin/python -m bench.model_service_bench            # ~3 minutes
    .venv/bin/python -m bench.model_service_bench --quick    # ~1 minute

Prints a markdown table and writes bench/results/model_service_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import free_port
from control_plane.local import commands
from model_services.serving.handler import load_model
from model_services.store import dataset
from model_services.store.train import build_store

REPO = Path(__file__).resolve().parents[1]

VERSIONS = ("sentiment-v3", "sentiment-v4")
CONCURRENCY = (1, 8, 32, 64)
RESULTS = REPO / "bench" / "results" / "model_service_bench.json"


# -- inputs ----------------------------------------------------------------------


def bench_texts(store: Path, count: int = 64, tokens: int = 32) -> list[str]:
    """Distinct reviews of ~32 MiniLM tokens (the issue's reference shape)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(store / "sentiment" / "sentiment-v4" / "tokenizer.json"))
    pool = [e.text for e in dataset.load()]
    out: list[str] = []
    i = 0
    while len(out) < count and i < len(pool) * 4:
        text = pool[i % len(pool)]
        j = i + 1
        while len(tok.encode(text).ids) < tokens and j < i + 8:
            text = f"{text} {pool[j % len(pool)]}"
            j += 1
        ids = tok.encode(text).ids
        if len(ids) > tokens:
            text = tok.decode(ids[1 : tokens - 1])  # drop [CLS]/[SEP]; re-added on encode
        out.append(text)
        i = j
    return out


# -- model-level ceiling ------------------------------------------------------------


def model_ceiling(model_dir: Path, texts: list[str], batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """Items per second of handler.predict at each batch size (no HTTP)."""
    import torch

    handler = load_model(model_dir, torch.device("cpu")).handler
    out: dict[int, float] = {}
    for size in batch_sizes:
        batch = [texts[i % len(texts)] for i in range(size)]
        for _ in range(3):
            handler.predict(batch)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or done < 3 * size:
            handler.predict(batch)
            done += size
        out[size] = done / (time.perf_counter() - started)
    return out


# -- server ------------------------------------------------------------------------


class Server:
    def __init__(self, model_dir: Path, max_batch_size: int, extra: list[str]) -> None:
        self.port = free_port()
        settings = ["--max-batch-size", str(max_batch_size), "--max-queue-size", "4096", "--log-level", "warning"]
        cmd = commands.serve_model(
            sys.executable, model_dir=model_dir, host="127.0.0.1", port=self.port, args=[*settings, *extra]
        )
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        for _ in range(1200):
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited:\n{self.log.read().decode(errors='replace')}")
            try:
                status, _ = asyncio.run(_one_request(self.port, _get("/v2/health/ready")))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server never became ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


# -- load generator -------------------------------------------------------------


def _post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return status, await reader.readexactly(length)


async def _one_request(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        return await _read_response(reader)
    finally:
        writer.close()


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    throughput_rps: float
    p50_ms: float
    p95_ms: float


async def _load(port: int, requests: list[bytes], concurrency: int, warmup_s: float, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                writer.write(requests[i % len(requests)])
                status, _ = await _read_response(reader)
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if status == 200:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1
                i += concurrency
        finally:
            writer.close()

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    if not latencies:
        return LoadResult(concurrency, 0, errors, 0.0, float("nan"), float("nan"))
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(
        concurrency,
        len(latencies),
        errors,
        len(latencies) / elapsed,
        q[49] * 1000,
        q[94] * 1000,
    )


def run_load(port: int, requests: list[bytes], concurrency: int, warmup_s: float, seconds: float) -> LoadResult:
    return asyncio.run(_load(port, requests, concurrency, warmup_s, seconds))


# -- report ---------------------------------------------------------------------------


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def evaluate(version: str, rows: dict[str, dict[int, LoadResult]], ceiling: dict[int, float],
             n: int) -> dict[str, Any]:  # fmt: skip
    on, off = rows["batched"], rows["unbatched"]
    model_gain = ceiling[n] / ceiling[1]
    gain32 = on[32].throughput_rps / off[32].throughput_rps if off[32].throughput_rps else 0.0
    p50_added = on[1].p50_ms / off[1].p50_ms - 1.0
    return {
        "version": version,
        "model_gain_batch_n": model_gain,
        "service_gain_c32": gain32,
        "share_of_model_gain_c32": gain32 / model_gain,
        "p95_c32_batched_ms": on[32].p95_ms,
        "p95_c32_unbatched_ms": off[32].p95_ms,
        "p50_added_c1": p50_added,
        "goal_gain_met": gain32 >= 0.9 * model_gain and on[32].p95_ms < off[32].p95_ms,
        "goal_c1_met": p50_added <= 0.10,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--store", type=Path, help="existing model store (default: build one)")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per point")
    p.add_argument("--max-batch-size", type=int, default=32, help="N for the batched arm")
    p.add_argument("--max-delay-ms", type=float, default=5.0)
    p.add_argument(
        "--num-threads",
        type=int,
        default=1,
        help="torch threads of the model (server worker and ceiling alike); on 2 cores, "
        "one core for the model and one for HTTP",
    )
    p.add_argument("--versions", nargs="+", default=list(VERSIONS), choices=VERSIONS)
    p.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    p.add_argument("--quick", action="store_true", help="1.5 s per point")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.duration, args.warmup = 1.5, 0.3
    for c in (1, 32):
        if c not in args.concurrency:
            args.concurrency.append(c)
    args.concurrency.sort()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    tmp = None
    store = args.store
    if store is None:
        tmp = tempfile.TemporaryDirectory(prefix="ms-bench-")
        store = Path(tmp.name)
        print("building the model store...", file=sys.stderr)
        build_store(store)
    texts = bench_texts(store)
    requests = [_post("/v1/predict", json.dumps({"text": t}).encode()) for t in texts]
    extra = ["--max-delay-ms", str(args.max_delay_ms)]
    if args.num_threads:
        extra += ["--num-threads", str(args.num_threads)]
        import torch

        torch.set_num_threads(args.num_threads)

    n = args.max_batch_size
    sizes = sorted({1, 8, n, 64})
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "max_batch_size": n,
            "max_delay_ms": args.max_delay_ms,
            "num_threads": args.num_threads,
            "tokens_per_text": 32,
        },
        "models": {},
    }
    table = [
        "| model | arm | concurrency | req/s | p50 ms | p95 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    ceilings_md = ["| model | " + " | ".join(f"batch {s} items/s" for s in sizes) + " |"]
    ceilings_md.append("|---|" + "---:|" * len(sizes))
    verdicts = []
    for version in args.versions:
        model_dir = store / "sentiment" / version
        print(f"{version}: model-level ceiling...", file=sys.stderr)
        ceiling = model_ceiling(model_dir, texts, sizes, max(1.0, args.duration / 2))
        ceilings_md.append(f"| {version} | " + " | ".join(_fmt(ceiling[s]) for s in sizes) + " |")
        rows: dict[str, dict[int, LoadResult]] = {"batched": {}, "unbatched": {}}
        arms = {"batched": n, "unbatched": 1}
        # Both arms up at once and measured alternately, point by point, so a
        # noisy neighbour on a shared machine hits both arms alike.
        servers = {arm: Server(model_dir, size, extra) for arm, size in arms.items()}
        try:
            for server in servers.values():
                server.wait_ready()
            for c in args.concurrency:
                for arm, server in servers.items():
                    print(f"{version} {arm} c={c}...", file=sys.stderr)
                    rows[arm][c] = run_load(server.port, requests, c, args.warmup, args.duration)
            c = max(args.concurrency)
            http_ceiling = run_load(servers["batched"].port, [_get("/v2/health/live")], c, args.warmup, args.duration)
        finally:
            for server in servers.values():
                server.stop()
        for arm, size in arms.items():
            for c, r in rows[arm].items():
                table.append(
                    f"| {version} | {arm} (max_batch_size={size}) | {c} "
                    f"| {_fmt(r.throughput_rps)} | {_fmt(r.p50_ms, 2)} "
                    f"| {_fmt(r.p95_ms, 2)} | {r.errors} |"
                )
        table.append(
            f"| {version} | no-op GET /v2/health/live | {c} "
            f"| {_fmt(http_ceiling.throughput_rps)} | {_fmt(http_ceiling.p50_ms, 2)} "
            f"| {_fmt(http_ceiling.p95_ms, 2)} | {http_ceiling.errors} |"
        )
        verdict = evaluate(version, rows, ceiling, n)
        verdicts.append(verdict)
        report["models"][version] = {
            "ceiling_items_per_s": {str(k): v for k, v in ceiling.items()},
            "http_noop": asdict(http_ceiling),
            "arms": {arm: [asdict(r) for r in by_c.values()] for arm, by_c in rows.items()},
            "goals": verdict,
        }
    goals = [
        "| model | model gain (batch "
        f"{n} vs 1) | service gain at c=32 | share of model gain | p95 c=32 on/off ms "
        "| p50 added at c=1 | goal ≥90% & lower p95 | goal c=1 ≤10% |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for v in verdicts:
        goals.append(
            f"| {v['version']} | {v['model_gain_batch_n']:.2f}x | {v['service_gain_c32']:.2f}x "
            f"| {v['share_of_model_gain_c32']:.0%} "
            f"| {_fmt(v['p95_c32_batched_ms'])} / {_fmt(v['p95_c32_unbatched_ms'])} "
            f"| {v['p50_added_c1']:+.1%} | {'met' if v['goal_gain_met'] else 'NOT met'} "
            f"| {'met' if v['goal_c1_met'] else 'NOT met'} |"
        )
    print("\n### Model-level ceiling (bare forward pass, no HTTP)\n")
    print("\n".join(ceilings_md))
    print("\n### Service\n")
    print("\n".join(table))
    print("\n### Goals (CPU)\n")
    print("\n".join(goals))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    tmp_out.replace(args.out)
    print(f"\nwrote {args.out}", file=sys.stderr)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
