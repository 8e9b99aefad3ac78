"""Real `python -m model_services serve` processes on loopback, against a model
store built once per session."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

import pytest

from tests.support.procs import ModelService

REPO = Path(__file__).resolve().parents[3]


class Server(ModelService):
    """A model service with what the drain and signal tests need: its output, its process group."""

    def output(self) -> str:
        return self.log()

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
    return Server(model_dir, log, *args, new_session=new_session)


@contextmanager
def running(model_dir: Path, log: Path, *args: str, new_session: bool = False) -> Iterator[Server]:
    server = spawn(model_dir, log, *args, new_session=new_session)
    try:
        server.wait_ready()
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
