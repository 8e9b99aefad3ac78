"""Real `python -m model_services serve` processes on loopback, against a model
store built once per session."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)


def spawn(model_dir: Path, log: Path, *args: str) -> Server:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "model_services", "serve", "--model-dir", str(model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, attempts: int = 600) -> None:
    """Poll readiness (bounded) instead of sleeping a guessed time."""
    for _ in range(attempts):
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited {server.proc.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server never became ready:\n{server.output()}")


@contextmanager
def running(model_dir: Path, log: Path, *args: str) -> Iterator[Server]:
    server = spawn(model_dir, log, *args)
    try:
        wait_ready(server)
        yield server
    finally:
        if server.proc.poll() is None:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.wait(10)


# Helpers as fixtures: test modules here have no package to import them from.
@pytest.fixture
def serve() -> Callable[..., AbstractContextManager[Server]]:
    return running


@pytest.fixture
def spawn_server() -> Callable[..., Server]:
    return spawn


@pytest.fixture
def repo_root() -> Path:
    return REPO
