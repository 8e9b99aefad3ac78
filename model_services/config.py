"""Settings of one serving process (the ``serve`` command's flags)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from model_services.jobs.settings import JobSettings


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    # The Open Inference Protocol over gRPC (api/grpc_service.py) on this port; None: off.
    grpc_port: int | None = None
    # Dynamic batching (see serving/batcher.py). max_batch_size=1 turns batching off.
    max_batch_size: int = 32
    max_delay_ms: float = 5.0
    max_queue_size: int = 1024
    # Deadline of a request that names none (x-request-timeout-ms header, or
    # Envoy's x-envoy-expected-rq-timeout-ms).
    request_timeout_ms: float = 30_000.0
    # Input limits: longer text is refused with 413 before it reaches the model.
    max_text_chars: int = 5_000
    max_batch_texts: int = 256
    device: str = "auto"
    # Where the model runs: "process" (a child process with its own GIL, see
    # serving/worker.py) or "thread" (a thread of the HTTP process).
    worker: str = "process"
    # torch intra-op threads; None keeps torch's default (one per core).
    num_threads: int | None = None
    # Serve the directory under another version name (one trained model can back
    # several route versions in demos). None: the manifest's version.
    served_version: str | None = None
    # Fault injection for rollback drills: share of predictions answered 500, and
    # latency added to every prediction.
    fault_rate: float = 0.0
    fault_latency_ms: float = 0.0
    # Fail every prediction whose text contains this ("poison" input drills).
    fault_match: str | None = None
    # After SIGTERM, keep serving (while reporting not ready) this long before
    # closing the listener, so load balancers see the 503s first.
    drain_grace_s: float = 0.0
    # The inference thread needs the GIL back between PyTorch ops; while the
    # event loop is busy, each hand-back waits up to Python's switch interval
    # (5 ms by default), which starves the model under load. A shorter interval
    # trades a little event-loop throughput for much steadier inference.
    switch_interval_ms: float | None = 0.5
    # uvicorn's HTTP/1.1 parser. The event loop is the busy core under load, and
    # h11 (pure Python) was a fifth of each request's time there: httptools serves
    # 20-36% more REST requests per second (bench/protocols.py, the --http h11 arm).
    http_parser: str = "httptools"
    # Async jobs (model_services/jobs): on when a Redis URL is given; /v1/jobs
    # answers 503 otherwise.
    redis_url: str | None = None
    jobs: JobSettings = field(default_factory=JobSettings)
    # Shadow comparison: POST each prediction's answer (batched, off the request
    # path) to the control plane's collector, e.g. http://127.0.0.1:18001/v1/shadow/reports.
    report_url: str | None = None
    report_inputs: bool = True  # send mirrored requests' inputs for disagreement samples
    # How the routes in front pin a version (the policy's spec.pinning): a request
    # field or header one typo away from these gets a Warning (api/near_miss.py).
    pin_header: str = "x-model-version"
    pin_body_field: str = "model_version"
    warmup: bool = True
    # Move everything alive once the model is warm (torch, FastAPI, the model's
    # own objects: ~220k) out of the garbage collector's reach. Every full
    # collection scanned them: 80 ms pauses every ~1.3 s under load, the whole
    # of the p99 tail at 32+ concurrent requests (bench/protocols.py, gc arm).
    gc_freeze: bool = True
    access_log: bool = False
    log_level: str = "info"

    def __post_init__(self) -> None:
        checks = {
            "max_batch_size >= 1": self.max_batch_size >= 1,
            "max_delay_ms >= 0": self.max_delay_ms >= 0,
            "max_queue_size >= max_batch_size": self.max_queue_size >= self.max_batch_size,
            "request_timeout_ms > 0": self.request_timeout_ms > 0,
            "max_text_chars >= 1": self.max_text_chars >= 1,
            "max_batch_texts >= 1": self.max_batch_texts >= 1,
            "0 <= fault_rate <= 1": 0.0 <= self.fault_rate <= 1.0,
            "fault_latency_ms >= 0": self.fault_latency_ms >= 0,
            "drain_grace_s >= 0": self.drain_grace_s >= 0,
            "num_threads >= 1": self.num_threads is None or self.num_threads >= 1,
            "1 <= grpc_port <= 65535": self.grpc_port is None or 1 <= self.grpc_port <= 65535,
            "device in auto, cpu, cuda": self.device in ("auto", "cpu", "cuda"),
            "http_parser in httptools, h11": self.http_parser in ("httptools", "h11"),
            "worker in process, thread": self.worker in ("process", "thread"),
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError("invalid settings: " + ", ".join(failed))

    @property
    def max_body_bytes(self) -> int:
        # Worst case UTF-8 text of the largest accepted batch, plus JSON framing.
        return self.max_text_chars * 4 * self.max_batch_texts + 64 * 1024
