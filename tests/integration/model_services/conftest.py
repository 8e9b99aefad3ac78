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
from contextlib import AbstractContextManager, contextmanager, suppress
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

    def signal_group(self, sig: signal.Signals) -> None:
        """What a terminal's Ctrl-C or systemd's KillMode=control-group does:
        the signal reaches every process of the group (needs ``new_session``)."""
        os.killpg(self.proc.pid, sig)

    def group_members(self) -> list[int]:
        """Running (not zombie) processes of the server's group, from /proc."""
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
                state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue  # exited while we looked
            if int(pgrp) == self.proc.pid and state != "Z":
                members.append(int(stat.parent.name))
        return members

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout=timeout)


def spawn(model_dir: Path, log: Path, *args: str, new_session: bool = False) -> Server:
    """``new_session``: the server leads its own process group (as under a
    terminal or systemd), which its model worker child joins."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "model_services", "serve", "--model-dir", str(model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session
        )
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
def running(model_dir: Path, log: Path, *args: str, new_session: bool = False) -> Iterator[Server]:
    server = spawn(model_dir, log, *args, new_session=new_session)
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
        if new_session and server.group_members():
            # Whatever the server left behind (a stuck model worker) must not
            # outlive the test.
            with suppress(ProcessLookupError):
                server.signal_group(signal.SIGKILL)


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
