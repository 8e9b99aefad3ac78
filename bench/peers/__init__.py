"""The peer servers of ``bench/protocols.py``: MLServer and LitServe serving the same
handler as ``model_services serve``.

The modules here run in the peers' own virtualenv (``requirements.txt``), never in this
project's: only this file is imported by the benchmark, and it imports neither peer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Read by both peer servers in their model process, so every server runs the model on
# the same number of torch threads as ``model_services serve --num-threads``.
THREADS_ENV = "BENCH_TORCH_THREADS"


def mlserver_settings(
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    model_dir: Path,
    max_batch_size: int,
    max_batch_time_s: float,
    metrics_dir: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings.json`` and ``model-settings.json`` for ``mlserver start``."""
    server = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_dir": str(metrics_dir),  # its Prometheus files; the default is ./.metrics of the caller
        # One model worker process beside the HTTP/gRPC process: the same shape as
        # model_services serve, whose model runs in one child process.
        "parallel_workers": 1,
        "debug": False,
    }
    model = {
        "name": "sentiment",
        "implementation": "bench.peers.mlserver_runtime.SentimentRuntime",
        # Adaptive batching, equal to --max-batch-size / --max-delay-ms.
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time_s,
        "parameters": {"uri": str(model_dir), "version": "sentiment-v3"},
    }
    return server, model
