"""Helpers of the job-queue tests: real Redis and real model services.

Each Redis is our own ``redis-server`` process on a free loopback port with a
temp dir (append-only file on, fsync per write), never the system service.
Without ``redis-server`` these tests fail: CI installs it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from control_plane.local.up import free_port
from tests.support.procs import ModelService

WEBHOOK_SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cw=="  # base64("secret-for-tests")


def poll(check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Bounded polling: return ``check()``'s first truthy value."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, redis.ConnectionError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install -y redis-server); the job tests need it")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes",
        ]  # fmt: skip
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        poll(self.ping, 10, "redis-server to answer PING")

    def ping(self) -> bool:
        with self.client() as c:
            return bool(c.ping())

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file has survives."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Service(ModelService):
    """A replica with an HTTP client for it."""

    def __init__(self, model_dir: Path, log_path: Path, *args: str) -> None:
        super().__init__(model_dir, log_path, *args, env={"SWITCHYARD_WEBHOOK_SECRET": WEBHOOK_SECRET})
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def output(self) -> str:
        return self.log()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.client.close()
        return super().stop(sig, timeout)


class Services:
    """Spawns ``serve`` processes and stops every one of them at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[Service] = []

    def spawn(self, model_dir: Path, redis_url: str | None, *args: str, ready: bool = True) -> Service:
        jobs = ["--redis-url", redis_url] if redis_url is not None else []
        fast = ["--worker", "thread", "--num-threads", "1"]
        service = Service(model_dir, self.workdir / f"service-{len(self.started)}.log", *fast, *jobs, *args)
        self.started.append(service)
        if ready:
            service.wait_ready()
        return service

    def close(self) -> None:
        for service in self.started:
            with contextlib.suppress(Exception):
                service.stop()


def wait_job(
    client: httpx.Client, job_id: str, statuses: tuple[str, ...] = ("completed", "failed"), timeout: float = 30
) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body if body["status"] in statuses else None

    result = poll(done, timeout, f"job {job_id} to reach {statuses}")
    assert isinstance(result, dict)
    return result


# Webhook receivers in these tests listen on loopback, which callback URLs may
# not reach by default (the SSRF guard): services that deliver to them say so.
ALLOW_LOOPBACK = ("--jobs-webhook-allow-cidr", "127.0.0.0/8")


class WebhookReceiver:
    """A local HTTP endpoint that records every POST; answers ``fail_first`` 500s first.
    ``port``: listen there (a URL handed out before the receiver was up)."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= fail_first
                    if not failing:
                        receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
