"""Protocols: one model service over v1 REST, v2 REST (JSON and binary), and v2 gRPC,
directly and through Switchyard's Envoy, beside MLServer and LitServe serving the same model.

Arms (the ``sentiment-v3`` EmbeddingBag model, one text per request, the same text everywhere):

* ``switchyard``: ``model_services serve --max-batch-size 32 --max-delay-ms 5`` with
  ``--grpc-port``, reached directly and through Envoy configured over ADS by
  ``switchyard serve`` (one ModelRoute with ``endpoints`` and ``grpc_endpoints``):
  ``POST /v1/predict``; ``POST /v2/models/sentiment/infer`` as JSON and with the binary
  tensor extension (what ``tritonclient`` sends); gRPC ``ModelInfer``.
* ``switchyard alone``: the same service with nothing else running, then the same with one
  choice undone: ``--no-gc-freeze`` (the startup heap left to the garbage collector) and
  ``--http h11`` (the pure-Python HTTP parser): the A/B for each.
* ``mlserver``: the same handler as an MLServer custom runtime (``bench/peers/``) with
  adaptive batching (``max_batch_size`` 32, ``max_batch_time`` 5 ms): v2 REST JSON and gRPC.
* ``litserve``: the same handler as a ``litserve.LitAPI`` (``max_batch_size`` 32,
  ``batch_timeout`` 5 ms): its own ``POST /predict``.

Every server gets the same torch threads (``--threads``) and one model worker process.

Method (Triton perf_analyzer's): a closed loop of N workers, each sending back-to-back,
measured in windows of ``--window`` seconds; a point counts once three consecutive
windows' throughputs are each within 10% of their mean (at most ``--max-windows``; else
it is marked unstable and the last three are used). Throughput, p50 and p99 come from
the requests completed in those three windows.

The load generator is this process (a raw keep-alive HTTP/1.1 client on asyncio streams,
``grpc.aio`` with pre-serialised requests): on a 2-core box a heavier client would take
the CPU it measures. Every arm uses the same client, and its CPU share is recorded.

The peers live in their own virtualenv (they pin packages that conflict with this
project's); build it once with bench/peers/requirements.txt:

    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install -r bench/peers/requirements.txt

    .venv/bin/python -m bench.protocols --peers-python /tmp/peers-venv/bin/python   # ~6.5 minutes
    .venv/bin/python -m bench.protocols --quick                                     # ~3 minutes

Prints a markdown table and writes bench/results/protocols.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np

from bench.common import AdsEnvoy, ControlPlane, environment, free_port, percentile, wait_for, write_results
from bench.model_service_bench import _one_request, _post, _read_response, bench_texts
from model_services.protocol import SERVICE
from model_services.protocol.messages import ModelInferRequest, ServerReadyRequest, ServerReadyResponse
from model_services.store.train import build_store
from tests.support.procs import ModelService, Process

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32, 64)
MAX_BATCH_SIZE = 32
MAX_DELAY_MS = 5
MODEL = "sentiment"
VERSION = "sentiment-v3"
STABILITY = 0.10  # perf_analyzer's default --stability-percentage
INFER = f"/{SERVICE}/ModelInfer"
READY = f"/{SERVICE}/ServerReady"

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
    sentiment-v3: {{endpoints: ["127.0.0.1:{http}"], grpc_endpoints: ["127.0.0.1:{grpc}"]}}
"""


# -- requests: built once, sent as bytes ------------------------------------------------


def v1_request(text: str) -> bytes:
    return _post("/v1/predict", json.dumps({"text": text}).encode())


def v2_json_body(text: str) -> bytes:
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}
    return json.dumps({"inputs": [tensor]}).encode()


def v2_json_request(text: str) -> bytes:
    return _post(f"/v2/models/{MODEL}/infer", v2_json_body(text))


def v2_binary_request(text: str) -> bytes:
    """The body tritonclient sends: a JSON header, then the BYTES tensor as 4-byte length + bytes.

    With no outputs named, tritonclient also sets ``binary_data_output``, so the answer is binary too."""
    import tritonclient.http as triton  # type: ignore[import-untyped]

    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([text.encode()], dtype=np.object_), binary_data=True)
    body: bytes
    json_size: int
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor])
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nhost: bench\r\ncontent-type: application/octet-stream\r\n"
        f"inference-header-content-length: {json_size}\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def grpc_request(text: str) -> bytes:
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "contents": {"bytes_contents": [text.encode()]}}
    serialized: bytes = ModelInferRequest(model_name=MODEL, inputs=[tensor]).SerializeToString()
    return serialized


def litserve_request(text: str) -> bytes:
    return _post("/predict", json.dumps({"text": text}).encode())


# -- targets: how one worker of the closed loop talks to a server -----------------------


class Connection(Protocol):
    async def call(self) -> bool:
        """Send the request once and wait for the whole answer; True if it succeeded."""
        ...

    async def close(self) -> None: ...


class Target(Protocol):
    async def connect(self) -> Connection: ...

    async def close(self) -> None: ...


class HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> None:
        self.reader, self.writer, self.raw = reader, writer, raw

    async def call(self) -> bool:
        self.writer.write(self.raw)
        status, _ = await _read_response(self.reader)
        return status == 200

    async def close(self) -> None:
        self.writer.close()


@dataclass
class HttpTarget:
    """One keep-alive HTTP/1.1 connection per worker, like perf_analyzer's HTTP client."""

    port: int
    raw: bytes

    async def connect(self) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        return HttpConnection(reader, writer, self.raw)

    async def close(self) -> None:
        return None


class GrpcConnection:
    def __init__(self, call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], raw: bytes) -> None:
        self._call, self.raw = call, raw

    async def call(self) -> bool:
        try:
            await self._call(self.raw)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def close(self) -> None:
        return None


@dataclass
class GrpcTarget:
    """One channel (one HTTP/2 connection) shared by every worker, as a gRPC client does.

    No serializers: the request is sent as the bytes built once, and the answer is
    left undecoded, so the client spends nothing on protobuf per call."""

    address: str
    raw: bytes
    channel: grpc.aio.Channel | None = field(default=None, init=False)

    async def connect(self) -> Connection:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address)
        return GrpcConnection(self.channel.unary_unary(INFER, None, None), self.raw)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close(None)
            self.channel = None


# -- measurement --------------------------------------------------------------------------


@dataclass
class Point:
    concurrency: int
    stable: bool
    windows: int
    throughputs: list[float]  # every window's, req/s
    requests: int  # completed in the three windows reported
    errors: int
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float  # the load generator's CPU seconds per second over the windows (1.0 = one core)


@dataclass
class Completions:
    """What the workers finished, in completion order (so window boundaries are cut by bisection)."""

    ends: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    error_ends: list[float] = field(default_factory=list)

    def between(self, start: float, stop: float) -> list[float]:
        lo, hi = np.searchsorted(self.ends, [start, stop])
        return self.latencies[int(lo) : int(hi)]

    def errors_between(self, start: float, stop: float) -> int:
        return sum(1 for t in self.error_ends if start <= t < stop)


def stable(throughputs: Sequence[float]) -> bool:
    """perf_analyzer's test: each of the last three within STABILITY of their mean."""
    if len(throughputs) < 3:
        return False
    last = throughputs[-3:]
    mean = sum(last) / 3
    return mean > 0 and all(abs(x - mean) / mean <= STABILITY for x in last)


async def closed_loop(target: Target, concurrency: int, window_s: float, max_windows: int, warmup_s: float) -> Point:
    done = Completions()
    stopping = asyncio.Event()

    async def worker() -> None:
        connection = await target.connect()
        try:
            while not stopping.is_set():
                t0 = time.perf_counter()
                ok = await connection.call()
                t1 = time.perf_counter()
                if ok:
                    done.ends.append(t1)
                    done.latencies.append(t1 - t0)
                else:
                    done.error_ends.append(t1)
        finally:
            await connection.close()

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.sleep(warmup_s)  # connections opened, batches forming: not measured
        bounds, throughputs = [time.perf_counter()], list[float]()
        cpu_start = time.process_time()
        while len(throughputs) < max_windows and not stable(throughputs):
            await asyncio.sleep(max(0.0, bounds[-1] + window_s - time.perf_counter()))
            bounds.append(time.perf_counter())
            throughputs.append(len(done.between(bounds[-2], bounds[-1])) / (bounds[-1] - bounds[-2]))
        cpu = (time.process_time() - cpu_start) / (bounds[-1] - bounds[0])
    finally:
        stopping.set()
        _, pending = await asyncio.wait(workers, timeout=30)
        for task in pending:  # a server that stopped answering: do not hang the run
            task.cancel()
    await target.close()
    start, stop = bounds[-4] if len(bounds) >= 4 else bounds[0], bounds[-1]
    latencies = done.between(start, stop)
    return Point(
        concurrency=concurrency,
        stable=stable(throughputs),
        windows=len(throughputs),
        throughputs=[round(x, 1) for x in throughputs],
        requests=len(latencies),
        errors=done.errors_between(start, stop),
        throughput_rps=len(latencies) / (stop - start),
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        client_cpu=cpu,
    )


@dataclass(frozen=True)
class Arm:
    stack: str  # switchyard, mlserver, litserve
    protocol: str  # v1 REST, v2 REST JSON, v2 REST binary, v2 gRPC, LitServe JSON
    path: str  # direct or envoy
    target: Callable[[], Target]

    @property
    def name(self) -> str:
        return f"{self.stack} / {self.protocol} / {self.path}"


@dataclass
class Settings:
    concurrency: list[int]
    window_s: float
    max_windows: int
    warmup_s: float


def measure(arm: Arm, settings: Settings) -> dict[int, Point]:
    out: dict[int, Point] = {}
    for c in settings.concurrency:
        point = asyncio.run(closed_loop(arm.target(), c, settings.window_s, settings.max_windows, settings.warmup_s))
        flag = "" if point.stable else " UNSTABLE"
        errors = f" errors={point.errors}" if point.errors else ""
        print(
            f"  {arm.name:42} c={c:<3} {point.throughput_rps:8.1f} req/s  p50 {point.p50_ms:7.2f} ms"
            f"  p99 {point.p99_ms:7.2f} ms  client {point.client_cpu:.2f} cpu ({point.windows} windows){flag}{errors}",
            flush=True,
        )
        out[c] = point
    return out


# -- the servers ------------------------------------------------------------------------


def http_ok(port: int, raw: bytes) -> bool:
    status, _ = asyncio.run(_one_request(port, raw))
    return status == 200


async def _grpc_ready(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        ready = channel.unary_unary(
            READY,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=ServerReadyResponse.FromString,
        )
        try:
            answer = await ready(ServerReadyRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.ready)


def grpc_ready(address: str) -> bool:
    return asyncio.run(_grpc_ready(address))


def start_model_service(model_dir: Path, work: Path, threads: int, *extra: str) -> tuple[ModelService, int]:
    """``model_services serve`` with the benchmark's batch limits; returns it and its gRPC port."""
    grpc_port = free_port()
    service = ModelService(
        model_dir,
        work / f"switchyard-model-{grpc_port}.log",
        *("--served-version", VERSION, "--max-batch-size", str(MAX_BATCH_SIZE)),
        *("--max-delay-ms", str(MAX_DELAY_MS), "--num-threads", str(threads), "--grpc-port", str(grpc_port)),
        *("--max-queue-size", "4096", "--log-level", "warning", *extra),
    )
    return service, grpc_port


@contextmanager
def switchyard_stack(model_dir: Path, work: Path, threads: int) -> Iterator[dict[str, tuple[int, int]]]:
    """The model service and, in front of it, ``switchyard serve`` + Envoy. Yields path -> (http, grpc) port."""
    service, grpc_port = start_model_service(model_dir, work, threads)
    stopping: list[Any] = [service]
    try:
        service.wait_ready()
        listener = free_port()
        policies = work / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "protocols.yaml").write_text(POLICY.format(listener=listener, http=service.port, grpc=grpc_port))
        stopping.append(ControlPlane(policies, work).start(120))
        stopping.append(AdsEnvoy(stopping[-1].xds_port, work))
        # Listeners come before routes and clusters are warm: wait for an answer over each protocol.
        wait_for(lambda: http_ok(listener, v1_request("warm up")), 60, "HTTP through Envoy")
        wait_for(lambda: grpc_ready(f"127.0.0.1:{listener}"), 60, "gRPC ServerReady through Envoy")
        yield {"direct": (service.port, grpc_port), "envoy": (listener, listener)}
    finally:
        for proc in reversed(stopping):
            proc.stop()


def wait_started(proc: Process, check: Callable[[], bool], what: str) -> None:
    """Wait for a peer to answer; if it never does, show why (its log is in a temp dir about to go)."""
    try:
        wait_for(check, 180, what, process=proc)
    except (RuntimeError, TimeoutError):
        print(proc.log()[-4000:], file=sys.stderr)
        raise


def stop_group(proc: Process) -> None:
    """Stop a peer's whole process group: both peers start workers that can outlive their parent."""
    with suppress(ProcessLookupError):
        os.killpg(proc.proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.proc.wait(15)
    time.sleep(1)  # workers shutting down on their own
    with suppress(ProcessLookupError):
        os.killpg(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait()


def peer_env(threads: int) -> dict[str, str]:
    # The peers import the repo's own loader (model_services.serving.handler) for the same
    # handler; only their subprocess gets the repo on its path.
    return {"PYTHONPATH": str(REPO), "BENCH_TORCH_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}


@contextmanager
def mlserver_stack(python: Path, model_dir: Path, work: Path, threads: int) -> Iterator[tuple[int, int]]:
    """``mlserver start`` on a settings dir written here. Yields (http, grpc) port."""
    from bench.peers import mlserver_settings

    http, grpc_port, metrics = free_port(), free_port(), free_port()
    root = work / "mlserver"
    root.mkdir(exist_ok=True)
    server, model = mlserver_settings(
        http, grpc_port, metrics, model_dir, MAX_BATCH_SIZE, MAX_DELAY_MS / 1000, root / "metrics"
    )
    (root / "settings.json").write_text(json.dumps(server, indent=1))
    (root / "model-settings.json").write_text(json.dumps(model, indent=1))
    # The console script beside the venv's python: the mlserver package has no __main__.
    command = [str(python.parent / "mlserver"), "start", str(root)]
    proc = Process(command, work / "mlserver.log", peer_env(threads), new_session=True)
    try:
        wait_started(proc, lambda: http_ok(http, v2_json_request("warm up")), "MLServer to answer")
        wait_started(proc, lambda: grpc_ready(f"127.0.0.1:{grpc_port}"), "MLServer gRPC to answer")
        yield http, grpc_port
    finally:
        stop_group(proc)


@contextmanager
def litserve_stack(python: Path, model_dir: Path, work: Path, threads: int) -> Iterator[int]:
    port = free_port()
    command = [str(python), "-m", "bench.peers.litserve_app", "--port", str(port), "--model-dir", str(model_dir)]
    command += ["--max-batch-size", str(MAX_BATCH_SIZE), "--batch-timeout", str(MAX_DELAY_MS / 1000)]
    proc = Process(command, work / "litserve.log", peer_env(threads), new_session=True)
    try:
        wait_started(proc, lambda: http_ok(port, litserve_request("warm up")), "LitServe to answer")
        yield port
    finally:
        stop_group(proc)


# -- the run ------------------------------------------------------------------------------


def switchyard_arms(ports: dict[str, tuple[int, int]], text: str) -> list[Arm]:
    arms: list[Arm] = []
    for path, (http, grpc_port) in ports.items():
        for protocol, raw in (
            ("v1 REST", v1_request(text)),
            ("v2 REST JSON", v2_json_request(text)),
            ("v2 REST binary", v2_binary_request(text)),
        ):
            arms.append(Arm("switchyard", protocol, path, partial(HttpTarget, http, raw)))
        raw = grpc_request(text)
        arms.append(Arm("switchyard", "v2 gRPC", path, partial(GrpcTarget, f"127.0.0.1:{grpc_port}", raw)))
    return arms


Results = dict[str, dict[str, Any]]  # arm name -> {stack, protocol, path, points}


def record(results: Results, arm: Arm, settings: Settings) -> None:
    points = measure(arm, settings)
    results[arm.name] = {"stack": arm.stack, "protocol": arm.protocol, "path": arm.path, "points": points}


def run_switchyard(results: Results, model_dir: Path, work: Path, text: str, args: argparse.Namespace) -> None:
    print("switchyard (model service + switchyard serve + Envoy)", flush=True)
    with switchyard_stack(model_dir, work, args.threads) as ports:
        for arm in switchyard_arms(ports, text):
            record(results, arm, args.settings)


# The service alone (no Envoy or control plane beside it, whose probes and stats
# take CPU on a small box), then with one choice undone at a time: the A/B for each.
VARIANTS = (
    ((), ("v1 REST", "v2 REST JSON", "v2 gRPC")),
    (("--no-gc-freeze",), ("v1 REST", "v2 gRPC")),  # model_services/serving/heap.py
    (("--http", "h11"), ("v1 REST", "v2 REST JSON")),  # uvicorn's pure-Python parser, not httptools
)


def run_variants(results: Results, model_dir: Path, work: Path, text: str, args: argparse.Namespace) -> None:
    for flags, protocols in VARIANTS:
        stack = " ".join(("switchyard alone", *flags))
        print(stack, flush=True)
        service, grpc_port = start_model_service(model_dir, work, args.threads, *flags)
        try:
            service.wait_ready()
            ports = {"direct": (service.port, grpc_port)}
            for arm in switchyard_arms(ports, text):
                if arm.protocol in protocols:
                    record(results, replace(arm, stack=stack), args.settings)
        finally:
            service.stop()


def run_peers(results: Results, model_dir: Path, work: Path, text: str, args: argparse.Namespace) -> None:
    python: Path | None = args.peers_python
    if python is None or not python.exists():
        print(f"peers skipped: no --peers-python ({python}); see bench/peers/requirements.txt", flush=True)
        return
    print("mlserver (custom runtime, adaptive batching)", flush=True)
    with mlserver_stack(python, model_dir, work, args.threads) as (http, grpc_port):
        raw_json, raw_grpc = v2_json_request(text), grpc_request(text)
        record(results, Arm("mlserver", "v2 REST JSON", "direct", partial(HttpTarget, http, raw_json)), args.settings)
        grpc_arm = Arm("mlserver", "v2 gRPC", "direct", partial(GrpcTarget, f"127.0.0.1:{grpc_port}", raw_grpc))
        record(results, grpc_arm, args.settings)
    print("litserve (LitAPI, batching on)", flush=True)
    with litserve_stack(python, model_dir, work, args.threads) as port:
        raw = litserve_request(text)
        record(results, Arm("litserve", "LitServe JSON", "direct", partial(HttpTarget, port, raw)), args.settings)


# -- report ---------------------------------------------------------------------------------


def point(results: Results, name: str, c: int) -> Point | None:
    found: Point | None = results.get(name, {}).get("points", {}).get(c)
    return found


def envoy_hops(results: Results, concurrency: Sequence[int]) -> dict[str, dict[int, dict[str, float]]]:
    """Per protocol and concurrency: through-Envoy minus direct p50, and the throughput ratio."""
    hops: dict[str, dict[int, dict[str, float]]] = {}
    for protocol in ("v1 REST", "v2 REST JSON", "v2 REST binary", "v2 gRPC"):
        for c in concurrency:
            direct = point(results, f"switchyard / {protocol} / direct", c)
            envoy = point(results, f"switchyard / {protocol} / envoy", c)
            if direct is None or envoy is None:
                continue
            hops.setdefault(protocol, {})[c] = {
                "p50_added_ms": envoy.p50_ms - direct.p50_ms,
                "p99_added_ms": envoy.p99_ms - direct.p99_ms,
                "throughput_ratio": envoy.throughput_rps / direct.throughput_rps if direct.throughput_rps else 0.0,
            }
    return hops


# Each peer arm against Switchyard's direct arm over the closest protocol.
MATCHES = {
    "mlserver / v2 REST JSON / direct": "switchyard / v2 REST JSON / direct",
    "mlserver / v2 gRPC / direct": "switchyard / v2 gRPC / direct",
    "litserve / LitServe JSON / direct": "switchyard / v1 REST / direct",
}


def goal(results: Results, concurrency: Sequence[int]) -> dict[str, Any]:
    """The issue's goal: at every concurrency, Switchyard's service ahead in throughput and
    not behind in p99, against each peer over the matching protocol."""
    verdicts: dict[str, Any] = {}
    for peer, ours in MATCHES.items():
        for c in concurrency:
            theirs, mine = point(results, peer, c), point(results, ours, c)
            if theirs is None or mine is None:
                continue
            verdicts.setdefault(peer, {})[c] = {
                "versus": ours,
                "throughput_ratio": mine.throughput_rps / theirs.throughput_rps if theirs.throughput_rps else None,
                "p99_ratio": mine.p99_ms / theirs.p99_ms,
                "met": mine.throughput_rps > theirs.throughput_rps and mine.p99_ms <= theirs.p99_ms,
            }
    return verdicts


def table(results: Results, concurrency: Sequence[int]) -> str:
    head = "| stack | protocol | path | " + " | ".join(f"c={c} req/s | p50/p99 ms" for c in concurrency) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(concurrency))]
    for row in results.values():
        cells = [row["stack"], row["protocol"], row["path"]]
        for c in concurrency:
            p: Point | None = row["points"].get(c)
            if p is None:
                cells += ["", ""]
                continue
            mark = "" if p.stable else "*"
            cells += [f"{p.throughput_rps:.0f}{mark}", f"{p.p50_ms:.1f} / {p.p99_ms:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_report(results: Results, hops: dict[str, Any], verdicts: dict[str, Any], concurrency: Sequence[int]) -> None:
    print()
    print(table(results, concurrency))
    cpu = [p.client_cpu for row in results.values() for p in row["points"].values()]
    print(f"\n(* = never stable: the last three windows; load generator: {min(cpu):.2f}-{max(cpu):.2f} of a core)")
    print("\nEnvoy hop (through Envoy minus direct):")
    for protocol, by_c in hops.items():
        cells = ", ".join(
            f"c={c}: p50 {h['p50_added_ms']:+.2f} ms, x{h['throughput_ratio']:.2f} throughput" for c, h in by_c.items()
        )
        print(f"  {protocol:15} {cells}")
    if verdicts:
        print("\nGoal (Switchyard ahead in throughput, p99 not behind), per peer:")
    for peer, by_c in verdicts.items():
        cells = ", ".join(
            f"c={c}: {'met' if v['met'] else 'NOT met'} (x{v['throughput_ratio']:.2f} req/s, x{v['p99_ratio']:.2f} p99)"
            for c, v in by_c.items()
        )
        print(f"  vs {peer:34} {cells}")


def model_store(path: Path | None) -> Path:
    """``--model-store``, or a store cached in the temp dir (training takes ~15 s)."""
    store = path or Path(tempfile.gettempdir()) / "switchyard-bench-store"
    print(f"model store: {store}", flush=True)
    build_store(store, if_missing=True)
    return store


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 s windows, at most 4")
    p.add_argument("--peers-python", type=Path, help="python of a venv with mlserver and litserve (else: no peers)")
    p.add_argument("--model-store", type=Path, help="an existing model store (default: cached in the temp dir)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads in every server (2 cores: one model, one HTTP)"
    )
    p.add_argument("--window", type=float, default=2.0, help="seconds per measurement window")
    p.add_argument("--max-windows", type=int, default=6)
    p.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    args = p.parse_args()
    if args.quick:
        args.window, args.max_windows = 1.0, 4
    args.settings = Settings(args.concurrency, args.window, args.max_windows, warmup_s=min(1.0, args.window / 2))
    return args


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    env = environment()
    started = time.monotonic()
    store = model_store(args.model_store)
    model_dir = store / MODEL / VERSION
    text = bench_texts(store, count=1)[0]
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="protocols-") as tmp:
        work = Path(tmp)
        run_switchyard(results, model_dir, work, text, args)
        run_variants(results, model_dir, work, text, args)
        run_peers(results, model_dir, work, text, args)
    hops, verdicts = envoy_hops(results, args.concurrency), goal(results, args.concurrency)
    print_report(results, hops, verdicts, args.concurrency)
    for row in results.values():
        row["points"] = {c: asdict(p) for c, p in row["points"].items()}
    path = write_results(
        "protocols",
        {
            "benchmark": "protocols",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": env,
            "settings": {
                **asdict(args.settings),
                "threads": args.threads,
                "max_batch_size": MAX_BATCH_SIZE,
                "max_delay_ms": MAX_DELAY_MS,
                "stability": STABILITY,
                "text": text,
                "quick": args.quick,
                "peers": str(args.peers_python) if args.peers_python else None,
            },
            "results": results,
            "envoy_hop": hops,
            "goal": verdicts,
            "seconds": time.monotonic() - started,
            "load_average_at_end": os.getloadavg(),  # the box is shared: a busy neighbour shows here
        },
    )
    print(f"\nwrote {path} ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
