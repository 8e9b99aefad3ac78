"""SIGTERM under load: not ready at once, every accepted request answered, exit 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as triton

from control_plane.local.up import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def _in_progress(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("model_requests_in_progress{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("model_requests_in_progress missing from /metrics")


async def _wait_in_progress(client: httpx.AsyncClient, n: int) -> None:
    for _ in range(1000):
        if await _in_progress(client) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw {n} requests in progress")


async def test_sigterm_answers_every_accepted_request(
    model_store: Path, tmp_path: Path, serve: Callable[..., Any]
) -> None:
    # MiniLM with small batches and added latency: at SIGTERM the requests are
    # still in the handler, and they reach the batch queue only during the drain.
    n = 48
    model_dir = model_store / "sentiment" / "sentiment-v4"
    args = ("--max-batch-size", "4", "--fault-latency-ms", "300")
    with serve(model_dir, tmp_path / "log", *args) as server:
        limits = httpx.Limits(max_connections=n + 4)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            texts = [f"Review number {i}: the battery life is great" for i in range(n)]
            calls = [asyncio.ensure_future(client.post("/v1/predict", json={"text": t})) for t in texts]
            await _wait_in_progress(client, n)
            server.terminate()
            responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * n
        assert all(r.json()["model_version"] == "sentiment-v4" for r in responses)
        assert await asyncio.to_thread(server.wait, 60) == 0
        assert "Finished server process" in server.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_signal_to_the_process_group_still_drains(
    model_store: Path, tmp_path: Path, serve: Callable[..., Any], sig: signal.Signals
) -> None:
    # A terminal's Ctrl-C, systemd's default KillMode and dumb-init signal the
    # whole group, so the model worker child gets the signal too. It must keep
    # computing until its server has drained, and then be stopped by it.
    n = 48
    model_dir = model_store / "sentiment" / "sentiment-v4"
    args = ("--max-batch-size", "4", "--fault-latency-ms", "300", "--worker", "process")
    with serve(model_dir, tmp_path / "log", *args, new_session=True) as server:
        limits = httpx.Limits(max_connections=n + 4)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            texts = [f"Review number {i}: the battery life is great" for i in range(n)]
            calls = [asyncio.ensure_future(client.post("/v1/predict", json={"text": t})) for t in texts]
            await _wait_in_progress(client, n)
            server.signal_group(sig)
            responses = await asyncio.gather(*calls)
        assert [r.status_code for r in responses] == [200] * n, [r.text for r in responses if r.status_code != 200]
        assert await asyncio.to_thread(server.wait, 60) == 0, server.output()
        assert "model worker exited" not in server.output()
        # Nothing of the replica outlives it (the worker ignores the signal, so
        # only its server's close() can have stopped it).
        for _ in range(600):
            if not server.group_members():
                break
            await asyncio.sleep(0.05)
        assert server.group_members() == []


async def test_drain_grace_reports_unready_and_keeps_serving(
    model_store: Path, tmp_path: Path, serve: Callable[..., Any]
) -> None:
    n = 16
    model_dir = model_store / "sentiment" / "sentiment-v3"
    args = ("--drain-grace-s", "5", "--fault-latency-ms", "200")
    with serve(model_dir, tmp_path / "log", *args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            calls = [asyncio.ensure_future(client.post("/v1/predict", json={"text": f"good {i}"})) for i in range(n)]
            await _wait_in_progress(client, n)
            server.terminate()
            ready = None
            for _ in range(500):
                ready = await client.get("/v2/health/ready")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.01)
            assert ready is not None
            assert ready.status_code == 503
            assert ready.json()["state"] == "draining"
            # Routed here before the load balancer noticed: still answered.
            late = await client.post("/v1/predict", json={"text": "late but welcome"})
            assert late.status_code == 200
            assert [r.status_code for r in await asyncio.gather(*calls)] == [200] * n
        assert await asyncio.to_thread(server.wait, 60) == 0


async def test_sigterm_answers_every_accepted_grpc_call(
    model_store: Path, tmp_path: Path, serve: Callable[..., Any]
) -> None:
    """The same drain for the gRPC protocol: calls in flight at SIGTERM are answered, exit 0."""
    n = 24
    grpc_port = free_port()
    model_dir = model_store / "sentiment" / "sentiment-v3"
    args = ("--max-batch-size", "4", "--fault-latency-ms", "300", "--grpc-port", str(grpc_port))
    with serve(model_dir, tmp_path / "log", *args) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        try:
            tensors = []
            for i in range(n):
                tensor = triton.InferInput("text", [1], "BYTES")
                tensor.set_data_from_numpy(np.array([f"review {i}: great battery".encode()], dtype=np.object_))
                tensors.append(tensor)
            calls = [asyncio.ensure_future(client.infer("sentiment", [t])) for t in tensors]
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                await _wait_in_progress(http, n)
            server.terminate()
            results = await asyncio.gather(*calls)
        finally:
            await client.close()
        assert all(r.get_response().model_version == "sentiment-v3" for r in results)
        assert await asyncio.to_thread(server.wait, 60) == 0, server.output()
